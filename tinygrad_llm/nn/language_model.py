"""What every language model here promises, so one training loop and one `generate` serve them all.

    logits = model(ids)                       ids (B, T) int64  ->  logits (B, T, vocab_size)

`logits[:, t]` is the model's guess for token t + 1 and depends on `ids[:, :t + 1]` only (causal), so
one forward pass over a window trains on every position at once: the targets are the inputs shifted
left by one.

Generation feeds tokens a few at a time and must not redo the work for the ones already seen. Each
model keeps what it needs in a cache (keys and values for attention, the hidden state for an RNN, the
last few tokens for an MLP):

    cache = model.new_cache(batch_size)
    logits = model(prompt_ids, cache=cache)      # (B, T_prompt, V); the cache now holds the prompt
    logits = model(next_ids, cache=cache)        # (B, 1, V): continues where the cache left off

and the logits equal the matching rows of `model(full_ids)`. Caches hold plain arrays: they are for
inference, and gradients never flow through them (truncated backpropagation through time uses the
same fact deliberately).

`config` holds the constructor arguments, so a checkpoint can rebuild the model it came from.
"""
from __future__ import annotations

import numpy as np

from .module import Module


class DecodingCache:
    """What a model remembers between calls; `length` counts the tokens it has seen so far."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.length = 0


class LanguageModel(Module):
    vocab_size: int
    max_context: int | None = None  # the longest sequence forward accepts (None: any length)

    @property
    def config(self) -> dict:
        """Constructor keyword arguments: type(model)(**model.config) builds the same architecture."""
        raise NotImplementedError(f"{type(self).__name__} must define config")

    def new_cache(self, batch_size: int) -> DecodingCache:
        raise NotImplementedError(f"{type(self).__name__} must define new_cache()")

    def check_ids(self, ids, cache: DecodingCache | None = None):
        """ids as a (B, T) int64 array, with a message that says what was wrong and how to fix it."""
        ids = np.asarray(getattr(ids, "data", ids))
        name = type(self).__name__
        if ids.ndim != 2:
            raise ValueError(f"{name}: ids must have shape (batch, time), got {ids.shape}; "
                             "add a batch axis with ids[None] for a single sequence")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name}: ids must be integer token ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)][0]
            raise IndexError(f"{name}: token id {bad} is outside the vocabulary 0..{self.vocab_size - 1}; "
                             "encode with the tokenizer the model was trained with")
        seen = cache.length if cache is not None else 0
        if self.max_context is not None and seen + ids.shape[1] > self.max_context:
            raise ValueError(
                f"{name}: {seen} cached + {ids.shape[1]} new tokens exceed the model's context of "
                f"{self.max_context}; pass at most the last {self.max_context} tokens (tinygrad_llm.generation.generate "
                "does so by restarting its window from the last max_context // 2)"
            )
        if cache is not None and cache.batch_size != ids.shape[0]:
            raise ValueError(f"{name}: the cache was made for batch {cache.batch_size}, got ids of batch {ids.shape[0]}")
        return ids.astype(np.int64, copy=False)
