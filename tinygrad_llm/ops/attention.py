"""Scaled dot-product attention as one op: softmax(Q K^T * scale + mask) V, forward and backward.

One op instead of a chain of matmul, softmax and matmul ops lets the kernel set decide how to compute it:
the reference builds the (T x T) score matrix, the compiled kernels stream over tiles of keys and never
store it, and the backward recomputes the scores from the saved log-sum-exp of each query.
"""
from .. import kernels
from ..autograd import Function


class ScaledDotProductAttention(Function):
    def forward(self, q, k, v, causal=False, padding_mask=None, scale=None):
        self.q, self.k, self.v = q, k, v
        self.options = dict(causal=causal, padding_mask=padding_mask, scale=scale)
        self.out, self.lse = kernels.active(q).attention_forward(q, k, v, **self.options)
        return self.out

    def backward(self, g):
        return kernels.active(self.q).attention_backward(self.q, self.k, self.v, self.out, self.lse, g, **self.options)
