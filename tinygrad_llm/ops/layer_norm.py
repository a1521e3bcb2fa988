"""Layer normalisation over the last axis, with its scale and shift, fused in one op:

    y = (x - mean) / sqrt(var + eps) * weight + bias

The variance is the *biased* one (divide by n, not n - 1), as in the LayerNorm paper and PyTorch. The
arithmetic is in the active kernel set, on rows of a 2-D array.
"""
import numpy as np

from .. import kernels
from ..autograd import Function


class LayerNorm(Function):
    def forward(self, x, weight, bias, eps=1e-5):
        self.shape = x.shape
        self.x = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
        self.weight = weight
        out, self.mean, self.rstd = kernels.active(self.x).layer_norm_forward(self.x, weight, bias, eps)
        return out.reshape(self.shape)

    def backward(self, g):
        grad_x, grad_weight, grad_bias = kernels.active(self.x).layer_norm_backward(
            g.reshape(self.x.shape), self.x, self.weight, self.mean, self.rstd
        )
        return grad_x.reshape(self.shape), grad_weight, grad_bias
