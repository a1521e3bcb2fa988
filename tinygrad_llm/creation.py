"""Ways to make a tensor, named as in PyTorch: tensor, zeros, ones, full, arange, randn, rand, randint."""
import numpy as np

from .random import generator
from .tensor import DEFAULT_FLOAT, Tensor


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def tensor(data, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape, fill_value, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return Tensor(np.full(shape, fill_value, dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad=False) -> Tensor:
    return Tensor(np.zeros_like(t.data), requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad=False) -> Tensor:
    return Tensor(np.ones_like(t.data), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None) -> Tensor:
    """Integers by default (like range); float if any argument is a float."""
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is None and np.issubdtype(values.dtype, np.floating):
        dtype = DEFAULT_FLOAT
    return Tensor(values, dtype=dtype)


def randn(*shape, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    """Standard normal samples from the library's seeded generator."""
    return Tensor(generator().standard_normal(_shape(shape)).astype(dtype), requires_grad=requires_grad)


def rand(*shape, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return Tensor(generator().random(_shape(shape)).astype(dtype), requires_grad=requires_grad)


def randint(low, high, shape) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return Tensor(generator().integers(low, high, size=shape, dtype=np.int64))
