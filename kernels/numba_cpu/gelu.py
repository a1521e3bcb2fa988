"""GELU forward and backward in one pass over memory each, compiled with Numba.

The NumPy reference builds 6-8 temporary arrays the size of the input (x*x, u, tanh u, ...): at the
size of a GPT's MLP hidden layer each is a megabyte or more, and allocating, faulting in and re-reading
them costs more than the arithmetic. Here each element is loaded once, everything else lives in
registers, and the result is written once; math.erf and math.tanh compile to native calls, so the exact
curve costs about what the tanh approximation does. Same contract as kernels/reference/gelu.py.
"""
import math

import numba
import numpy as np

from ..reference.gelu import CUBIC, SQRT_2_OVER_PI, _check

INV_SQRT_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


@numba.njit(parallel=True, cache=True)
def _forward(x, out, tanh_curve):
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        if tanh_curve:
            out[i] = 0.5 * v * (1 + math.tanh(SQRT_2_OVER_PI * v * (1 + CUBIC * v * v)))
        else:
            out[i] = 0.5 * v * (1 + math.erf(v * INV_SQRT_2))


@numba.njit(parallel=True, cache=True)
def _backward(x, grad_out, grad_in, tanh_curve):
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        if tanh_curve:
            t = math.tanh(SQRT_2_OVER_PI * v * (1 + CUBIC * v * v))
            slope = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * CUBIC * v * v)
        else:
            slope = 0.5 * (1 + math.erf(v * INV_SQRT_2)) + v * INV_SQRT_2PI * math.exp(-0.5 * v * v)
        grad_in[i] = grad_out[i] * slope


def gelu_forward(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    _check(approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _forward(flat, out, approximate == "tanh")
    return out.reshape(x.shape)


def gelu_backward(x: np.ndarray, grad_out: np.ndarray, approximate: str = "none") -> np.ndarray:
    _check(approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    grad_in = np.empty_like(flat)
    _backward(flat, np.ascontiguousarray(grad_out, dtype=x.dtype).reshape(-1), grad_in, approximate == "tanh")
    return grad_in.reshape(x.shape)
