"""Softmax and log-softmax along one axis, numerically stable.

Subtracting the row maximum first changes nothing mathematically (softmax is shift-invariant) but keeps
exp() from overflowing: the largest exponent becomes exp(0) = 1.

Softmax goes to the active kernel set, which works on the rows of a 2-D array: the chosen axis is moved
last and the other axes flattened into rows.
"""
import numpy as np

from .. import kernels
from ..autograd import Function
from ..device import array_module


def _as_rows(x, axis):
    """(x with `axis` moved last and the rest flattened into rows, the moved shape to undo it)."""
    moved = np.moveaxis(x, axis, -1)
    rows = int(np.prod(moved.shape[:-1]))
    return array_module(moved).ascontiguousarray(moved).reshape(rows, moved.shape[-1]), moved.shape


def _from_rows(rows, moved_shape, axis):
    return np.moveaxis(rows.reshape(moved_shape), -1, axis)


class Softmax(Function):
    """Backward is the Jacobian-vector product y * (g - sum(g * y)): the full (C x C) Jacobian
    diag(y) - y y^T is never built."""

    def forward(self, x, axis=-1):
        self.axis = axis
        rows, self.moved_shape = _as_rows(x, axis)
        self.out_rows = kernels.active(rows).softmax_forward(rows)
        return _from_rows(self.out_rows, self.moved_shape, axis)

    def backward(self, g):
        grad_rows, _ = _as_rows(g, self.axis)
        return _from_rows(kernels.active(self.out_rows).softmax_backward(self.out_rows, grad_rows), self.moved_shape, self.axis)


class LogSoftmax(Function):
    """log softmax(x) = x - logsumexp(x); backward: g - softmax(x) * sum(g)."""

    def forward(self, x, axis=-1):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return self.out

    def backward(self, g):
        return g - np.exp(self.out) * g.sum(axis=self.axis, keepdims=True)
