"""Matrix multiplication, batched, with NumPy's broadcasting of the leading (batch) axes.

For C = A @ B: dA = dC @ B^T and dB = A^T @ dC (transposing the last two axes). A batch axis that was
broadcast (A is (T, K), B is (N, K, M)) gets its gradient summed over the batch.
"""
import numpy as np

from ..autograd import Function, unbroadcast


def _swap_last_two(x):
    return np.swapaxes(x, -1, -2)


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
            out = self.a @ self.b
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions of shapes {a.shape} and {b.shape} do not broadcast"
            ) from None
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
        grad_a = unbroadcast(g @ _swap_last_two(self.b), self.a.shape).reshape(self.a_shape)
        grad_b = unbroadcast(_swap_last_two(self.a) @ g, self.b.shape).reshape(self.b_shape)
        return grad_a, grad_b
