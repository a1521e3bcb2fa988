"""The induction task (Q32): sequences whose second half can be predicted only by copying the first.

Each row draws a random prefix of `prefix_length` tokens and writes it twice, with a few random tokens
spread before, between and after the two copies (how many go where changes from row to row):

    filler | P1 P2 ... Pn | filler | P1 P2 ... Pn | filler
                                      ^^^^^^^^^^ predictable: after P1 comes P2, because it did before

Every token of a row is distinct except that the prefix appears twice, so the only way to predict P2 in
the second copy is the induction rule "find where the current token appeared before, and predict what
followed it there". The first copy and the fillers are unpredictable (chance), and so is the second copy's
first token P1 (nothing tells where the repeat begins). The distance between the copies varies, so no
"look k positions back" shortcut works: the model must match content.

The corrupted twin keeps the second copy and every filler, and swaps the FIRST copy for tokens used
nowhere else. The second half then reads exactly as before, but there is nothing to copy from: what the
clean run gets right there and the corrupted run cannot is what induction contributes. Patching an
activation from the corrupted run into the clean one (activation_patching.py) measures how much of that
contribution flows through it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class InductionBatch:
    """ids (B, T) clean sequences; corrupted (B, T) the same with the first copy replaced by unused tokens;
    predictable (B, T) booleans, True at the tokens determined by the tokens before them (the second copy
    but its first token): the model's logits at position p - 1 should predict ids[:, p] there."""
    ids: np.ndarray
    corrupted: np.ndarray
    predictable: np.ndarray


def induction_batch(batch_size: int, vocab_size: int, prefix_length: int, filler_tokens: int,
                    rng: np.random.Generator) -> InductionBatch:
    """`batch_size` rows of length 2 * prefix_length + filler_tokens, laid out as in the module docstring.

    The corrupted twin needs prefix_length fresh tokens on top of the row's own, so the vocabulary must
    hold 2 * prefix_length + filler_tokens distinct tokens."""
    needed = 2 * prefix_length + filler_tokens
    if prefix_length < 2 or filler_tokens < 0:
        raise ValueError(f"induction_batch: need prefix_length >= 2 (one token to copy after another) and "
                         f"filler_tokens >= 0, got prefix_length={prefix_length}, filler_tokens={filler_tokens}")
    if vocab_size < needed:
        raise ValueError(f"induction_batch: every token of a row and of its corrupted twin is distinct, which needs "
                         f"vocab_size >= 2 * prefix_length + filler_tokens = {needed}, got {vocab_size}; raise "
                         f"vocab_size or shorten the prefix")
    # Each row's tokens: a random arrangement of the vocabulary, of which the first `needed` are used as
    # prefix (columns 0..n-1), fresh replacements for the corrupted twin (n..2n-1) and filler (2n..).
    tokens = np.argsort(rng.random((batch_size, vocab_size)), axis=1)[:, :needed]
    cuts = np.sort(rng.integers(0, filler_tokens + 1, size=(batch_size, 2)), axis=1)
    first = cuts[:, :1]                     # where the first copy starts: the filler before it
    second = cuts[:, 1:] + prefix_length    # where the second starts: the filler before and between, and one copy
    position = np.arange(2 * prefix_length + filler_tokens)[None, :]
    in_first = (position >= first) & (position < first + prefix_length)
    in_second = (position >= second) & (position < second + prefix_length)
    prefix_tokens_before = np.clip(position - first, 0, prefix_length) + np.clip(position - second, 0, prefix_length)
    column = np.select([in_first, in_second], [position - first, position - second],
                       default=2 * prefix_length + position - prefix_tokens_before)  # the k-th filler is filler k
    ids = np.take_along_axis(tokens, column, axis=1)
    corrupted = np.take_along_axis(tokens, np.where(in_first, column + prefix_length, column), axis=1)
    predictable = in_second & (position > second)
    return InductionBatch(ids, corrupted, predictable)


def previous_occurrence(ids: np.ndarray) -> np.ndarray:
    """ids (B, T) -> (B, T): the position of the last earlier occurrence of ids[b, p] before p, -1 if none."""
    ids = np.asarray(ids)
    positions = np.full(ids.shape, -1, dtype=np.int64)
    for row in range(ids.shape[0]):
        last_seen = {}
        for position, token in enumerate(ids[row].tolist()):
            positions[row, position] = last_seen.get(token, -1)
            last_seen[token] = position
    return positions


def induction_rule(ids: np.ndarray) -> np.ndarray:
    """The copying algorithm an induction circuit implements, written out: (B, T) the prediction of each
    token from the tokens before it, ids[s + 1] where s is the previous occurrence of ids[p - 1]; -1 where the
    rule has nothing to go on (position 0, or a previous token seen for the first time)."""
    ids = np.asarray(ids)
    predictions = np.full(ids.shape, -1, dtype=np.int64)
    source = previous_occurrence(ids)[:, :-1]  # where the token before position p appeared earlier
    rows, positions = np.nonzero(source >= 0)
    predictions[rows, positions + 1] = ids[rows, source[rows, positions] + 1]
    return predictions
