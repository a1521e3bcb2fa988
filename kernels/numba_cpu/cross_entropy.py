"""Cross-entropy fused with log-softmax, compiled with Numba: the contract of kernels/reference/cross_entropy.py.

The reference builds the target weights q of every row as a dense (N, C) array. For class-id targets
q has a simple shape, so the fused kernel never builds it: with label smoothing eps, class weights w
and target class t,

    q_c = eps / C * w_c  +  (c == t) * (1 - eps) * w_t        (all zero if t == ignore_index)
    s   = sum_c q_c = (1 - eps) * w_t + eps / C * sum(w)

forward, per row (two passes over the logits, nothing written but two numbers):
    lse  = m + log(sum exp(x - m)),  m = max(x)
    loss = s * lse - q . x = s * lse - (1 - eps) w_t x_t - eps / C * sum_c w_c x_c
backward, per row (one pass, written once):
    dx_c = grad_row * (s * exp(x_c - lse) - q_c)
using the lse saved by the forward, so softmax is rebuilt without another max or sum.
For a vocabulary of 50k classes the dense q of a (B*T, V) batch is as large as the logits themselves:
not building it halves the memory traffic of the loss.
"""
import math

import numpy as np
from numba import njit, prange

from .fast_math import fast_exp, maxnum, parallel_pays


@njit(cache=True, fastmath=True)
def _forward_row(x, t, w, sum_w, ignore_index, eps):
    """(loss, lse) of one row."""
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    c = x.dtype.type(x.shape[0])  # as a float of x's dtype: eps / int64 would promote to float64
    m = x[0]
    for j in range(x.shape[0]):
        m = maxnum(m, x[j])
    total = zero
    for j in range(x.shape[0]):
        total += fast_exp(x[j] - m)
    lse = m + math.log(total)
    if t == ignore_index:
        return zero, lse
    s = (one - eps) * w[t] + eps / c * sum_w
    loss = s * lse - (one - eps) * w[t] * x[t]
    if eps != zero:
        wx = zero
        for j in range(x.shape[0]):
            wx += w[j] * x[j]
        loss -= eps / c * wx
    return loss, lse


@njit(cache=True, fastmath=True)
def _backward_row(x, lse, t, w, sum_w, grad_row, ignore_index, eps, dx):
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    c = x.dtype.type(x.shape[0])
    if t == ignore_index:
        for j in range(x.shape[0]):
            dx[j] = zero  # exactly zero: padding contributes nothing
        return
    a = grad_row * ((one - eps) * w[t] + eps / c * sum_w)  # grad_row * s
    if eps != zero:
        b = grad_row * eps / c
        for j in range(x.shape[0]):
            dx[j] = a * fast_exp(x[j] - lse) - b * w[j]
    else:
        for j in range(x.shape[0]):
            dx[j] = a * fast_exp(x[j] - lse)
    dx[t] -= grad_row * (one - eps) * w[t]


@njit(cache=True, fastmath=True, parallel=True)
def _forward_parallel(logits, targets, w, sum_w, ignore_index, eps, losses, lse):
    for i in prange(logits.shape[0]):
        losses[i], lse[i] = _forward_row(logits[i], targets[i], w, sum_w, ignore_index, eps)


@njit(cache=True, fastmath=True)
def _forward_serial(logits, targets, w, sum_w, ignore_index, eps, losses, lse):
    for i in range(logits.shape[0]):
        losses[i], lse[i] = _forward_row(logits[i], targets[i], w, sum_w, ignore_index, eps)


@njit(cache=True, fastmath=True, parallel=True)
def _backward_parallel(logits, lse, targets, w, sum_w, grad_rows, ignore_index, eps, dx):
    for i in prange(logits.shape[0]):
        _backward_row(logits[i], lse[i], targets[i], w, sum_w, grad_rows[i], ignore_index, eps, dx[i])


@njit(cache=True, fastmath=True)
def _backward_serial(logits, lse, targets, w, sum_w, grad_rows, ignore_index, eps, dx):
    for i in range(logits.shape[0]):
        _backward_row(logits[i], lse[i], targets[i], w, sum_w, grad_rows[i], ignore_index, eps, dx[i])


def _prepare(logits, targets, class_weight, ignore_index, label_smoothing):
    """Contiguous arrays and scalars of fixed types, so each dtype compiles exactly once."""
    logits = np.ascontiguousarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy kernel: expected logits of shape (N, C), got {logits.shape}")
    dtype = logits.dtype.type
    n, c = logits.shape
    if c == 0:
        raise ValueError(f"cross_entropy kernel: logits {logits.shape} have no classes")
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    if targets.shape != (n,):
        raise ValueError(f"cross_entropy kernel: targets must have shape ({n},) for logits {logits.shape}, got {targets.shape}")
    w = np.ones(c, dtype=dtype) if class_weight is None else np.ascontiguousarray(class_weight, dtype=dtype)
    return logits, targets, w, dtype(w.sum(dtype=np.float64)), np.int64(ignore_index), dtype(label_smoothing)


def cross_entropy_forward(logits, targets, class_weight, ignore_index=-100, label_smoothing=0.0):
    """(per-row losses (N,), per-row logsumexp (N,)); ignored rows have loss 0."""
    logits, targets, w, sum_w, ignore_index, eps = _prepare(logits, targets, class_weight, ignore_index, label_smoothing)
    n, c = logits.shape
    losses = np.empty(n, dtype=logits.dtype)
    lse = np.empty(n, dtype=logits.dtype)
    if n:
        kernel = _forward_parallel if parallel_pays(logits.size) else _forward_serial
        kernel(logits, targets, w, sum_w, ignore_index, eps, losses, lse)
    return losses, lse


def cross_entropy_backward(logits, lse, targets, class_weight, grad_rows, ignore_index=-100, label_smoothing=0.0):
    """d(sum_i grad_rows[i] * loss_i) / d logits, shape (N, C)."""
    logits, targets, w, sum_w, ignore_index, eps = _prepare(logits, targets, class_weight, ignore_index, label_smoothing)
    lse = np.ascontiguousarray(lse, dtype=logits.dtype)
    grad_rows = np.ascontiguousarray(np.broadcast_to(grad_rows, (logits.shape[0],)), dtype=logits.dtype)
    dx = np.empty_like(logits)
    if dx.size:
        kernel = _backward_parallel if parallel_pays(logits.size) else _backward_serial
        kernel(logits, lse, targets, w, sum_w, grad_rows, ignore_index, eps, dx)
    return dx
