"""Matrix multiplication, batched, with NumPy's broadcasting of the leading (batch) axes.

For C = A @ B: dA = dC @ B^T and dB = A^T @ dC (transposing the last two axes). A batch axis that was
broadcast (A is (T, K), B is (N, K, M)) gets its gradient summed over the batch.

The multiplications themselves go to the active kernel set, which only knows two shapes: (M, K) @ (K, N)
and a batch of them. The common case of a linear layer, (B, T, K) @ (K, N), becomes ONE (B*T, K) @ (K, N)
product, and its weight gradient one (K, B*T) @ (B*T, N) product.
"""
import numpy as np

from .. import kernels
from ..autograd import Function, unbroadcast


def _swap_last_two(x):
    return np.swapaxes(x, -1, -2)


def batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for operands with at least 2 dimensions and broadcastable batch dimensions, through the kernels."""
    kernel = kernels.active(a).matmul
    if b.ndim == 2:
        rows = int(np.prod(a.shape[:-1]))  # explicit sizes, not -1: a dimension may be 0
        return kernel(a.reshape(rows, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[-1:])
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    count = int(np.prod(batch))
    a3 = np.broadcast_to(a, batch + a.shape[-2:]).reshape((count,) + a.shape[-2:])
    b3 = np.broadcast_to(b, batch + b.shape[-2:]).reshape((count,) + b.shape[-2:])
    return kernel(a3, b3).reshape(batch + (a.shape[-2], b.shape[-1]))


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}; use * to scale")
        # A vector is treated as a 1-row (left) or 1-column (right) matrix, as in NumPy.
        self.a_shape, self.b_shape = a.shape, b.shape
        self.a = a[None, :] if a.ndim == 1 else a
        self.b = b[:, None] if b.ndim == 1 else b
        if self.a.shape[-1] != self.b.shape[-2]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align: the last dimension of the first ({self.a.shape[-1]}) "
                f"must equal the second-to-last of the second ({self.b.shape[-2]}); transpose one operand or check "
                "the layer's in_features"
            )
        try:
            np.broadcast_shapes(self.a.shape[:-2], self.b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of shapes {a.shape} and {b.shape} do not broadcast") from None
        out = batched_matmul(self.a, self.b)
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return out

    def backward(self, g):
        if len(self.a_shape) == 1:
            g = np.expand_dims(g, -2 if len(self.b_shape) > 1 else 0)
        if len(self.b_shape) == 1:
            g = g[..., None]
        grad_a = unbroadcast(batched_matmul(g, _swap_last_two(self.b)), self.a.shape).reshape(self.a_shape)
        if self.b.ndim == 2:  # one big product over every batch row at once
            rows = int(np.prod(self.a.shape[:-1]))
            grad_b = batched_matmul(self.a.reshape(rows, self.a.shape[-1]).T, g.reshape(rows, g.shape[-1]))
        else:
            grad_b = unbroadcast(batched_matmul(_swap_last_two(self.a), g), self.b.shape)
        return grad_a, grad_b.reshape(self.b_shape)
