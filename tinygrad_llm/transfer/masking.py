"""Masked-language-model inputs and loss (Q26, M47): the labels come from the text itself.

BERT's recipe, for every position that is neither padding nor a special token:

    with probability `rate` (15%) the position is SELECTED; a selected position then becomes
        [MASK]            with probability mask_share   (80%)
        a random token    with probability random_share (10%)
        itself            otherwise                     (10%)

and the model is scored ONLY at the selected positions, against the token that was there. Why each part:
- The loss only where the answer was hidden: an encoder sees every input token, so at an unselected
  position the right answer is in its own input and "copy it" is a perfect solution that teaches nothing
  (M47). The same holds for the 10% kept unchanged, which is why they are scored too: there the model
  cannot tell whether it must copy or correct, so it has to check every token against its context.
- The random 10% forbid trusting the input blindly; the kept 10% bridge the gap between pretraining (where
  [MASK] is everywhere) and fine-tuning (where it never appears).

Targets use cross_entropy's ignore_index convention (IGNORE_INDEX = -100 at every unscored position), so
masked_lm_loss is plain cross-entropy and unselected positions get exactly zero gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..data import IGNORE_INDEX
from ..nn import functional as F
from ..nn.module import Module
from ..nn.transformer_encoder import MissingHeadError, missing_head_message
from ..tensor import Tensor


class MaskedTokens(NamedTuple):
    inputs: np.ndarray  # the corrupted ids the model reads
    targets: np.ndarray  # the original id at selected positions, IGNORE_INDEX elsewhere
    selected: np.ndarray  # bool, True at the positions the loss scores


def _check_masking_options(ids, mask_id, vocab_size, rate, mask_share, random_share, padding_mask) -> None:
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"mask_tokens: ids must be integer token ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"mask_tokens: ids must lie in 0..{vocab_size - 1} (vocab_size={vocab_size}), "
                         f"got values from {ids.min()} to {ids.max()}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_tokens: mask_id {mask_id} is outside the vocabulary 0..{vocab_size - 1}; reserve an id "
                         "for [MASK] (tokenizer.mask_id, or V for V ordinary ids with vocab_size V + 1)")
    if not 0 < rate <= 1:
        raise ValueError(f"mask_tokens: rate must be in (0, 1], got {rate} (BERT selects 0.15 of the positions)")
    if mask_share < 0 or random_share < 0 or mask_share + random_share > 1:
        raise ValueError(f"mask_tokens: mask_share {mask_share} and random_share {random_share} must be >= 0 and sum to "
                         "at most 1 (the rest of the selected positions keep their token); BERT uses 0.8 and 0.1")
    if padding_mask is not None and np.shape(padding_mask) != ids.shape:
        raise ValueError(f"mask_tokens: padding_mask must have the shape of ids {ids.shape}, got {np.shape(padding_mask)}")


def mask_tokens(ids, mask_id: int, vocab_size: int, rng: np.random.Generator, rate: float = 0.15,
                mask_share: float = 0.8, random_share: float = 0.1, special_ids=(),
                padding_mask=None) -> MaskedTokens:
    """Corrupt `ids` (any shape) for masked-LM training; returns MaskedTokens(inputs, targets, selected).

    Each eligible position is selected independently with probability `rate`, so the count is binomial
    around rate * (eligible positions). Never selected: padding (padding_mask True), the `special_ids`, and
    mask_id itself. A random replacement is drawn uniformly from the ordinary ids (neither special nor
    mask_id), so it never injects [MASK] or PAD; it may happen to equal the original token.
    """
    ids = np.asarray(getattr(ids, "data", ids))
    _check_masking_options(ids, mask_id, vocab_size, rate, mask_share, random_share, padding_mask)
    excluded = np.union1d(np.asarray(special_ids, dtype=np.int64), [mask_id])
    ordinary = np.setdiff1d(np.arange(vocab_size), excluded)
    if ordinary.size == 0:
        raise ValueError(f"mask_tokens: every id of the vocabulary 0..{vocab_size - 1} is special; no ordinary token "
                         "is left to predict or to draw as a random replacement")
    eligible = ~np.isin(ids, excluded)
    if padding_mask is not None:
        eligible &= ~np.asarray(padding_mask, dtype=bool)
    selected = eligible & (rng.random(ids.shape) < rate)
    action = rng.random(ids.shape)  # read at selected positions only: which of the three corruptions
    masked = selected & (action < mask_share)
    randomised = selected & (action >= mask_share) & (action < mask_share + random_share)
    inputs = ids.astype(np.int64, copy=True)
    inputs[masked] = mask_id
    inputs[randomised] = rng.choice(ordinary, size=int(randomised.sum()))
    targets = np.where(selected, ids, IGNORE_INDEX).astype(np.int64)
    return MaskedTokens(inputs, targets, selected)


def masked_lm_loss(logits: Tensor, targets) -> Tensor:
    """Mean cross-entropy over the scored positions only (targets != IGNORE_INDEX), e.g. mask_tokens' targets.

    Only the selected positions count because everywhere else the answer is in the model's own input: a loss
    there rewards copying the input and teaches the model to trust what it sees (M47). The masked_lm experiment
    measures what that does at its small scale: the model copies randomly replaced words more while it learns,
    and its accuracy at [MASK] is not lower. Unscored positions get exactly zero gradient. Passing the original
    ids as targets does score every position: that is the ablation, not MLM.
    """
    if isinstance(logits, Module):
        if hasattr(logits, "hidden_size"):
            raise MissingHeadError(missing_head_message(logits, "masked_lm_loss"))
        raise TypeError(f"masked_lm_loss: takes logits (a Tensor (B, T, V)), got the model {type(logits).__name__}; "
                        "pass model(inputs)")
    targets = np.asarray(getattr(targets, "data", targets))
    scored = targets[targets != IGNORE_INDEX]
    if scored.size and scored.max() >= logits.shape[-1]:
        raise ValueError(
            f"masked_lm_loss: the last axis of logits {logits.shape} has {logits.shape[-1]} entries but a target id is "
            f"{scored.max()}: one logit per vocabulary id is needed. Hidden states of a base model are not logits "
            "(M49): put a MaskedLMHead on the encoder"
        )
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
