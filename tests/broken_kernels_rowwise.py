"""Deliberately broken Numba row-wise kernels, each named after its bug (the kernel-level companions of
broken_variants.py). Each one differs from the correct kernel in kernels/numba_cpu/ by one line; the
checks in test_kernels_rowwise.py must catch every one of them."""
import math

import numpy as np
from numba import njit

from tinygrad_llm.kernels.numba_cpu.fast_math import fast_exp, maxnum


# ------------------------------------------------------------------ softmax without max subtraction
@njit(cache=True, fastmath=True)
def _softmax_without_max_subtraction(x, y):
    for i in range(x.shape[0]):
        s = x.dtype.type(0)
        for j in range(x.shape[1]):
            y[i, j] = math.exp(x[i, j])  # BUG: exp(1e4) overflows (to inf, then inf / inf = nan)
            s += y[i, j]
        for j in range(x.shape[1]):
            y[i, j] /= s


def softmax_without_max_subtraction(x):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _softmax_without_max_subtraction(x, y)
    return y


# ------------------------------------------------------------------ online softmax without rescaling
@njit(cache=True, fastmath=True)
def _online_softmax_without_rescaling(x, y, block):
    n, c = x.shape
    for i in range(n):
        m = x[i, 0]
        s = x.dtype.type(0)
        for start in range(0, c, block):
            tile = x[i, start:start + block]
            m_tile = tile[0]
            for j in range(tile.shape[0]):
                m_tile = maxnum(m_tile, tile[j])
            m_new = maxnum(m, m_tile)
            s_tile = x.dtype.type(0)
            for j in range(tile.shape[0]):
                s_tile += fast_exp(tile[j] - m_new)
            s = s + s_tile  # BUG: the old sum is relative to the old max; it needs * exp(m - m_new)
            m = m_new
        for j in range(c):
            y[i, j] = fast_exp(x[i, j] - m) / s


def online_softmax_without_rescaling(x, block=256):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    if x.shape[1]:
        _online_softmax_without_rescaling(x, y, block)
    return y


# ------------------------------------------------------------------ layer norm with the unbiased variance
@njit(cache=True, fastmath=True)
def _layer_norm_with_unbiased_variance(x, w, b, eps, y, mean, rstd):
    for i in range(x.shape[0]):
        d = x.shape[1]
        m = x[i].sum() / d
        sq = x.dtype.type(0)
        for j in range(d):
            sq += (x[i, j] - m) * (x[i, j] - m)
        r = x.dtype.type(1) / math.sqrt(sq / (d - 1) + eps)  # BUG: LayerNorm divides by D, not D - 1
        for j in range(d):
            y[i, j] = (x[i, j] - m) * r * w[j] + b[j]
        mean[i], rstd[i] = m, r


def layer_norm_with_unbiased_variance(x, weight, bias, eps=1e-5):
    x = np.ascontiguousarray(x)
    y, mean, rstd = np.empty_like(x), np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
    _layer_norm_with_unbiased_variance(x, weight.astype(x.dtype), bias.astype(x.dtype), x.dtype.type(eps), y, mean, rstd)
    return y, mean, rstd
