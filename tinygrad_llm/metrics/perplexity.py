"""Perplexity: how surprised a language model is by held-out text, on average per token.

    mean NLL = -(1/N) * sum_t log p(x_t | x_<t)      in nats per token: the cross-entropy loss training minimises
    PPL      = exp(mean NLL)

PPL is the size of a uniform choice that would be exactly as surprising: a model that spreads its mass evenly
over V tokens has PPL = V (where an untrained model starts), a perfect one has PPL = 1. Two caveats:
- it is per TOKEN, so it is only comparable between models that share a tokenizer (a character model and a
  BPE model predict different units: compare bits per character or per byte instead);
- it is a mean over the SAME scored tokens: here every token after the first is scored once.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import no_grad
from ..nn import functional as F


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood in nats per token), i.e. exp of the mean cross-entropy loss.

    A loss measured in bits (log base 2) needs 2 ** loss instead; exp of a SUMMED loss is not a perplexity.
    """
    if isinstance(mean_nll, bool) or not isinstance(mean_nll, numbers.Real) or not mean_nll >= 0:
        raise ValueError(f"perplexity: mean_nll must be a mean negative log-likelihood >= 0 in nats per token, got "
                         f"{mean_nll!r}; a negative value means log-probabilities were passed without the minus sign")
    return math.exp(mean_nll)


def _scored_windows(ids: np.ndarray, block_size: int, batch_size: int):
    """(inputs, targets) batches that score every token after the first exactly once.

    Window w reads ids[w*b : w*b + b] and is scored on ids[w*b + 1 : w*b + b + 1] (b = block_size): the
    inputs shifted left by one. Consecutive windows share one token (the last target of one is the first
    input of the next), so targets never overlap and none is missed. The text left after the full windows
    forms one shorter final window.
    """
    num_scored = len(ids) - 1
    num_full = num_scored // block_size
    inputs = ids[:num_full * block_size].reshape(num_full, block_size)
    targets = ids[1:num_full * block_size + 1].reshape(num_full, block_size)
    for start in range(0, num_full, batch_size):
        yield inputs[start:start + batch_size], targets[start:start + batch_size]
    if num_full * block_size < num_scored:
        yield ids[num_full * block_size:-1][None], ids[num_full * block_size + 1:][None]


def evaluate_language_model(model, ids, block_size: int, batch_size: int = 32) -> dict:
    """Mean NLL per token and perplexity of `model` on the token stream `ids` (1-D).

    The stream is cut into non-overlapping windows of block_size inputs; in each, the model's logits at
    position t are scored against the token at t + 1 (see _scored_windows). Every token except ids[0]
    (which nothing predicts) is scored exactly once, so "tokens" = len(ids) - 1.

    The context restarts at each window, so the first tokens of a window are predicted from little
    context: this is cheaper than a sliding window (one forward per token, stride 1) and reports a somewhat
    higher perplexity than the model could reach with full context. Compare models under the same
    block_size. Runs under no_grad in eval mode and restores the model's training mode.

    Returns {"loss": mean NLL in nats per token, "perplexity": exp(loss), "tokens": number scored}.
    """
    ids = np.asarray(getattr(ids, "data", ids))
    name = type(model).__name__
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"evaluate_language_model: ids must be a 1-D token stream of at least 2 tokens (one to read, "
                         f"one to score), got shape {ids.shape}")
    for option, value in (("block_size", block_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"evaluate_language_model: {option} must be an integer >= 1, got {value!r}")
    max_context = getattr(model, "max_context", None)
    if max_context is not None and block_size > max_context:
        raise ValueError(f"evaluate_language_model: block_size={block_size} exceeds {name}'s max_context="
                         f"{max_context}; evaluate with block_size <= {max_context}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"evaluate_language_model: ids must be integer token ids, got dtype {ids.dtype}")

    total_nll, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for inputs, targets in _scored_windows(ids, block_size, batch_size):
                logits = model(inputs).double()  # float64: a log-probability near 0 keeps its digits
                total_nll += F.cross_entropy(logits, targets, reduction="sum").item()
                count += targets.size
    finally:
        model.train(was_training)
    mean_nll = total_nll / count
    return {"loss": mean_nll, "perplexity": perplexity(mean_nll), "tokens": count}
