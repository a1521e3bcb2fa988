"""Sentence classifiers to explain, and the one interface every explainer talks to (Q32, M52).

    TextClassifier(model, vocabulary)     list[str] -> (n, classes) probabilities: predict_proba / __call__

An explainer perturbs a sentence (drops a word, replaces it, keeps a random subset) and asks how the
prediction moves. So it needs a function from SENTENCES to PROBABILITIES: it must not tokenize, pad, pick
logits or apply softmax itself, and it must never call the raw model on strings (M52), which takes padded id
arrays and returns logits. TextClassifier is that function for the library's models: it splits on whitespace,
maps unknown words to <unk>, puts <bos> first (so even a sentence with every word dropped is an input), pads,
runs the model in eval mode and returns softmax rows that sum to 1. (word_perturbation.py checks that contract
on every call an explainer makes.)

Two models, both "ids (B, T) + padding mask -> logits (B, C)":
- BagOfEmbeddingsClassifier: the mean of the word vectors, then an MLP (GELU, so its output is smooth in the
  embeddings and integrated gradients' quadrature converges fast). It sees WHICH words are there, not where;
  on planted_sentiment that suffices, because a negator only ever stands before the keyword. With
  hidden_size=None it is linear in the mean embedding: logistic regression on word vectors.
- TransformerTextClassifier: the library's TransformerEncoder with a SequenceClassificationHead reading the
  <bos> position (BERT's [CLS]).

Gradient methods need more than strings: d(output)/d(input embeddings). Both models split forward into
`embed(ids)` and `logits_from_embeddings(embeddings, padding_mask)`, and forward is exactly their composition,
so attributions are taken on the same function that makes the predictions.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..data.padding import pad_batch
from ..metrics.classification import accuracy
from ..nn import functional as F
from ..nn.language_model import LanguageModel
from ..nn.module import Module
from ..optim import AdamW
from ..tensor import Tensor
from ..transfer.heads import ModelWithHead, SequenceClassificationHead

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
SPECIAL_WORDS = (PAD, BOS, UNK)


class WordVocabulary:
    """Words <-> ids: <pad>=0, <bos>=1, <unk>=2, then the words in the given order. A word outside the list
    becomes <unk> instead of an error, because explainers feed in replaced and unseen words."""

    def __init__(self, words: Iterable[str]):
        words = tuple(words)
        bad = [w for w in words if not isinstance(w, str) or not w or w.split() != [w] or w in SPECIAL_WORDS]
        if bad or len(set(words)) != len(words):
            raise ValueError(f"WordVocabulary: words must be distinct non-empty strings without spaces, other than "
                             f"{SPECIAL_WORDS}; bad: {bad or sorted({w for w in words if words.count(w) > 1})}")
        self.words = words
        self._ids = {word: i for i, word in enumerate(SPECIAL_WORDS + words)}

    pad_id, bos_id, unk_id = 0, 1, 2

    @property
    def size(self) -> int:
        return len(SPECIAL_WORDS) + len(self.words)

    def encode(self, sentence: str) -> list[int]:
        """<bos> then one id per whitespace-separated word."""
        return [self.bos_id] + [self._ids.get(word, self.unk_id) for word in sentence.split()]


class BagOfEmbeddingsClassifier(Module):
    """Mean of the token embeddings over the real (non-padding) tokens -> MLP -> class logits."""

    def __init__(self, vocab_size: int, embed_dim: int = 16, hidden_size: int | None = 32, num_classes: int = 2):
        self.vocab_size, self.num_classes, self.max_context = vocab_size, num_classes, None
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.hidden = nn.Linear(embed_dim, hidden_size) if hidden_size is not None else None
        self.output = nn.Linear(hidden_size if hidden_size is not None else embed_dim, num_classes)

    def embed(self, ids) -> Tensor:
        return self.token_embedding(ids)

    def logits_from_embeddings(self, embeddings: Tensor, padding_mask=None) -> Tensor:
        """(B, T, d) embeddings -> (B, C) logits."""
        batch, time, _ = embeddings.shape
        real = np.ones((batch, time), bool) if padding_mask is None else ~np.asarray(padding_mask, dtype=bool)
        weights = (real / real.sum(axis=1, keepdims=True)).astype(embeddings.dtype)[:, :, None]
        pooled = (embeddings * Tensor(weights)).sum(axis=1)
        if self.hidden is not None:
            pooled = self.hidden(pooled).gelu()
        return self.output(pooled)

    def forward(self, ids, padding_mask=None) -> Tensor:
        return self.logits_from_embeddings(self.embed(ids), padding_mask)


class TransformerTextClassifier(ModelWithHead):
    """A TransformerEncoder whose <bos> state is classified (SequenceClassificationHead, pooling="first")."""

    def __init__(self, vocab_size: int, context_size: int = 16, embed_dim: int = 16, num_heads: int = 2,
                 num_layers: int = 1, num_classes: int = 2):
        base = nn.TransformerEncoder(vocab_size, context_size, embed_dim, num_heads, num_layers)
        super().__init__(base, SequenceClassificationHead.for_base(base, num_classes, pooling="first"))
        self.num_classes = num_classes

    def embed(self, ids) -> Tensor:
        return self.base.token_embedding(LanguageModel.check_ids(self.base, ids))  # the encoder's own id check

    def logits_from_embeddings(self, embeddings: Tensor, padding_mask=None) -> Tensor:
        """TransformerEncoder.forward from its token embeddings on: add positions, run the blocks, classify."""
        base = self.base
        hidden = base.embedding_dropout(embeddings + base.position_embedding(embeddings.shape[1]))
        for block in base.blocks:
            hidden = block(hidden, causal=False, padding_mask=padding_mask)
        return self.head(base.final_norm(hidden), padding_mask=padding_mask)


class TextClassifier:
    """A model and its vocabulary as a function list[str] -> (n, classes) probabilities (M52)."""

    def __init__(self, model: Module, vocabulary: WordVocabulary, batch_size: int = 256):
        if not all(hasattr(model, name) for name in ("embed", "logits_from_embeddings", "num_classes")):
            raise TypeError(f"TextClassifier: {type(model).__name__} is not a sentence classifier with embed() and "
                            "logits_from_embeddings(); use BagOfEmbeddingsClassifier or TransformerTextClassifier")
        if model.vocab_size != vocabulary.size:
            raise ValueError(f"TextClassifier: the model has {model.vocab_size} embedding rows but the vocabulary "
                             f"has {vocabulary.size} ids; build the model with vocab_size=vocabulary.size")
        self.model, self.vocabulary, self.batch_size = model, vocabulary, batch_size
        self.num_classes = model.num_classes

    def encode(self, sentences: Sequence[str]):
        """A PaddedBatch (ids, padding_mask, lengths) of <bos> + word ids, padded on the right."""
        sentences = _check_sentences(sentences, "TextClassifier.encode")
        rows = [self.vocabulary.encode(s) for s in sentences]
        limit = self.model.max_context
        if limit is not None and max(map(len, rows), default=0) > limit:
            raise ValueError(f"TextClassifier: a sentence has {max(map(len, rows)) - 1} words but the model reads at "
                             f"most {limit - 1} (plus <bos>); build it with a larger context_size")
        return pad_batch(rows, self.vocabulary.pad_id)

    def predict_proba(self, sentences: Sequence[str]) -> np.ndarray:
        """(n, classes) float64 probabilities, each row summing to 1; computed in eval mode, batch by batch."""
        sentences = _check_sentences(sentences, "TextClassifier.predict_proba")
        self.model.eval()
        chunks = [np.zeros((0, self.num_classes))]
        with no_grad():
            for start in range(0, len(sentences), self.batch_size):
                batch = self.encode(sentences[start:start + self.batch_size])
                logits = self.model(batch.ids, padding_mask=batch.padding_mask)
                chunks.append(F.softmax(logits.double(), axis=-1).numpy())
        return np.concatenate(chunks)

    __call__ = predict_proba


def _check_sentences(sentences, where: str) -> list[str]:
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        what = "a str" if isinstance(sentences, str) else f"a {type(sentences).__name__} with non-string items"
        raise TypeError(f"{where}: expected a list of sentences (strings), got {what}; wrap one sentence as [text]")
    return list(sentences)


def train_text_classifier(classifier: TextClassifier, sentences: Sequence[str], labels, steps: int = 200,
                          batch_size: int = 32, lr: float = 1e-2, seed: int = 0) -> list[float]:
    """AdamW on cross-entropy over minibatches drawn with `seed`; returns the loss of every step. Leaves the
    model in eval mode."""
    labels = np.asarray(labels, dtype=np.int64)
    sentences = _check_sentences(sentences, "train_text_classifier")
    if labels.shape != (len(sentences),) or (labels < 0).any() or (labels >= classifier.num_classes).any():
        raise ValueError(f"train_text_classifier: need one label in 0..{classifier.num_classes - 1} per sentence "
                         f"({len(sentences)}), got labels of shape {labels.shape}")
    rng = np.random.default_rng(seed)  # the minibatch order; the model's initialisation is the caller's
    model = classifier.model.train()
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        rows = rng.integers(len(sentences), size=batch_size)
        batch = classifier.encode([sentences[i] for i in rows])
        loss = F.cross_entropy(model(batch.ids, padding_mask=batch.padding_mask), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def sentence_accuracy(classifier: TextClassifier, sentences: Sequence[str], labels) -> float:
    """Share of sentences whose most probable class is the label."""
    return accuracy(labels, classifier.predict_proba(sentences).argmax(axis=1))
