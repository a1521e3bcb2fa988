"""GELU forward and backward in one pass over memory each, compiled with Numba.

The NumPy reference builds 6-8 temporary arrays the size of the input (x*x, u, tanh u, ...): at the
size of a GPT's MLP hidden layer each is a megabyte or more, and allocating, faulting in and re-reading
them costs more than the arithmetic. Here each element is loaded once, everything else lives in
registers, and the result is written once. Same contract as kernels/reference/gelu.py.

The tanh curve (GPT-2's, the one the Transformer blocks use) computes in the input's dtype with ONE
exponential per element. Since (1 + tanh u) / 2 = sigmoid(2u):

    gelu(x)  = x s,      s = 1 / (1 + e),  e = exp(-2u)
    gelu'(x) = s + x s (1 - s) 2 du/dx,    1 - s = e s    (no cancellation, and no 1 - tanh^2)

For float32 the exponential is fast_exp (fast_math.py), which vectorises. The first version called
math.tanh, a scalar C-library call per element: in a GPT training step it took 4.4 ms per forward call
where NumPy's vectorised np.tanh took 0.95 ms; this one takes 0.33 ms forward and 0.59 ms backward on one
thread for those 393,216 activations. -2u is capped at 80 (e <= 5.5e34, finite in float32), where s is
already below 1e-34. No fastmath here: it would let LLVM regroup x * s * (e * s) into (x * e) * (s * s),
which overflows to inf * 0 = NaN for large |x|; elementwise loops vectorise without it.

The exact curve needs erf, which has no vector form here: math.erf per element, in float64.
"""
import math

import numba
import numpy as np

from ..reference.gelu import CUBIC, SQRT_2_OVER_PI, _check
from .fast_math import fast_exp

INV_SQRT_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


@numba.njit(cache=True, inline="always")
def _sigmoid_2u(u, one, cap):
    """(s, 1 - s) for s = sigmoid(2u) = (1 + tanh u) / 2, from one exponential, in u's dtype."""
    e = fast_exp(min(-(u + u), cap))
    s = one / (one + e)
    return s, e * s


@numba.njit(parallel=True, cache=True)
def _forward_tanh(x, out):
    one, cap = x.dtype.type(1), x.dtype.type(80)
    c, cubic = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(CUBIC)
    for i in numba.prange(x.size):
        v = x[i]
        s, _ = _sigmoid_2u(c * v * (one + cubic * v * v), one, cap)
        out[i] = v * s


@numba.njit(parallel=True, cache=True)
def _backward_tanh(x, grad_out, grad_in):
    one, cap = x.dtype.type(1), x.dtype.type(80)
    c, cubic = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(CUBIC)
    two_c, three_cubic = c + c, cubic + cubic + cubic
    for i in numba.prange(x.size):
        v = x[i]
        s, one_minus_s = _sigmoid_2u(c * v * (one + cubic * v * v), one, cap)
        grad_in[i] = grad_out[i] * (s + v * s * one_minus_s * two_c * (one + three_cubic * v * v))


@numba.njit(parallel=True, cache=True)
def _forward_exact(x, out):
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        out[i] = 0.5 * v * (1 + math.erf(v * INV_SQRT_2))


@numba.njit(parallel=True, cache=True)
def _backward_exact(x, grad_out, grad_in):
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        slope = 0.5 * (1 + math.erf(v * INV_SQRT_2)) + v * INV_SQRT_2PI * math.exp(-0.5 * v * v)
        grad_in[i] = grad_out[i] * slope


def gelu_forward(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    _check(approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    (_forward_tanh if approximate == "tanh" else _forward_exact)(flat, out)
    return out.reshape(x.shape)


def gelu_backward(x: np.ndarray, grad_out: np.ndarray, approximate: str = "none") -> np.ndarray:
    _check(approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    grad_in = np.empty_like(flat)
    (_backward_tanh if approximate == "tanh" else _backward_exact)(
        flat, np.ascontiguousarray(grad_out, dtype=x.dtype).reshape(-1), grad_in)
    return grad_in.reshape(x.shape)
