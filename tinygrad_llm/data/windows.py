"""Language-modelling batches: fixed-length contexts and the token that follows each.

For a model that reads `block_size` tokens and predicts the next, every position t of the text gives one
example: input ids[t - block_size : t], target ids[t]. Batches are random positions from a seeded
generator, so a run is repeatable.
"""
from __future__ import annotations

import numpy as np


def next_token_batch(ids: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator):
    """(contexts of shape (batch_size, block_size), next-token targets of shape (batch_size,))."""
    if len(ids) <= block_size:
        raise ValueError(f"next_token_batch: a text of {len(ids)} tokens is too short for block_size={block_size}")
    ends = rng.integers(block_size, len(ids), size=batch_size)
    contexts = np.stack([ids[end - block_size:end] for end in ends])
    return contexts, ids[ends]


def all_next_token_examples(ids: np.ndarray, block_size: int):
    """Every (context, next token) pair of the text in order: for exact evaluation on held-out text."""
    if len(ids) <= block_size:
        raise ValueError(f"all_next_token_examples: {len(ids)} tokens is too short for block_size={block_size}")
    windows = np.lib.stride_tricks.sliding_window_view(ids, block_size)[:-1]
    return windows, ids[block_size:]
