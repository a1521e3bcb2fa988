"""Softmax and log-softmax along one axis, numerically stable.

Subtracting the row maximum first changes nothing mathematically (softmax is shift-invariant) but keeps
exp() from overflowing: the largest exponent becomes exp(0) = 1.
"""
import numpy as np

from ..autograd import Function


def stable_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


class Softmax(Function):
    """Backward is the Jacobian-vector product y * (g - sum(g * y)): the full (C x C) Jacobian
    diag(y) - y y^T is never built."""

    def forward(self, x, axis=-1):
        self.axis = axis
        self.out = stable_softmax(x, axis)
        return self.out

    def backward(self, g):
        y = self.out
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """log softmax(x) = x - logsumexp(x); backward: g - softmax(x) * sum(g)."""

    def forward(self, x, axis=-1):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return self.out

    def backward(self, g):
        return g - np.exp(self.out) * g.sum(axis=self.axis, keepdims=True)
