"""The logit lens (Q32): read every layer of a GPT as if it were the last one.

A pre-LN GPT adds each block's output into one running vector per token, the residual stream, and only at
the end turns it into logits: final LayerNorm, then the LM head. Nothing stops us applying those same two
layers to the stream earlier, after the embeddings or after block l; the result is what the model "would
predict" if it stopped there. Watching the probability of the right next token rise layer by layer shows
where the prediction is formed. By construction the readout after the last block IS the model's output
(the same arrays through the same layers): the test that the lens is wired correctly.

The early readouts are only a view: the final norm and head were trained to read the last layer, so a
low probability at layer 1 means "not yet in the form the head reads", not "the model does not know yet".
"""
from __future__ import annotations

import numpy as np

from .activations import capture_activations
from ..autograd import no_grad
from ..nn.functional import softmax
from ..nn.gpt import GPT
from ..tensor import Tensor


def residual_stream_names(model: GPT) -> list[str]:
    """The layers whose outputs are the stream: the embeddings (after their dropout), then each block."""
    if not isinstance(model, GPT):
        raise TypeError(f"logit lens: expects a GPT (token embedding, blocks, final_norm, lm_head), "
                        f"got {type(model).__name__}")
    return ["embedding_dropout"] + [f"blocks.{index}" for index in range(model.num_layers)]


def residual_stream(model: GPT, ids) -> np.ndarray:
    """ids (B, T) -> (num_layers + 1, B, T, d): index 0 is the stream after the embeddings, index l the
    stream after block l. Runs the model once (in its current mode: call model.eval() to turn dropout off)."""
    names = residual_stream_names(model)
    with no_grad(), capture_activations(model, names) as activations:
        model(ids)
    return np.stack([activations[name].numpy() for name in names])


def logit_lens(model: GPT, ids) -> np.ndarray:
    """ids (B, T) -> (num_layers + 1, B, T, V): each layer's stream through the final norm and the LM head.
    The last entry equals model(ids) (each layer is read separately, exactly as the model reads its last)."""
    with no_grad():
        return np.stack([model.lm_head(model.final_norm(Tensor(stream))).numpy()
                         for stream in residual_stream(model, ids)])


def top_tokens(lens_logits: np.ndarray, k: int = 1) -> np.ndarray:
    """(..., V) logits -> (..., k) token ids, the most likely first: what each layer would predict."""
    if not 1 <= k <= lens_logits.shape[-1]:
        raise ValueError(f"top_tokens: k must be in [1, {lens_logits.shape[-1]}] (the vocabulary size), got {k}")
    return np.argsort(-lens_logits, axis=-1, kind="stable")[..., :k]


def target_probabilities(lens_logits: np.ndarray, targets) -> np.ndarray:
    """(L + 1, B, T, V) logits and (B, T) target ids (e.g. the next tokens) -> (L + 1, B, T): the
    probability each layer's readout gives the target."""
    targets = np.asarray(targets)
    if targets.shape != lens_logits.shape[1:-1]:
        raise ValueError(f"target_probabilities: targets must have shape (B, T) = {lens_logits.shape[1:-1]}, "
                         f"got {targets.shape}")
    with no_grad():
        probabilities = softmax(Tensor(lens_logits), axis=-1).numpy()
    return np.take_along_axis(probabilities, targets[None, ..., None], axis=-1)[..., 0]
