"""The bigram language model: the next token depends only on the current one.

    logits[b, t] = table[ids[b, t]]            table (V, V): row a holds the logits of "what follows a"

The first rung of the ladder (Q08), and the baseline every neural model must beat. It can be
fitted two ways that meet in the same place:
- by gradient descent, like any other model here (the table is a Parameter; starting from zeros, the
  prediction is uniform and the loss exactly ln V);
- by counting: `from_counts` sets row a to log P(b | a) estimated from pair counts, which is the
  maximum-likelihood answer gradient descent converges to (up to the smoothing).
"""
from __future__ import annotations

import numpy as np

from .language_model import DecodingCache, LanguageModel
from .parameter import Parameter
from ..tensor import DEFAULT_FLOAT


class BigramLanguageModel(LanguageModel):
    max_context = None  # only the last token matters, so any length works

    def __init__(self, vocab_size: int):
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
            raise ValueError(f"BigramLanguageModel: vocab_size must be a positive integer, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.table = Parameter(np.zeros((self.vocab_size, self.vocab_size), dtype=DEFAULT_FLOAT))

    @classmethod
    def from_counts(cls, ids, vocab_size: int, add_k: float = 1.0) -> "BigramLanguageModel":
        """A count-based bigram model: table[a, b] = log((count(a, b) + k) / (count(a) + k * V)).

        ids: token ids, one sequence (T,) or a batch of them (B, T); pairs never cross from one row to the
        next. Each row of the table is a normalised log-distribution, so softmax leaves it unchanged and the
        cross-entropy of this model IS the count model's negative log-likelihood.

        Why add-k (Laplace smoothing for k = 1): a pair never seen in training has count 0, so the raw
        maximum-likelihood estimate gives it probability 0, and one such pair in the test text makes the
        loss infinite (perplexity infinite). Adding k to every count reserves a little probability for
        every pair; smaller k trusts the counts more. A token never seen as a predecessor gets a uniform row.
        """
        if not add_k > 0:
            raise ValueError(
                f"BigramLanguageModel.from_counts: add_k must be > 0, got {add_k}; with 0 an unseen pair gets "
                "probability 0 (log-probability -inf), and a row never seen as a predecessor would be 0/0"
            )
        model = cls(vocab_size)
        ids = np.asarray(getattr(ids, "data", ids))
        ids = ids[None] if ids.ndim == 1 else ids
        model.check_ids(ids)
        previous, following = ids[:, :-1].reshape(-1), ids[:, 1:].reshape(-1)
        counts = np.bincount(previous * vocab_size + following, minlength=vocab_size * vocab_size)
        counts = counts.reshape(vocab_size, vocab_size) + add_k
        model.table.data[...] = np.log(counts / counts.sum(axis=1, keepdims=True))
        return model

    @property
    def config(self) -> dict:
        return dict(vocab_size=self.vocab_size)

    def new_cache(self, batch_size: int) -> DecodingCache:
        """Nothing to remember but the count of tokens seen: each prediction needs only its own input token."""
        return DecodingCache(batch_size)

    def forward(self, ids, cache: DecodingCache | None = None):
        ids = self.check_ids(ids, cache)
        if cache is not None:
            cache.length += ids.shape[1]
        return self.table[ids]
