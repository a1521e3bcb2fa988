"""Multimodal fusion (Q31, M51): where the two modalities meet decides what a model can learn.

The task is built so that neither modality alone says anything about the label:

    text   8 random tokens that contain, or not, token A
    image  8x8 Gaussian noise with, or without, a vertical bar (and, half the time, a horizontal bar as a distractor)
    label  XOR(text has token A, image has a vertical bar)

The four (text, image) combinations are equally frequent, so P(label = 1 | either feature) = 1/2 exactly: a
text-only or image-only model can only guess. A fused model must combine the two, and HOW it combines them
matters. Every model here ends in two class logits; write a(text) and b(image) for what the encoders extract.

    additive fusion     logit = f(text) + g(image)          late fusion, linear concatenation
    nonlinear fusion    logit = h(f(text), g(image))         concatenation + ReLU MLP, cross-attention

An additive model cannot represent XOR, however deep its encoders are: it would need
f(0) + g(0) < 0 and f(1) + g(1) < 0 (label 0) but f(0) + g(1) > 0 and f(1) + g(0) > 0 (label 1), and the two
pairs have the same sum. The best additive rule is right on 3 of the 4 combinations, and cross-entropy does not
even find that one: over the four equally frequent combinations its minimum is the constant 50/50 prediction,
because each feature is uncorrelated with the label. So the nonlinearity has to come AFTER the modalities meet
(M51); a ReLU inside each encoder is too early. `interaction_contrast` measures exactly this:
logit(t1, i1) - logit(t1, i0) - logit(t0, i1) + logit(t0, i0) is zero for every additive model, whatever its
weights, and XOR needs it far from zero.

Parameter counts, with vocabulary V, width d, hidden width h, image side s, patch side p, P = (s / p)^2 patches
and 2 classes (each model's `num_parameters()` equals these; the tests check it):

    TextEncoder     V d                                   ImageEncoder  s^2 h + h + h d + d
    PatchEncoder    p^2 d + d + d^2 + d + P d
    text only       V d + (2 d + 2)                       image only    ImageEncoder + (2 d + 2)
    late fusion     both unimodal models, summed          linear concat V d + ImageEncoder + (4 d + 2)
    concat + MLP    V d + ImageEncoder + (2 d h + h) + (2 h + 2)
    cross-attention V d + PatchEncoder + 4 (d^2 + d) + (2 d + 2)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..nn import CrossAttention, Embedding, LearnedPositionalEmbedding, Linear, Module, ReLU, Sequential
from ..tensor import Tensor, cat

NUM_CLASSES = 2


# ---------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class MultimodalXOR:
    """Paired examples: tokens (n, T) int64, images (n, s, s) float32, the two planted features (n,) bool and
    labels (n,) int64 = XOR of the features."""

    tokens: np.ndarray
    images: np.ndarray
    text_has_token: np.ndarray
    image_has_bar: np.ndarray
    labels: np.ndarray
    target_token: int

    def __len__(self):
        return len(self.labels)


def make_multimodal_xor(n: int = 2000, seq_len: int = 8, vocab_size: int = 16, target_token: int = 0,
                        image_size: int = 8, noise: float = 0.3, distractor_rate: float = 0.5,
                        rng=0) -> MultimodalXOR:
    """n pairs whose label is XOR(tokens contain `target_token`, image has a vertical bar).

    Each of the four feature combinations occurs exactly n / 4 times, so each feature alone is independent of
    the label on the generated data, not just in expectation. The other tokens are uniform over the rest of
    the vocabulary; a bar is a full row or column of pixels at 1.0 on top of N(0, noise^2) pixels (noise is
    continuous, so no pixel of the background is exactly 1). The horizontal bar appears with probability
    `distractor_rate` whatever the label: an image encoder must tell the orientations apart.
    """
    if n <= 0 or n % 4:
        raise ValueError(f"make_multimodal_xor: n must be a positive multiple of 4 (the four feature combinations "
                         f"are equally frequent), got n={n}; try n={max(4, n - n % 4)}")
    if vocab_size < 2 or not 0 <= target_token < vocab_size:
        raise ValueError(f"make_multimodal_xor: need vocab_size >= 2 and 0 <= target_token < vocab_size, got "
                         f"vocab_size={vocab_size}, target_token={target_token}")
    if seq_len < 1 or image_size < 2 or noise < 0 or not 0 <= distractor_rate <= 1:
        raise ValueError(f"make_multimodal_xor: need seq_len >= 1, image_size >= 2, noise >= 0 and distractor_rate "
                         f"in [0, 1], got {seq_len}, {image_size}, {noise}, {distractor_rate}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    combinations = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=bool)[np.arange(n) % 4]
    text_has_token, image_has_bar = combinations[rng.permutation(n)].T
    rows = np.arange(n)

    tokens = rng.integers(0, vocab_size - 1, size=(n, seq_len))
    tokens += tokens >= target_token  # skip the target: uniform over the other vocab_size - 1 tokens
    tokens[rows[text_has_token], rng.integers(0, seq_len, size=text_has_token.sum())] = target_token

    images = rng.normal(0.0, noise, size=(n, image_size, image_size)).astype(np.float32)
    distracted = rng.random(n) < distractor_rate
    images[rows[distracted], rng.integers(0, image_size, size=distracted.sum()), :] = 1.0
    images[rows[image_has_bar], :, rng.integers(0, image_size, size=image_has_bar.sum())] = 1.0
    return MultimodalXOR(tokens=tokens.astype(np.int64), images=images, text_has_token=text_has_token,
                         image_has_bar=image_has_bar, labels=(text_has_token ^ image_has_bar).astype(np.int64),
                         target_token=target_token)


def image_patches(images: np.ndarray, patch_size: int) -> np.ndarray:
    """(B, s, s) images -> (B, P, patch_size^2) square patches in row-major order, P = (s / patch_size)^2:
    the "tokens" of an image, as a vision Transformer cuts them."""
    batch, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image_patches: image {height}x{width} is not divisible into {patch_size}x{patch_size} "
                         f"patches; choose a patch_size that divides {height} and {width}")
    grid = images.reshape(batch, height // patch_size, patch_size, width // patch_size, patch_size)
    return grid.transpose(0, 1, 3, 2, 4).reshape(batch, -1, patch_size * patch_size)


# ---------------------------------------------------------------------------- the encoders
class TextEncoder(Module):
    """Token ids (B, T) -> one vector (B, d): the mean of the token embeddings (V d parameters).

    The mean is linear in the token counts, so "contains token A" is one direction of it. `token_states`
    keeps the tokens apart, for models that let each token read the image."""

    def __init__(self, vocab_size: int, dim: int):
        self.embedding = Embedding(vocab_size, dim)

    def token_states(self, tokens) -> Tensor:
        return self.embedding(np.asarray(tokens))

    def forward(self, tokens) -> Tensor:
        return self.token_states(tokens).mean(axis=1)


class ImageEncoder(Module):
    """Images (B, s, s) -> one vector (B, d): an MLP on the s^2 pixels (s^2 h + h + h d + d parameters).

    The ReLU inside lets it detect "some column is bright" at any of the s columns; it is nonlinear in the
    pixels but, as far as fusion is concerned, still one modality."""

    def __init__(self, image_size: int, hidden: int, dim: int):
        self.mlp = Sequential(Linear(image_size * image_size, hidden), ReLU(), Linear(hidden, dim))

    def forward(self, images) -> Tensor:
        images = np.asarray(images, dtype=np.float32)
        return self.mlp(Tensor(images.reshape(len(images), -1)))


class PatchEncoder(Module):
    """Images (B, s, s) -> one vector per patch (B, P, d): a small MLP on each patch's pixels plus a learned
    position per patch (p^2 d + d + d^2 + d + P d parameters), the memory that text tokens attend to."""

    def __init__(self, image_size: int, patch_size: int, dim: int):
        self.patch_size = patch_size
        num_patches = (image_size // patch_size) ** 2
        self.mlp = Sequential(Linear(patch_size * patch_size, dim), ReLU(), Linear(dim, dim))
        self.positions = LearnedPositionalEmbedding(num_patches, dim)

    def forward(self, images) -> Tensor:
        patches = image_patches(np.asarray(images, dtype=np.float32), self.patch_size)
        return self.mlp(Tensor(patches)) + self.positions(patches.shape[1])


# ---------------------------------------------------------------------------- the models
class TextOnlyClassifier(Module):
    """Reads the tokens and ignores the image: V d + 2 d + 2 parameters. At chance on XOR (the label is
    independent of the text)."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        self.text_encoder = TextEncoder(vocab_size, dim)
        self.head = Linear(dim, NUM_CLASSES)

    def forward(self, tokens, images) -> Tensor:
        return self.head(self.text_encoder(tokens))


class ImageOnlyClassifier(Module):
    """Reads the image and ignores the tokens: ImageEncoder + 2 d + 2 parameters. At chance on XOR."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        self.image_encoder = ImageEncoder(image_size, hidden, dim)
        self.head = Linear(dim, NUM_CLASSES)

    def forward(self, tokens, images) -> Tensor:
        return self.head(self.image_encoder(images))


class LateFusionClassifier(Module):
    """The average of a text-only and an image-only classifier's logits (their parameters, summed).

    Additive by construction, logit = f(text) / 2 + g(image) / 2, so it cannot learn XOR: the modalities meet
    only in the final sum, after every nonlinearity."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        self.text_encoder = TextEncoder(vocab_size, dim)
        self.text_head = Linear(dim, NUM_CLASSES)
        self.image_encoder = ImageEncoder(image_size, hidden, dim)
        self.image_head = Linear(dim, NUM_CLASSES)

    def forward(self, tokens, images) -> Tensor:
        return (self.text_head(self.text_encoder(tokens)) + self.image_head(self.image_encoder(images))) * 0.5


class LinearConcatFusion(Module):
    """Concatenate the two embeddings, then one Linear(2 d, 2): V d + ImageEncoder + 4 d + 2 parameters.

    W [t; i] + b = W_t t + W_i i + b: concatenation followed by a linear map is late fusion in disguise (M51),
    and stacking more Linear layers without an activation collapses to this same single map."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        self.text_encoder = TextEncoder(vocab_size, dim)
        self.image_encoder = ImageEncoder(image_size, hidden, dim)
        self.head = Linear(2 * dim, NUM_CLASSES)

    def forward(self, tokens, images) -> Tensor:
        return self.head(cat([self.text_encoder(tokens), self.image_encoder(images)], axis=-1))


class ConcatMLPFusion(Module):
    """Concatenate, then Linear(2 d, h), ReLU, Linear(h, 2): V d + ImageEncoder + 2 d h + h + 2 h + 2 parameters.

    A hidden unit relu(u . t + v . i + c) mixes both modalities before it bends, so the head can combine
    "text says A" and "image shows a bar" into XOR (two such units suffice)."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32):
        self.text_encoder = TextEncoder(vocab_size, dim)
        self.image_encoder = ImageEncoder(image_size, hidden, dim)
        self.fusion = Sequential(Linear(2 * dim, hidden), ReLU(), Linear(hidden, NUM_CLASSES))

    def forward(self, tokens, images) -> Tensor:
        return self.fusion(cat([self.text_encoder(tokens), self.image_encoder(images)], axis=-1))


class CrossAttentionFusion(Module):
    """Every text token attends over the image patches; the tokens' states plus what they read are averaged and
    classified: V d + PatchEncoder + 4 (d^2 + d) + 2 d + 2 parameters.

    The attention weight softmax(q(token) . k(patch)) multiplies a text quantity by an image quantity, so the
    modalities meet inside a nonlinearity: token A can learn to look for the bar while the other tokens do not,
    which makes what the sequence reads depend on both inputs at once (no MLP after fusion is needed).
    Four heads rather than one or two: with fewer, some seeds stayed near chance within the fast budget
    (400 steps); each head is another chance to find the pattern, and one head that finds it is enough."""

    def __init__(self, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32, patch_size: int = 2,
                 num_heads: int = 4):
        self.text_encoder = TextEncoder(vocab_size, dim)
        self.image_encoder = PatchEncoder(image_size, patch_size, dim)
        self.cross_attention = CrossAttention(dim, num_heads)
        self.head = Linear(dim, NUM_CLASSES)

    def forward(self, tokens, images) -> Tensor:
        text = self.text_encoder.token_states(tokens)                                    # (B, T, d)
        keys, values = self.cross_attention.project_memory(self.image_encoder(images))  # (B, H, P, D) each
        fused = text + self.cross_attention(text, keys, values)                         # (B, T, d)
        return self.head(fused.mean(axis=1))


FUSION_MODELS = {
    "text_only": TextOnlyClassifier,
    "image_only": ImageOnlyClassifier,
    "late_fusion": LateFusionClassifier,
    "linear_concat": LinearConcatFusion,
    "concat_mlp": ConcatMLPFusion,
    "cross_attention": CrossAttentionFusion,
}


def build_fusion_model(name: str, vocab_size: int, image_size: int, dim: int = 16, hidden: int = 32) -> Module:
    """One of FUSION_MODELS by name, all built from the same sizes."""
    if name not in FUSION_MODELS:
        raise ValueError(f"build_fusion_model: unknown model {name!r}; choose one of {sorted(FUSION_MODELS)}")
    return FUSION_MODELS[name](vocab_size, image_size, dim=dim, hidden=hidden)


# ---------------------------------------------------------------------------- inspecting a model
def predict(model: Module, tokens, images) -> np.ndarray:
    """Class ids (B,), without recording a graph."""
    with no_grad():
        return model(tokens, images).data.argmax(axis=-1)


def interaction_contrast(model: Module, tokens: tuple, images: tuple) -> np.ndarray:
    """logits(t1, i1) - logits(t1, i0) - logits(t0, i1) + logits(t0, i0), per example (B, 2).

    tokens = (t0, t1), images = (i0, i1), batches of the same size. For any model of the form
    f(text) + g(image) every term cancels, so it is zero for any weights; XOR's labels have contrast
    0 - 1 - 1 + 0 = -2, so a model needs a nonzero contrast to fit them."""
    (t0, t1), (i0, i1) = tokens, images
    with no_grad():
        logits = [model(t, i).data.astype(np.float64) for t, i in ((t1, i1), (t1, i0), (t0, i1), (t0, i0))]
    return logits[0] - logits[1] - logits[2] + logits[3]
