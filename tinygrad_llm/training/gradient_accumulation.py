"""Gradient accumulation: the gradient of a batch too big to fit, from micro-batches that do fit.

A mean loss over N counted tokens is a weighted sum of the micro-batches' own mean losses:

    L = (1/N) sum_all nll = sum_i (n_i / N) * L_i          (L_i: mean over micro-batch i's n_i counted tokens)

and the gradient is linear, so backward on each (n_i / N) * L_i in turn, with .grad adding up between the
calls (the engine accumulates like PyTorch), leaves exactly dL/dtheta: the full batch's gradient, in one
optimizer step. Nothing is saved in compute (the same tokens go through forward and backward once each);
what falls is the peak memory, which follows the largest micro-batch instead of the whole batch.

The weight is each micro-batch's share of the TOKENS. When every micro-batch counts the same number of
tokens it is 1/k (what the training loop divides by); with a shorter last micro-batch or with padding
(ignore_index), dividing by k, or by one micro-batch's token count, gives a different, wrong gradient.
"""
from __future__ import annotations

import numpy as np

from ..nn import functional as F

__all__ = ["accumulate_gradients"]


def accumulate_gradients(model, inputs, targets, micro_batch_size: int, ignore_index: int = -100) -> float:
    """Backward of the mean cross-entropy of model(inputs) against targets, micro_batch_size rows at a time.

    Afterwards every parameter's .grad holds (added to what it held before) the gradient of the full batch's
    mean loss over its counted targets (those != ignore_index). Returns that full-batch loss.
    """
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    if len(inputs) != len(targets):
        raise ValueError(f"accumulate_gradients: inputs has {len(inputs)} rows but targets has {len(targets)}")
    if not isinstance(micro_batch_size, (int, np.integer)) or micro_batch_size < 1:
        raise ValueError(f"accumulate_gradients: micro_batch_size must be a positive integer, got {micro_batch_size!r}")
    total_tokens = int(np.count_nonzero(targets != ignore_index))
    if total_tokens == 0:
        raise ValueError(f"accumulate_gradients: every target equals ignore_index={ignore_index}, so the mean loss "
                         "is undefined; the batch has nothing to learn from")
    total_loss = 0.0
    for start in range(0, len(inputs), micro_batch_size):
        micro_inputs, micro_targets = inputs[start:start + micro_batch_size], targets[start:start + micro_batch_size]
        tokens = int(np.count_nonzero(micro_targets != ignore_index))
        if tokens > 0:  # all padding: no gradient, and its own mean would be 0 / 0
            total_loss += _backward_share(model, micro_inputs, micro_targets, tokens / total_tokens, ignore_index)
    return total_loss


def _backward_share(model, inputs, targets, share: float, ignore_index: int) -> float:
    """Backward of share * (the micro-batch's mean loss); returns its value as a float. The loss tensor lives only
    in here on purpose: it holds the micro-batch's whole graph, every activation included, and a loop variable
    holding it would keep that graph alive during the next micro-batch's forward (twice the memory)."""
    loss = F.cross_entropy(model(inputs), targets, ignore_index=ignore_index) * share
    loss.backward()
    return loss.item()
