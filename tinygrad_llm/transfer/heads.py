"""Heads: the small task-specific layers that turn a base model's hidden states into outputs (Q27, M49).

    base model   ids (B, T)            -> hidden states (B, T, d)      what pretraining learned, reusable
    head         hidden states         -> task outputs                 new for every task, trained on it

    MaskedLMHead                 (B, T, d) -> (B, T, V)   dense + GELU + LayerNorm, then a decoder to the
                                                          vocabulary, tied to the token embedding (as BERT)
    SequenceClassificationHead   (B, T, d) -> (B, C)      pool the sequence (its first token, or the mean over
                                                          real tokens), then Linear(d, C)
    TokenClassificationHead      (B, T, d) -> (B, T, C)   Linear(d, C) at every token

ModelWithHead(base, head) is the pair; its forward returns the head's output. Transfer learning is: keep
the pretrained base, put a NEW head on it (from_pretrained(path, head=...)), train. A fresh head starts
random, so a pretrained base with a new head knows nothing about the task until it is fine-tuned.

Every head is built for a given base with `Head.for_base(base, **options)` (it reads the hidden size, and
the MLM head the token embedding it ties to), and `head.config` holds those options, so a checkpoint can
rebuild it. A new head is initialised like the GPT's layers (N(0, 0.02), zero biases); the tied decoder
weight is the base's own embedding and is left untouched.
"""
from __future__ import annotations

import numpy as np

from ..nn import init
from ..nn.gpt import INIT_STD
from ..nn.layers import Embedding, LayerNorm, Linear
from ..nn.module import Module
from ..nn.transformer_encoder import MissingHeadError, missing_head_message
from ..tensor import Tensor

POOLINGS = ("first", "mean")


def _fresh(layer: Linear) -> Linear:
    """A new head layer, initialised like the base's own layers."""
    init.normal_(layer.weight, std=INIT_STD)
    if layer.bias is not None:
        init.zeros_(layer.bias)
    return layer


def _check_hidden(hidden: Tensor, hidden_size: int, owner: str) -> None:
    if not isinstance(hidden, Tensor) or hidden.ndim != 3 or hidden.shape[-1] != hidden_size:
        raise ValueError(f"{owner}: expected hidden states (B, T, {hidden_size}) from a base model, "
                         f"got {getattr(hidden, 'shape', type(hidden).__name__)}")


class MaskedLMHead(Module):
    """BERT's MLM head: a dense layer, GELU and LayerNorm (a last transformation of each hidden state), then a
    decoder to one logit per vocabulary id, whose weight is the token embedding when tied (token i's input
    vector also scores token i as the output; V * d parameters fewer) and whose bias stays the head's own."""

    def __init__(self, hidden_size: int, vocab_size: int, tied_embedding: Embedding | None = None):
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.dense = _fresh(Linear(hidden_size, hidden_size))
        self.norm = LayerNorm(hidden_size)
        self.decoder = _fresh(Linear(hidden_size, vocab_size))
        if tied_embedding is not None:
            if tied_embedding.weight.shape != (vocab_size, hidden_size):
                raise ValueError(f"MaskedLMHead: the tied embedding is {tied_embedding.weight.shape}, expected "
                                 f"({vocab_size}, {hidden_size}) = (vocab_size, hidden_size)")
            self.decoder.weight = tied_embedding.weight
        self.tie_weights = tied_embedding is not None

    @classmethod
    def for_base(cls, base, tie_weights: bool = True) -> MaskedLMHead:
        return cls(base.hidden_size, base.vocab_size, base.token_embedding if tie_weights else None)

    @property
    def config(self) -> dict:
        return {"tie_weights": self.tie_weights}

    def forward(self, hidden: Tensor, padding_mask=None) -> Tensor:
        """(B, T, d) -> logits (B, T, V); padding positions get logits too, which the loss ignores."""
        _check_hidden(hidden, self.hidden_size, "MaskedLMHead")
        return self.decoder(self.norm(self.dense(hidden).gelu(approximate="tanh")))


class SequenceClassificationHead(Module):
    """One label per sequence. pooling="first" reads the first token's state (BERT's [CLS]: put a token that
    is always there at position 0, e.g. tokenizer.bos_id, and pad on the right); pooling="mean" averages the
    states of the real (non-padding) tokens."""

    def __init__(self, hidden_size: int, num_classes: int, pooling: str = "first"):
        if pooling not in POOLINGS:
            raise ValueError(f"SequenceClassificationHead: pooling must be one of {POOLINGS}, got {pooling!r}")
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"SequenceClassificationHead: num_classes must be an integer >= 2, got {num_classes!r}")
        self.hidden_size, self.num_classes, self.pooling = hidden_size, int(num_classes), pooling
        self.classifier = _fresh(Linear(hidden_size, num_classes))

    @classmethod
    def for_base(cls, base, num_classes: int = 2, pooling: str = "first") -> SequenceClassificationHead:
        return cls(base.hidden_size, num_classes, pooling)

    @property
    def config(self) -> dict:
        return {"num_classes": self.num_classes, "pooling": self.pooling}

    def pool(self, hidden: Tensor, padding_mask=None) -> Tensor:
        """(B, T, d) -> (B, d): one vector per sequence, never reading a padding position."""
        batch, time, _ = hidden.shape
        padding = np.zeros((batch, time), bool) if padding_mask is None else np.asarray(padding_mask, dtype=bool)
        if padding.shape != (batch, time):
            raise ValueError(f"SequenceClassificationHead: padding_mask must be ({batch}, {time}), got {padding.shape}")
        if self.pooling == "first":
            if padding[:, 0].any():
                raise ValueError(f"SequenceClassificationHead: first-token pooling reads position 0, which is padding "
                                 f"in rows {np.flatnonzero(padding[:, 0]).tolist()}; pad on the right, or use "
                                 "pooling='mean'")
            return hidden[:, 0]
        real = ~padding
        counts = real.sum(axis=1, keepdims=True)
        if (counts == 0).any():
            raise ValueError(f"SequenceClassificationHead: rows {np.flatnonzero(counts[:, 0] == 0).tolist()} are all "
                             "padding; mean pooling needs at least one real token per row")
        weights = (real / counts).astype(hidden.dtype)[:, :, None]  # 1/count at real tokens, 0 at pads
        return (hidden * Tensor(weights)).sum(axis=1)

    def forward(self, hidden: Tensor, padding_mask=None) -> Tensor:
        """(B, T, d) -> class logits (B, num_classes)."""
        _check_hidden(hidden, self.hidden_size, "SequenceClassificationHead")
        return self.classifier(self.pool(hidden, padding_mask))


class TokenClassificationHead(Module):
    """One label per token (tagging: part of speech, named entities): a Linear at every position."""

    def __init__(self, hidden_size: int, num_labels: int):
        if not isinstance(num_labels, (int, np.integer)) or num_labels < 2:
            raise ValueError(f"TokenClassificationHead: num_labels must be an integer >= 2, got {num_labels!r}")
        self.hidden_size, self.num_labels = hidden_size, int(num_labels)
        self.classifier = _fresh(Linear(hidden_size, num_labels))

    @classmethod
    def for_base(cls, base, num_labels: int = 2) -> TokenClassificationHead:
        return cls(base.hidden_size, num_labels)

    @property
    def config(self) -> dict:
        return {"num_labels": self.num_labels}

    def forward(self, hidden: Tensor, padding_mask=None) -> Tensor:
        """(B, T, d) -> label logits (B, T, num_labels); give padding positions IGNORE_INDEX targets."""
        _check_hidden(hidden, self.hidden_size, "TokenClassificationHead")
        return self.classifier(hidden)


HEADS = {"masked_lm": MaskedLMHead, "sequence_classification": SequenceClassificationHead,
         "token_classification": TokenClassificationHead}


def head_name(head: Module) -> str:
    """The name a checkpoint stores for `head` (a key of HEADS)."""
    for name, kind in HEADS.items():
        if type(head) is kind:
            return name
    raise TypeError(f"head_name: {type(head).__name__} is not one of the library's heads {sorted(HEADS)}")


def build_head(name: str, base, **options) -> Module:
    """HEADS[name].for_base(base, **options), with a clear error for an unknown name."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    return HEADS[name].for_base(base, **options)


class ModelWithHead(Module):
    """A base model and a head: forward(ids, padding_mask) = head(base(ids, padding_mask), padding_mask).

    Parameters are named base.* and head.*; a tied MLM decoder weight is the base's token embedding and is
    listed once, as base.token_embedding.weight."""

    def __init__(self, base, head: Module):
        if not hasattr(base, "hidden_size"):
            raise TypeError(f"ModelWithHead: the base must be a base model returning hidden states (it has a "
                            f"hidden_size), got {type(base).__name__}")
        if getattr(head, "hidden_size", None) != base.hidden_size:
            raise ValueError(f"ModelWithHead: the head expects hidden size {getattr(head, 'hidden_size', None)} but the "
                             f"base gives {base.hidden_size}; build the head with Head.for_base(base)")
        self.base, self.head = base, head

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size

    @property
    def max_context(self) -> int:
        return self.base.max_context

    def forward(self, ids, padding_mask=None) -> Tensor:
        return self.head(self.base(ids, padding_mask=padding_mask), padding_mask=padding_mask)


def require_head(model, where: str, kind: type | None = None) -> ModelWithHead:
    """`model` itself if it is a ModelWithHead (whose head is a `kind`, when given); a base model is the M49
    error, anything else a TypeError that names what was expected."""
    if isinstance(model, ModelWithHead) and (kind is None or isinstance(model.head, kind)):
        return model
    if hasattr(model, "hidden_size") and not isinstance(model, ModelWithHead):
        raise MissingHeadError(missing_head_message(model, where))
    expected = f"a ModelWithHead with a {kind.__name__}" if kind else "a ModelWithHead"
    found = type(model.head).__name__ if isinstance(model, ModelWithHead) else type(model).__name__
    raise TypeError(f"{where}: needs {expected}, got {found}")
