"""Layer normalisation over the trailing axes: (x - mean) / sqrt(var + eps).

The variance is the *biased* one (divide by n, not n - 1), as in the LayerNorm paper and PyTorch. The
learnable scale and shift are applied outside, with ordinary broadcasting ops.
"""
import numpy as np

from ..autograd import Function


class LayerNormalize(Function):
    """Backward of x_hat = (x - mu) / sigma, with mu and sigma depending on x too:
    dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma."""

    def forward(self, x, num_axes=1, eps=1e-5):
        self.axes = tuple(range(x.ndim - num_axes, x.ndim))
        mean = x.mean(axis=self.axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=self.axes, keepdims=True)
        self.inv_std = 1 / np.sqrt(var + eps)
        self.x_hat = (x - mean) * self.inv_std
        return self.x_hat

    def backward(self, g):
        x_hat, axes = self.x_hat, self.axes
        return self.inv_std * (g - g.mean(axis=axes, keepdims=True) - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))
