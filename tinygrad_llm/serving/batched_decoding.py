"""One decoding step for a ragged batch: B requests, each at its own position, in ONE forward pass.

Why batch at all (M41): feeding one token through the model reads every weight once to do only two FLOPs
per weight, so a decoding step is bound by memory traffic, not arithmetic. Feeding the next token of B
requests at once reads the weights once for all of them: the step costs little more than a step for one,
throughput rises nearly B-fold, and no single request gets its tokens any sooner.

The difficulty is that the requests are ragged: they arrived at different times with prompts of different
lengths, so when a step runs, row b has seen L_b tokens. Three things must then be right for every row:

    1. its keys and values. Each request keeps its OWN KVCache, built by a batch-1 prefill of its prompt.
       A step stacks them into one (B, H, max L_b, D) array per layer, each row's L_b keys first and
       padding after, with a key padding mask that gives the padding probability exactly 0;
    2. its position. Row b's new token sits at position L_b, not at max L_b: the stacked cache reports one
       position per row (RaggedKVCache.next_positions, an int array (B,)), and GPT.forward uses it for
       learned, sinusoidal and rotary positions alike;
    3. its cache. The step's new key and value of row b are appended to row b's own cache.

Then row b's logits equal those of feeding its token alone, to float rounding (the tests hold it to that).
Stacking copies every cache once per step: the same order of memory traffic as the attention that must
read them anyway. Servers avoid the copy by keeping all caches in one preallocated pool of fixed-size
pages that the attention kernel indexes directly (vLLM's PagedAttention).

Context limit, exactly as `generate` does it: when a request's window would exceed the model's context C,
it restarts from its last max(1, C // 2) tokens, and that request alone is prefilled again.
"""
from __future__ import annotations

import numpy as np

from ..nn.kv_cache import KVCache


class RaggedKVCache(KVCache):
    """The caches of several requests, of different lengths, stacked into one padded batch for one step.

    `length` is the padded width, max L_b (what the attention layers append after); `row_lengths` are the
    L_b, which are also the positions of the rows' next tokens.
    """

    def __init__(self, caches: list[KVCache]):
        if not caches or any(c.batch_size != 1 or c.length < 1 or c.padding is not None for c in caches):
            raise ValueError("RaggedKVCache: needs at least one cache, each of batch 1 with at least one token and no "
                             "padding (a request's own cache, from a batch-1 prefill of its prompt)")
        super().__init__(len(caches), caches[0].num_layers)
        self.row_lengths = np.array([c.length for c in caches], dtype=np.int64)
        self.length = int(self.row_lengths.max())
        self.padding = np.arange(self.length)[None, :] >= self.row_lengths[:, None]
        for layer in range(self.num_layers):
            self.keys[layer] = self._stack([c.keys[layer] for c in caches])
            self.values[layer] = self._stack([c.values[layer] for c in caches])

    def _stack(self, rows: list[np.ndarray]) -> np.ndarray:
        """(1, H, L_b, D) arrays -> one (B, H, max L_b, D) array, each row's entries first, zeros after."""
        _, heads, _, head_dim = rows[0].shape
        stacked = np.zeros((len(rows), heads, self.length, head_dim), dtype=rows[0].dtype)
        for b, row in enumerate(rows):
            stacked[b, :, :row.shape[2]] = row[0]
        return stacked

    @property
    def next_positions(self) -> np.ndarray:
        return self.row_lengths

    def copy_new_entries_to(self, caches: list[KVCache]) -> None:
        """Append what the last forward pass added (the last column of every layer) to each row's own cache.
        Plain array concatenations: the result of cache.append without its Tensor and autograd op for each
        of the B * L * 2 pieces, an overhead that showed up in profiles of a step."""
        for b, cache in enumerate(caches):
            if cache.length != self.row_lengths[b]:
                raise RuntimeError(f"RaggedKVCache.copy_new_entries_to: row {b} holds {cache.length} tokens, it held "
                                   f"{self.row_lengths[b]} when stacked; pass the caches it was built from, once")
            for layer in range(self.num_layers):
                cache.keys[layer] = np.concatenate([cache.keys[layer], self.keys[layer][b:b + 1, :, -1:]], axis=2)
                cache.values[layer] = np.concatenate([cache.values[layer], self.values[layer][b:b + 1, :, -1:]], axis=2)
            cache.length += 1


def _logits_of_last_token(model, ids: np.ndarray, cache: KVCache) -> np.ndarray:
    """The (B, V) logits that follow the last token of every row."""
    return np.asarray(model(ids, cache=cache).data[:, -1])


class DecodingSequence:
    """One request's decoding state: the tokens its model window holds, its own KVCache, and the logits of its
    next token (after the prefill of its prompt, then after every step)."""

    def __init__(self, model, prompt_ids: np.ndarray):
        self.model = model
        self.window = np.asarray(prompt_ids, dtype=np.int64)
        self.next_logits = self._prefill()

    def _prefill(self) -> np.ndarray:
        """Read the whole window into a fresh batch-1 cache; returns the (V,) logits of the next token."""
        self.cache = self.model.new_cache(1)
        return _logits_of_last_token(self.model, self.window[None], self.cache)[0]

    def append(self, token: int) -> bool:
        """Add the chosen token to the window. Returns True when it must still be fed to the model (by a batched
        step), False when the window overflowed the context: it then restarts from its last max(1, C // 2)
        tokens and is prefilled alone, as `generate` does, which already gives the next logits."""
        self.window = np.append(self.window, np.int64(token))
        max_context = self.model.max_context
        if max_context is not None and len(self.window) > max_context:
            self.window = self.window[-max(1, max_context // 2):]
            self.next_logits = self._prefill()
            return False
        return True


def decode_step(model, sequences: list[DecodingSequence]) -> None:
    """Feed every sequence's last window token through ONE forward pass of batch len(sequences), each row at
    its own position over its own cache; every sequence gets the logits of its next token."""
    ragged = RaggedKVCache([s.cache for s in sequences])
    tokens = np.array([[s.window[-1]] for s in sequences], dtype=np.int64)
    logits = _logits_of_last_token(model, tokens, ragged)
    ragged.copy_new_entries_to([s.cache for s in sequences])
    for sequence, row in zip(sequences, logits):
        sequence.next_logits = row
