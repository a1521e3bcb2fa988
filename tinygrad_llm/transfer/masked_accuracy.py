"""How well is a hidden token recovered? Masked-token accuracy, and the two baselines it must beat (Q26).

All three score the same positions of the same corrupted windows (from `masked_windows`):

    masked_accuracy    the MLM's most likely token at each scored position, reading the whole window
                       (accuracy_by_corruption splits it by what the position showed: [MASK], another token,
                       or the original)
    unigram_accuracy   always the most frequent training token: what a model learns from no context
    bigram_accuracy    the most likely token after the visible left neighbour (the unigram guess when that
                       neighbour is [MASK] or there is none): what one token of left context is worth

An MLM that only matches the unigram baseline has learned token frequencies; beating the bigram baseline
means it uses context, from both sides.
"""
from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..data import IGNORE_INDEX
from .heads import MaskedLMHead, require_head
from .masking import MaskedTokens, mask_tokens


def masked_windows(ids, window: int, mask_id: int, vocab_size: int, seed: int = 0, **masking) -> MaskedTokens:
    """Consecutive non-overlapping windows of the token stream `ids` (the tail that fills no window is dropped),
    corrupted by mask_tokens with a fixed seed: the same evaluation batch every time. **masking goes to
    mask_tokens (rate, mask_share, random_share, special_ids)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) < window:
        raise ValueError(f"masked_windows: ids must be a 1-D token stream of at least one window ({window}), "
                         f"got shape {ids.shape}")
    count = len(ids) // window
    return mask_tokens(ids[:count * window].reshape(count, window), mask_id, vocab_size,
                       np.random.default_rng(seed), **masking)


def _scored(targets) -> np.ndarray:
    scored = np.asarray(targets) != IGNORE_INDEX
    if not scored.any():
        raise ValueError("masked accuracy: no position is scored (every target is IGNORE_INDEX); use more text or a "
                         "higher masking rate")
    return scored


def masked_predictions(model, inputs, batch_size: int = 64) -> np.ndarray:
    """The model's most likely token at every position of `inputs` (N, T), in batches, without a graph.
    `model` must be a ModelWithHead with a MaskedLMHead: a base model has no logits (M49)."""
    model = require_head(model, "masked_predictions", MaskedLMHead)
    inputs = np.asarray(inputs)
    with no_grad():
        return np.concatenate([model(inputs[start:start + batch_size]).data.argmax(axis=-1)
                               for start in range(0, len(inputs), batch_size)])


def masked_accuracy(model, inputs, targets, batch_size: int = 64) -> float:
    """The fraction of scored positions (targets != IGNORE_INDEX) where the model's top logit is the target."""
    targets = np.asarray(targets)
    scored = _scored(targets)
    return float(np.mean(masked_predictions(model, inputs, batch_size)[scored] == targets[scored]))


def accuracy_by_corruption(predictions, inputs, targets, mask_id: int) -> dict:
    """Accuracy at the scored positions split by what the model saw there: [MASK] ("masked"), another token
    ("replaced") or the original ("kept"); and "copied_replacement", how often a replaced position is answered
    with the wrong token it shows: a model trained to copy its input (M47) does that. NaN for an empty kind."""
    predictions, inputs, targets = np.asarray(predictions), np.asarray(inputs), np.asarray(targets)
    scored = _scored(targets)
    kinds = {"masked": scored & (inputs == mask_id), "replaced": scored & (inputs != mask_id) & (inputs != targets),
             "kept": scored & (inputs == targets)}

    def rate(hits, where):
        return float(np.mean(hits[where])) if where.any() else float("nan")

    correct = predictions == targets
    return {**{kind: rate(correct, where) for kind, where in kinds.items()},
            "copied_replacement": rate(predictions == inputs, kinds["replaced"])}


def unigram_accuracy(train_ids, targets) -> float:
    """Accuracy of always predicting the most frequent token of `train_ids`."""
    scored = _scored(targets)
    most_frequent = np.bincount(np.asarray(train_ids)).argmax()
    return float(np.mean(np.asarray(targets)[scored] == most_frequent))


def bigram_accuracy(train_ids, inputs, targets, mask_id: int) -> float:
    """Accuracy of predicting argmax_y count(left neighbour, y) in `train_ids`, from the left neighbour visible
    in `inputs` (the unigram guess at position 0, after [MASK], and after a neighbour never seen in training)."""
    train_ids, inputs, targets = np.asarray(train_ids), np.asarray(inputs), np.asarray(targets)
    scored = _scored(targets)
    size = int(max(train_ids.max(), inputs.max(), mask_id)) + 1
    counts = np.zeros((size, size), np.int64)
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1)
    unigram_guess = np.bincount(train_ids, minlength=size).argmax()
    next_guess = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), unigram_guess)
    next_guess[mask_id] = unigram_guess
    predictions = np.full(inputs.shape, unigram_guess)
    predictions[:, 1:] = next_guess[inputs[:, :-1]]
    return float(np.mean(predictions[scored] == targets[scored]))
