"""Gradient checking: compare backward() with central finite differences.

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h      error O(h^2) from truncation, O(eps/h) from rounding

so the best h is about eps^(1/3): ~1e-5 in float64. In float32 (eps ~ 1e-7) the best achievable
agreement is only ~1e-3, which is why checks run in float64.

A non-scalar output is reduced with fixed random weights v, f -> sum(v * f(x)), which checks the
vector-Jacobian product that backward() computes for every output element at once.
"""
from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the finite-difference one."""


def _scalar_objective(fn, inputs, weights):
    out = fn(*inputs)
    return (out * weights).sum() if weights is not None else out


def numerical_gradient(fn, inputs, index: int, weights=None, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of sum(weights * fn(*inputs)) with respect to inputs[index]."""
    x = inputs[index].data
    grad = np.zeros_like(x, dtype=np.float64)
    with no_grad():
        for i in np.ndindex(x.shape):
            original = x[i]
            x[i] = original + eps
            plus = _scalar_objective(fn, inputs, weights).item()
            x[i] = original - eps
            minus = _scalar_objective(fn, inputs, weights).item()
            x[i] = original
            grad[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, *inputs: Tensor, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Check backward() of `fn(*inputs)` for every input with requires_grad=True.

    Inputs should be float64. Returns True, or raises GradcheckError naming the input, the element, the
    expected (finite-difference) and the received (backward) value.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if not inputs[i].is_leaf:
            raise ValueError(
                f"gradcheck: input {i} was computed by an op, so backward() does not keep its .grad; pass a leaf "
                "tensor instead, e.g. x.detach().requires_grad_()"
            )
        if inputs[i].dtype != np.float64:
            raise ValueError(
                f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 "
                "(float32 rounding error swamps the difference quotient). Use tgl.tensor(x, dtype=np.float64)."
            )
        inputs[i].grad = None
    out = fn(*inputs)
    weights = None
    if out.numel() != 1:
        weights = Tensor(np.random.default_rng(seed).standard_normal(out.shape))
    if out.requires_grad:
        _scalar_objective(fn, inputs, weights).backward()
    for i in checked:
        received = inputs[i].grad if inputs[i].grad is not None else np.zeros(inputs[i].shape)
        expected = numerical_gradient(fn, inputs, i, weights, eps)
        bad = ~np.isclose(received, expected, atol=atol, rtol=rtol)
        if bad.any():
            where = tuple(int(k) for k in np.argwhere(bad)[0])
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {inputs[i].shape}) at index {where}: expected derivative "
                f"{expected[where]:.8g} from central differences, got {received[where]:.8g} from backward() "
                f"({int(bad.sum())} of {bad.size} elements disagree beyond atol={atol}, rtol={rtol})"
            )
    return True
