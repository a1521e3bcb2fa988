"""GELU and its derivative, elementwise: the activation of every Transformer MLP.

    exact:  gelu(x) = x * Phi(x),            Phi the standard normal CDF = (1 + erf(x / sqrt 2)) / 2
            gelu'(x) = Phi(x) + x * phi(x),  phi the standard normal density
    tanh:   gelu(x) ~ x * (1 + tanh(u)) / 2,  u = sqrt(2 / pi) * (x + 0.044715 x^3)   (GPT-2's curve)
            gelu'(x) = (1 + tanh u) / 2 + x * (1 - tanh^2 u) / 2 * du/dx,  du/dx = sqrt(2 / pi) (1 + 3 * 0.044715 x^2)

The backward recomputes u from x instead of saving it: one more tanh per element is cheaper than
writing and re-reading a saved array the size of the MLP's hidden layer. NumPy has no erf, so the
exact form goes through math.erf one element at a time here: correct and slow (the compiled kernel is
the fast one).
"""
import math

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
CUBIC = 0.044715

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _check(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu_forward(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    _check(approximate)
    if approximate == "tanh":
        u = SQRT_2_OVER_PI * x * (1 + CUBIC * (x * x))  # x * x * x, never x**3: NumPy's power is ~20x slower
        return (0.5 * x * (1 + np.tanh(u))).astype(x.dtype, copy=False)
    return (x * 0.5 * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype, copy=False)


def gelu_backward(x: np.ndarray, grad_out: np.ndarray, approximate: str = "none") -> np.ndarray:
    _check(approximate)
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * x * (1 + CUBIC * (x * x)))
        du_dx = SQRT_2_OVER_PI * (1 + 3 * CUBIC * (x * x))
        return (grad_out * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx)).astype(x.dtype, copy=False)
    cdf = 0.5 * (1 + _erf(x / math.sqrt(2)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return (grad_out * (cdf + x * pdf)).astype(x.dtype, copy=False)
