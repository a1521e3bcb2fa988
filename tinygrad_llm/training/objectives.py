"""What a window of text is trained to predict: the next token (causal) or the masked tokens (mlm).

The loop draws windows of token ids as (inputs, targets) with targets = inputs shifted by one. A causal
language model learns exactly that. A masked language model reads the whole window at once, so the next
token is in its input; instead, mask_tokens hides 15% of the window's tokens and the targets become those
tokens, with every other position ignored by the loss (transfer/masking.py says why). Either way the loss is
the same cross-entropy with ignore_index, so the rest of the loop does not need to know which it trains.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..data import Tokenizer
from ..transfer.masking import mask_tokens
from .config import TrainConfig

# (inputs, targets, rng) -> (inputs, targets): the batch the model reads and the ids it is scored on
Objective = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple]


def next_token(inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple:
    """The causal objective: the windows as drawn (targets are the next tokens)."""
    return inputs, targets


def masked_tokens(tokenizer: Tokenizer, rate: float) -> Objective:
    """The mlm objective: mask `rate` of each window's tokens (80/10/10) and score only those. Special ids
    (padding, BOS, EOS, ...) are never masked nor drawn as random replacements."""
    special_ids = tuple(tokenizer.special_tokens.values())

    def objective(inputs, targets, rng):
        masked = mask_tokens(inputs, tokenizer.mask_id, tokenizer.vocab_size, rng, rate=rate,
                             special_ids=special_ids)
        return masked.inputs, masked.targets

    return objective


def build_objective(config: TrainConfig, tokenizer: Tokenizer) -> Objective:
    return masked_tokens(tokenizer, config.mask_rate) if config.objective == "mlm" else next_token
