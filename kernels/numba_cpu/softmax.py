"""Softmax over the rows of a 2-D array, compiled with Numba: the same contract as kernels/reference/softmax.py.

forward, three passes over each row, all of them SIMD loops:
    1. m = max(x)                 (maxnum: a max-reduction LLVM can vectorise, see fast_math.py)
    2. y = exp(x - m), s = sum(y) (fast_exp: a vectorisable polynomial exp; y is written once)
    3. y = y * (1 / s)
A row of 1024 float32 is 4 KiB, so passes 2 and 3 re-read it from L1 cache, not memory: per element
the kernel reads x once and writes y once, the least any softmax can move. The NumPy reference makes
four full-size temporaries (shifted, e, the sum, the quotient); that traffic is what the fusion saves.

backward: dx = y * (g - sum(g * y)), two passes per row.

Rows are independent, so the outer loop is a `prange`: Numba splits the rows among threads. Small
inputs run a serial copy of the same loop, because waking the threads costs more than the work.

`online_softmax_forward` is the single-pass ("online") variant that flash attention is built on. It is
here to be read and tested, not used: on a CPU it is slower than the three passes (two exps per
element and a branch, PERFORMANCE_NOTES.md).
"""
import numpy as np
from numba import njit, prange

from .fast_math import fast_exp, maxnum, parallel_pays

@njit(cache=True, fastmath=True)
def _softmax_row(x, y):
    """y = softmax(x) for one row (x, y 1-D, len >= 1)."""
    m = x[0]  # never start a max at -inf: fastmath assumes there are no infinities
    for j in range(x.shape[0]):
        m = maxnum(m, x[j])
    s = x.dtype.type(0)  # typed zero: a bare 0.0 would promote a float32 loop to float64
    for j in range(x.shape[0]):
        e = fast_exp(x[j] - m)
        y[j] = e
        s += e
    inv = x.dtype.type(1) / s  # s >= 1: the max element contributes exp(0) = 1
    for j in range(x.shape[0]):
        y[j] *= inv


@njit(cache=True, fastmath=True, parallel=True)
def _softmax_forward_parallel(x, y):
    for i in prange(x.shape[0]):
        _softmax_row(x[i], y[i])


@njit(cache=True, fastmath=True)
def _softmax_forward_serial(x, y):
    for i in range(x.shape[0]):
        _softmax_row(x[i], y[i])


@njit(cache=True, fastmath=True)
def _softmax_backward_row(y, g, dx):
    dot = y.dtype.type(0)
    for j in range(y.shape[0]):
        dot += g[j] * y[j]
    for j in range(y.shape[0]):
        dx[j] = y[j] * (g[j] - dot)


@njit(cache=True, fastmath=True, parallel=True)
def _softmax_backward_parallel(y, g, dx):
    for i in prange(y.shape[0]):
        _softmax_backward_row(y[i], g[i], dx[i])


@njit(cache=True, fastmath=True)
def _softmax_backward_serial(y, g, dx):
    for i in range(y.shape[0]):
        _softmax_backward_row(y[i], g[i], dx[i])


def _rows(a, dtype=None):
    """A C-contiguous 2-D array (one compiled version per dtype, not one per memory layout)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim != 2:
        raise ValueError(f"softmax kernel: expected a 2-D array of rows, got shape {a.shape}")
    return a


def softmax_forward(x: np.ndarray) -> np.ndarray:
    x = _rows(x)
    y = np.empty_like(x)
    if x.shape[1] == 0:
        return y
    (_softmax_forward_parallel if parallel_pays(x.size) else _softmax_forward_serial)(x, y)
    return y


def softmax_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    y = _rows(y)
    g = _rows(g, y.dtype)
    dx = np.empty_like(y)
    if y.shape[1] == 0:
        return dx
    (_softmax_backward_parallel if parallel_pays(y.size) else _softmax_backward_serial)(y, g, dx)
    return dx


# ----------------------------------------------------------------------------- online (single-pass) softmax


@njit(cache=True, fastmath=True)
def _online_softmax_forward(x, y, block):
    """Tiles of `block` elements; after each tile, (m, s) are the max and sum of exp(x - m) so far."""
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
            # The old sum was taken relative to the old max: exp(x - m) = exp(x - m_new) * exp(m - m_new),
            # so it must be rescaled by exp(m - m_new) (<= 1) before the new tile is added.
            s = s * fast_exp(m - m_new) + s_tile
            m = m_new
        inv = x.dtype.type(1) / s
        for j in range(c):
            y[i, j] = fast_exp(x[i, j] - m) * inv


def online_softmax_forward(x: np.ndarray, block: int = 256) -> np.ndarray:
    """Softmax of each row in one pass over tiles of `block` columns (a running max and rescaled sum),
    then one pass to write the output. Equal to softmax_forward for any block size."""
    if block < 1:
        raise ValueError(f"online_softmax_forward: block must be >= 1, got {block}")
    x = _rows(x)
    y = np.empty_like(x)
    if x.shape[1] == 0:
        return y
    _online_softmax_forward(x, y, block)
    return y
