"""The KV cache: why generating token t+1 need not redo the work for tokens 1..t (Q21).

In causal attention the key and value of a past token never change: they depend only on that token and
the ones before it. So when generating, each attention layer keeps the keys and values it has computed
and, for a new token, computes only ITS query, key and value, then attends over all the kept keys.

    without a cache   step t reprocesses all t tokens:  O(t^2 d) attention + O(t d^2) projections per step
    with a cache      step t processes one token:        O(t d) attention + O(d^2) projections per step

Generating T tokens thus drops from O(T^3 d) to O(T^2 d + T d^2) attention-and-projection work: a change
of algorithm, which is what changes the exponent (parallel hardware, quantization and pruning only change
the constant, misconception M38).

The price is memory. Per sequence the cache holds a key and a value vector of width d = H * D for every
token in every layer:

    values per sequence = 2 * L * T * d          (2: keys and values; `values_per_sequence`)
    bytes               = batch_size * 2 * L * T * d * bytes per value

For GPT-3 (L = 96, d = 12288) at T = 2048 in float16, that is 9.7 GB per sequence: the reason long contexts
are limited by memory long before compute.

Growth: each call concatenates the new keys onto the stored ones. That copies the cache once per call, which
costs O(L T d) per generated token, the same order as the attention that must read all of it anyway, and the
attention kernel wants one contiguous array per layer. Preallocating max_context slots would avoid the copy
but hold the full size from the first token; serving systems do that (in pages), a learner's cache need not.
"""
from __future__ import annotations

import numpy as np

from .language_model import DecodingCache
from ..device import take_rows
from ..tensor import Tensor, cat


class KVCache(DecodingCache):
    """Per layer, the keys and values (B, H, length, D) of every token seen so far, as plain arrays.

    Protocol (what GPT.forward does): during one forward call every attention layer calls `append` once
    with its new keys and values; `length` stays the number of tokens seen BEFORE the call (so it is also
    the position of the first new token) until the model adds the call's T at the end.
    """

    def __init__(self, batch_size: int, num_layers: int):
        super().__init__(batch_size)
        self.num_layers = num_layers
        self.keys: list[np.ndarray | None] = [None] * num_layers
        self.values: list[np.ndarray | None] = [None] * num_layers
        self.padding: np.ndarray | None = None  # (B, length) True for padding tokens, once any mask was given

    def append(self, layer_index: int, keys: Tensor, values: Tensor):
        """Store this call's keys and values (B, H, T_new, D) of layer `layer_index` after the cached ones and
        return all of them, (B, H, length + T_new, D), as tensors. Gradients reach the new keys and values; the
        stored ones are constants (a cache is for inference)."""
        if layer_index is None or not 0 <= layer_index < self.num_layers:
            raise ValueError(f"KVCache.append: layer_index must be in 0..{self.num_layers - 1}, got {layer_index}")
        if keys.shape != values.shape or keys.ndim != 4 or keys.shape[0] != self.batch_size:
            raise ValueError(f"KVCache.append: keys {keys.shape} and values {values.shape} must both be "
                             f"(B={self.batch_size}, H, T, D)")
        stored = self.keys[layer_index]
        held = 0 if stored is None else stored.shape[2]
        if held != self.length:
            raise RuntimeError(
                f"KVCache.append: layer {layer_index} holds {held} tokens but the cache has seen {self.length}; each "
                "forward must append to every layer exactly once and then add its token count to cache.length"
            )
        if stored is not None:
            if stored.shape[1] != keys.shape[1] or stored.shape[3] != keys.shape[3]:
                raise ValueError(f"KVCache.append: layer {layer_index} caches (B, H, T, D) = {stored.shape}, "
                                 f"new keys are {keys.shape}; H and D must match")
            keys = cat([Tensor(stored), keys], axis=2)
            values = cat([Tensor(self.values[layer_index]), values], axis=2)
        self.keys[layer_index], self.values[layer_index] = keys.data, values.data
        return keys, values

    @property
    def next_positions(self):
        """The position of the next token fed to each row: `length`, shared by every row. A cache whose rows have
        seen different numbers of tokens (tinygrad_llm/serving/batched_decoding.py) returns an int array (B,)."""
        return self.length

    def extend_padding(self, padding_mask, num_new: int) -> np.ndarray | None:
        """The key padding mask (B, length + num_new) for this call: the stored flags of the cached tokens, then
        `padding_mask` (B, num_new) for the new ones (None: none of them is padding). None while no mask was
        ever given. Call once per forward, before the model advances `length`."""
        if padding_mask is None and self.padding is None:
            return None
        past = self.padding if self.padding is not None else np.zeros((self.batch_size, self.length), dtype=bool)
        if past.shape[1] != self.length:
            raise RuntimeError(f"KVCache.extend_padding: holds flags for {past.shape[1]} tokens but the cache has "
                               f"seen {self.length}; call it once per forward")
        new = np.zeros((self.batch_size, num_new), dtype=bool) if padding_mask is None else np.asarray(padding_mask, dtype=bool)
        self.padding = np.concatenate([past, new], axis=1)
        return self.padding

    def reorder(self, rows) -> None:
        """Row i now holds what row rows[i] held (rows may repeat or drop rows): beam search keeps, for each
        new beam, the keys and values of the beam it extends."""
        rows = np.asarray(rows)
        self.keys = [None if a is None else take_rows(a, rows) for a in self.keys]
        self.values = [None if a is None else take_rows(a, rows) for a in self.values]
        self.padding = None if self.padding is None else self.padding[rows]
        self.batch_size = len(rows)

    def truncate(self, length: int) -> None:
        """Forget every token after the first `length`: keys, values and padding flags. Speculative decoding
        (generation/speculative.py) feeds drafted tokens and must drop the ones the target rejects, or later
        tokens would attend to text that was never accepted. Keys depend only on the tokens up to their own,
        so what is kept is exactly what a fresh cache fed the first `length` tokens would hold."""
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 <= length <= self.length:
            raise ValueError(f"KVCache.truncate: length must be an integer in 0..{self.length} (the tokens cached), "
                             f"got {length!r}; a cache can only forget tokens, not add them")
        self.keys = [None if a is None else a[:, :, :length] for a in self.keys]
        self.values = [None if a is None else a[:, :, :length] for a in self.values]
        self.padding = None if self.padding is None else self.padding[:, :length]
        self.length = length

    @staticmethod
    def values_per_sequence(num_layers: int, num_tokens: int, embed_dim: int) -> int:
        """2 * L * T * d: a key and a value vector of width d per token per layer."""
        return 2 * num_layers * num_tokens * embed_dim

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored keys and values: batch_size * 2 * L * T * d * itemsize."""
        return sum(a.nbytes for a in self.keys + self.values if a is not None)

    def __repr__(self):
        return f"KVCache(batch_size={self.batch_size}, num_layers={self.num_layers}, length={self.length}, nbytes={self.nbytes})"
