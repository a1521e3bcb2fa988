"""Language-modelling batches: windows of tokens and the same windows shifted by one.

A sequence model (MLP over a sliding window, RNN, Transformer) predicts at every position at once, so its
examples are windows: inputs ids[s : s + T] and targets ids[s + 1 : s + T + 1]; one window holds T
next-token examples, each seeing only the tokens up to its own position. Random windows come from a seeded
generator, so a run is repeatable.
"""
from __future__ import annotations

import numpy as np


def _check_windows(ids, block_size: int, name: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{name}: ids must be one 1-D token sequence, got shape {ids.shape}")
    if block_size < 1:
        raise ValueError(f"{name}: block_size must be >= 1, got {block_size}")
    if len(ids) < block_size + 1:
        raise ValueError(
            f"{name}: a text of {len(ids)} tokens is too short for block_size={block_size}: a window needs "
            f"block_size + 1 = {block_size + 1} tokens (inputs plus the one-token shift); use more text or a smaller block_size"
        )
    return ids


def random_windows(ids: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator):
    """(inputs (batch_size, block_size), targets (batch_size, block_size)): windows at random starts drawn
    from `rng`, targets = inputs shifted one token ahead. The same seed gives the same batch."""
    ids = _check_windows(ids, block_size, "random_windows")
    if batch_size < 1:
        raise ValueError(f"random_windows: batch_size must be >= 1, got {batch_size}")
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)  # last start: len - block_size - 1
    offsets = starts[:, None] + np.arange(block_size)
    return ids[offsets], ids[offsets + 1]


def evaluation_windows(ids: np.ndarray, block_size: int):
    """(inputs (N, block_size), targets (N, block_size)): consecutive non-overlapping windows in text order.

    Together the targets are ids[1 : N * block_size + 1], each token predicted once, so a mean loss over
    them is an honest held-out loss. The tail that cannot fill a whole window (fewer than block_size
    targets) is dropped. Each window starts without context, so the first positions of a window are
    harder to predict than in running text; all_next_token_examples gives every position a full context.
    """
    ids = _check_windows(ids, block_size, "evaluation_windows")
    count = (len(ids) - 1) // block_size
    inputs = ids[:count * block_size].reshape(count, block_size)
    targets = ids[1:count * block_size + 1].reshape(count, block_size)
    return inputs, targets
