"""Cross-entropy from logits (N, C) and class ids (N,), fused with log-softmax.

Each row's target is a weight vector q over the classes: (1 - eps) * w[y] on the target class plus
eps / C * w spread over all classes (label smoothing eps, class weights w), and all zeros for a row
whose target is ignore_index (padding). Then, with lse = logsumexp(x):

    loss_row = sum_c q_c * (lse - x_c) = s * lse - q . x,   s = sum_c q_c
    d loss_row / d x = s * softmax(x) - q

The forward returns lse so the backward can rebuild softmax(x) = exp(x - lse) without another reduction.
It runs unchanged on GPU (CuPy) arrays too: there it is the naive baseline of the CUDA kernels.
"""
import numpy as np

from tinygrad_llm.device import array_module


def _target_weights(targets, class_weight, ignore_index, label_smoothing, num_classes):
    """q as a dense (N, C) array: the readable version of what the fused kernels compute on the fly."""
    n = len(targets)
    keep = targets != ignore_index
    q = array_module(class_weight).zeros((n, num_classes), dtype=np.float64)
    rows = np.flatnonzero(keep)
    q[rows, targets[rows]] = (1 - label_smoothing) * class_weight[targets[rows]]
    q[rows] += label_smoothing / num_classes * class_weight
    return q


def cross_entropy_forward(logits, targets, class_weight, ignore_index=-100, label_smoothing=0.0):
    """(per-row losses (N,), per-row logsumexp (N,)); ignored rows have loss 0."""
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
    q = _target_weights(targets, class_weight, ignore_index, label_smoothing, logits.shape[-1])
    losses = q.sum(axis=-1) * lse - (q * logits).sum(axis=-1)
    return losses.astype(logits.dtype), lse.astype(logits.dtype)


def cross_entropy_backward(logits, lse, targets, class_weight, grad_rows, ignore_index=-100, label_smoothing=0.0):
    """d(sum_i grad_rows[i] * loss_i) / d logits, shape (N, C)."""
    q = _target_weights(targets, class_weight, ignore_index, label_smoothing, logits.shape[-1])
    probs = np.exp(logits - lse[:, None])
    grad = grad_rows[:, None] * (q.sum(axis=-1, keepdims=True) * probs - q)
    return grad.astype(logits.dtype)
