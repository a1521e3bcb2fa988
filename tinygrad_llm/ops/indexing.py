"""Indexing (a[idx]) and selection (where): ops that route values, so gradients are routed back.

Integer-array indexing may pick the same element twice (an embedding lookup with a repeated token);
its gradient must then be the sum of both contributions, which is what `np.add.at` (scatter-add) does
and plain `grad[idx] += g` does not.
"""
import numpy as np

from ..autograd import Function, unbroadcast
from ..device import array_module, as_array_on, device_of


class Index(Function):
    def forward(self, a, index=None):
        self.input_shape, self.input_dtype = a.shape, a.dtype
        self.index = index = _on_device_of(index, a)
        try:
            return array_module(a).asarray(a[index])
        except IndexError as err:
            raise IndexError(f"indexing a tensor of shape {a.shape} with {_describe(index)}: {err}") from None

    def backward(self, g):
        xp = array_module(g)
        grad = xp.zeros(self.input_shape, dtype=g.dtype)
        if _is_basic(self.index):
            grad[self.index] = g  # slices and integers never pick an element twice: no scatter-add needed
        else:
            xp.add.at(grad, self.index, g)
        return grad


def _on_device_of(index, a):
    """The index with its array parts (integer or boolean arrays) moved to a's device, as a GPU array needs."""
    if device_of(a) == "cpu":
        return index
    parts = index if isinstance(index, tuple) else (index,)
    moved = tuple(as_array_on(p, "cuda") if hasattr(p, "shape") else p for p in parts)
    return moved if isinstance(index, tuple) else moved[0]


def _is_basic(index) -> bool:
    """Only slices, integers, None and Ellipsis: NumPy's basic indexing, a view without repeats."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (slice, int, np.integer, type(None), type(Ellipsis))) and not isinstance(p, bool)
               for p in parts)


def _describe(index):
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(f"array of shape {p.shape}" if hasattr(p, "shape") else repr(p) for p in parts) + "]"


class Where(Function):
    """where(condition, a, b): a where condition holds, else b; each gradient flows only to its side."""

    def forward(self, condition, a, b):
        self.condition = condition.astype(bool)
        self.a_shape, self.b_shape = a.shape, b.shape
        return np.where(self.condition, a, b)

    def backward(self, g):
        zero = array_module(g).zeros((), dtype=g.dtype)
        grad_a = unbroadcast(np.where(self.condition, g, zero), self.a_shape)
        grad_b = unbroadcast(np.where(self.condition, zero, g), self.b_shape)
        return None, grad_a, grad_b
