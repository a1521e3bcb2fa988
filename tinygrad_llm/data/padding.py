"""Batching sequences of different lengths: pad to one length, and say where the padding is.

A batch is one (B, T) array, so shorter sequences are filled with the PAD id. The filler must then be
invisible twice over (misconception M19, "any tokenizer can pad a batch"):
- in attention, as keys: `padding_mask` (True = padding) goes to scaled_dot_product_attention so no
  real token attends to a pad;
- in the loss, as targets: `lm_inputs_and_targets` sets their targets to ignore_index, which
  cross_entropy skips, so pads get zero loss and zero gradient.
A tokenizer without a PAD token cannot pad at all: define one (every Tokenizer here has `pad_id`).

Which side to pad:
- right (the default): real tokens keep positions 0..len-1; the usual choice for training.
- left: what batched generation with a decoder-only model needs. The next token of every row is
  predicted from the last column, and each new token is appended as a new last column. With left
  padding the last column is every row's newest real token, so one `logits[:, -1]` and one appended
  column serve the whole batch; with right padding a short row's last column is a pad, and its new
  tokens would be written after the pads. (Position ids should then count from each row's first real
  token, which `lengths` gives.)
Truncation picks which end of an over-long sequence to cut: "right" keeps the beginning, "left" keeps
the end (the most recent context, as a chat model wants).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDES = ("right", "left")


@dataclass
class PaddedBatch:
    ids: np.ndarray  # (B, T) int64, pad_id where padding
    padding_mask: np.ndarray  # (B, T) bool, True where padding
    lengths: np.ndarray  # (B,) int64, real tokens per row after truncation


def pad_batch(sequences, pad_id: int | None, max_length: int | None = None, side: str = "right",
              truncation: str = "right") -> PaddedBatch:
    """Pad (and, beyond max_length, truncate) 1-D id sequences into one PaddedBatch.

    max_length=None pads to the longest sequence; otherwise every row has exactly max_length columns.
    """
    if pad_id is None:
        raise ValueError(
            "pad_batch: pad_id is None, i.e. the tokenizer has no PAD token; a batch of unequal lengths needs one. "
            "Add a PAD token to the vocabulary (tinygrad_llm tokenizers have tok.pad_id), mask it in attention and "
            "exclude it from the loss"
        )
    if isinstance(pad_id, bool) or not isinstance(pad_id, (int, np.integer)):
        raise TypeError(f"pad_batch: pad_id must be an int token id, got {pad_id!r}")
    for name, value in (("side", side), ("truncation", truncation)):
        if value not in SIDES:
            raise ValueError(f"pad_batch: {name} must be one of {SIDES}, got {value!r}")
    rows = [np.asarray(seq) for seq in sequences]
    if not rows:
        raise ValueError("pad_batch: got no sequences; a batch needs at least one")
    for i, row in enumerate(rows):
        if row.ndim != 1 or (row.size and not np.issubdtype(row.dtype, np.integer)):
            raise ValueError(f"pad_batch: sequence {i} must be a 1-D sequence of integer ids, got shape {row.shape} dtype {row.dtype}")
    if max_length is None:
        max_length = max(len(row) for row in rows)
    elif max_length < 1:
        raise ValueError(f"pad_batch: max_length must be >= 1 or None, got {max_length}")
    rows = [row[:max_length] if truncation == "right" else row[len(row) - min(len(row), max_length):] for row in rows]
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    ids = np.full((len(rows), max_length), pad_id, dtype=np.int64)
    padding_mask = np.ones((len(rows), max_length), dtype=bool)
    for i, row in enumerate(rows):
        start = 0 if side == "right" else max_length - len(row)
        ids[i, start:start + len(row)] = row
        padding_mask[i, start:start + len(row)] = False
    return PaddedBatch(ids, padding_mask, lengths)


def lm_inputs_and_targets(batch: PaddedBatch, ignore_index: int = -100):
    """(inputs (B, T-1), targets (B, T-1), input padding_mask (B, T-1)) for next-token training.

    targets[:, t] is the token after inputs[:, t]. A target counts only when both it and its input are
    real tokens; all others become ignore_index. So pads are never predicted, nothing is predicted from
    a pad, and each row contributes lengths - 1 targets whichever side it was padded on.
    """
    if batch.ids.shape[1] < 2:
        raise ValueError(f"lm_inputs_and_targets: need at least 2 columns to shift by one, got ids of shape {batch.ids.shape}")
    inputs, targets = batch.ids[:, :-1], batch.ids[:, 1:].copy()
    input_padding = batch.padding_mask[:, :-1]
    targets[batch.padding_mask[:, 1:] | input_padding] = ignore_index
    return inputs, targets, input_padding
