"""Reductions: sum, max and log-sum-exp over axes (mean and var are built from sum in tensor.py).

A reduction's backward broadcasts the upstream gradient back over the reduced axes; with
keepdims=False those axes were dropped, so they are re-inserted first.
"""
import numpy as np

from ..autograd import Function
from ..device import array_module


def normalize_axes(axis, ndim):
    """Turn axis=None / int / tuple (negative allowed) into a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
    normalized = sorted(ax % ndim for ax in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"axis {axis} names the same dimension twice")
    return tuple(normalized)


def expand_reduced(g, axes, keepdims):
    """Re-insert reduced axes (size 1) so `g` broadcasts against the input."""
    return g if keepdims else np.expand_dims(g, axes)


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.keepdims = a.shape, keepdims
        self.axes = normalize_axes(axis, a.ndim)
        return array_module(a).asarray(a.sum(axis=self.axes, keepdims=keepdims))  # NumPy gives a scalar: an array

    def backward(self, g):
        return np.broadcast_to(expand_reduced(g, self.axes, self.keepdims), self.shape).copy()


class Max(Function):
    """The gradient goes to the position of the maximum; ties share it equally (as PyTorch's amax does)."""

    def forward(self, a, axis=None, keepdims=False):
        self.axes = normalize_axes(axis, a.ndim)
        if a.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {a.shape}; there is no maximum")
        self.a, self.keepdims = a, keepdims
        self.out = a.max(axis=self.axes, keepdims=True)
        return self.out if keepdims else np.squeeze(self.out, axis=self.axes)

    def backward(self, g):
        is_max = self.a == self.out
        share = is_max / is_max.sum(axis=self.axes, keepdims=True)
        return expand_reduced(g, self.axes, self.keepdims) * share


class LogSumExp(Function):
    """log(sum(exp(a))) computed as m + log(sum(exp(a - m))), m the max, so it never overflows.

    Its gradient is softmax(a): the same shift makes that finite too.
    """

    def forward(self, a, axis=None, keepdims=False):
        self.axes, self.keepdims = normalize_axes(axis, a.ndim), keepdims
        shift = a.max(axis=self.axes, keepdims=True)
        shift = np.where(np.isfinite(shift), shift, 0)
        out = shift + np.log(np.exp(a - shift).sum(axis=self.axes, keepdims=True))
        self.softmax = np.exp(a - out)
        return out if keepdims else np.squeeze(out, axis=self.axes)

    def backward(self, g):
        return expand_reduced(g, self.axes, self.keepdims) * self.softmax
