"""Layer normalisation over the rows of a 2-D array, compiled with Numba: the contract of
kernels/reference/layer_norm.py (biased variance: divide by D, as in the LayerNorm paper and PyTorch).

forward, per row: mean, then var = mean((x - mean)^2) (two passes: the one-pass E[x^2] - E[x]^2 loses
every digit when |mean| >> std), then y = (x - mean) * rstd * w + b, written once.

backward, per row:  gx = g * w,  x_hat = (x - mean) * rstd,
    dx = rstd * (gx - mean(gx) - x_hat * mean(gx * x_hat))
and over ALL rows:  dw = sum_i g_i * x_hat_i,  db = sum_i g_i.

dw and db are the one place where rows are not independent: every row adds into the same D numbers.
A `prange` over rows that did `dw[j] += ...` directly would be a data race (two threads read the same
dw[j], both add, one write is lost). Instead the rows are cut into a fixed number of chunks; each chunk
(run by one thread) sums into its own row of a (chunks, D) buffer, and those partial sums are added at
the end. The chunk count does not depend on the number of threads, so results are the same on any machine.
"""
import math

import numpy as np
from numba import njit, prange

from .fast_math import parallel_pays

CHUNKS = 16  # row chunks of the backward's dw/db partial sums


@njit(cache=True, fastmath=True)
def _forward_row(x, w, b, eps, y):
    zero = x.dtype.type(0)
    d = x.dtype.type(x.shape[0])
    total = zero
    for j in range(x.shape[0]):
        total += x[j]
    mean = total / d
    sq = zero
    for j in range(x.shape[0]):
        sq += (x[j] - mean) * (x[j] - mean)
    rstd = x.dtype.type(1) / math.sqrt(sq / d + eps)
    for j in range(x.shape[0]):
        y[j] = (x[j] - mean) * rstd * w[j] + b[j]
    return mean, rstd


@njit(cache=True, fastmath=True, parallel=True)
def _forward_parallel(x, w, b, eps, y, mean, rstd):
    for i in prange(x.shape[0]):
        mean[i], rstd[i] = _forward_row(x[i], w, b, eps, y[i])


@njit(cache=True, fastmath=True)
def _forward_serial(x, w, b, eps, y, mean, rstd):
    for i in range(x.shape[0]):
        mean[i], rstd[i] = _forward_row(x[i], w, b, eps, y[i])


@njit(cache=True, fastmath=True)
def _backward_row(g, x, w, mean, rstd, dx, dw, db):
    """dx of one row (1-D views), and the row's terms added into this chunk's own dw, db."""
    zero = x.dtype.type(0)
    d = x.dtype.type(x.shape[0])
    sum_gx = zero
    sum_gx_xhat = zero
    for j in range(x.shape[0]):  # two reductions
        gx = g[j] * w[j]
        sum_gx += gx
        sum_gx_xhat += gx * ((x[j] - mean) * rstd)
    mean_gx = sum_gx / d
    mean_gx_xhat = sum_gx_xhat / d
    for j in range(x.shape[0]):  # element-wise, every j independent: SIMD
        dx[j] = rstd * (g[j] * w[j] - mean_gx - (x[j] - mean) * rstd * mean_gx_xhat)
    for j in range(x.shape[0]):  # a separate loop: one output array per loop keeps LLVM's alias checks simple
        dw[j] += g[j] * ((x[j] - mean) * rstd)
        db[j] += g[j]


@njit(cache=True, fastmath=True)
def _backward_rows(g, x, w, mean, rstd, dx, dw, db, lo, hi):
    """Rows lo..hi-1, summing their dw, db terms into dw, db (this chunk's partial sums)."""
    for i in range(lo, hi):
        _backward_row(g[i], x[i], w, mean[i], rstd[i], dx[i], dw, db)


@njit(cache=True, fastmath=True, parallel=True)
def _backward_parallel(g, x, w, mean, rstd, dx, dw_parts, db_parts):
    n = x.shape[0]
    chunks = dw_parts.shape[0]
    for k in prange(chunks):  # chunk k owns rows [lo, hi) and row k of the partial sums: no sharing
        lo = k * n // chunks
        hi = (k + 1) * n // chunks
        _backward_rows(g, x, w, mean, rstd, dx, dw_parts[k], db_parts[k], lo, hi)


@njit(cache=True, fastmath=True)
def _backward_serial(g, x, w, mean, rstd, dx, dw_parts, db_parts):
    n = x.shape[0]
    chunks = dw_parts.shape[0]
    for k in range(chunks):
        lo = k * n // chunks
        hi = (k + 1) * n // chunks
        _backward_rows(g, x, w, mean, rstd, dx, dw_parts[k], db_parts[k], lo, hi)


def layer_norm_forward(x, weight, bias, eps=1e-5):
    """(y, mean (N,), rstd (N,))."""
    x = np.ascontiguousarray(x)
    if x.ndim != 2:
        raise ValueError(f"layer_norm kernel: expected a 2-D array of rows, got shape {x.shape}")
    n, d = x.shape
    w = np.ascontiguousarray(np.broadcast_to(weight, (d,)), dtype=x.dtype)
    b = np.ascontiguousarray(np.broadcast_to(bias, (d,)), dtype=x.dtype)
    y = np.empty_like(x)
    mean = np.empty(n, dtype=x.dtype)
    rstd = np.empty(n, dtype=x.dtype)
    if n and d:
        kernel = _forward_parallel if parallel_pays(x.size) else _forward_serial
        kernel(x, w, b, x.dtype.type(eps), y, mean, rstd)
    elif n:  # no features: mean and rstd of an empty row, as NumPy gives them
        mean[:], rstd[:] = np.nan, np.nan
    return y, mean, rstd


def layer_norm_backward(g, x, weight, mean, rstd):
    """(dx, dweight, dbias)."""
    x = np.ascontiguousarray(x)
    n, d = x.shape
    g = np.ascontiguousarray(g, dtype=x.dtype).reshape(n, d)
    w = np.ascontiguousarray(np.broadcast_to(weight, (d,)), dtype=x.dtype)
    mean = np.ascontiguousarray(mean, dtype=x.dtype)
    rstd = np.ascontiguousarray(rstd, dtype=x.dtype)
    dx = np.empty_like(x)
    chunks = max(1, min(CHUNKS, n))
    dw_parts = np.zeros((chunks, d), dtype=x.dtype)
    db_parts = np.zeros((chunks, d), dtype=x.dtype)
    if n and d:
        kernel = _backward_parallel if parallel_pays(x.size) else _backward_serial
        kernel(g, x, w, mean, rstd, dx, dw_parts, db_parts)
    return dx, dw_parts.sum(axis=0), db_parts.sum(axis=0)
