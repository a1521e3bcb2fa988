"""tinygrad_llm: learn how language models work by building one, from autograd up.

    import tinygrad_llm as tgl
    x = tgl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # array([2., 4., 6.], dtype=float32)
"""
import importlib

from . import data, nn, optim, testing
from .autograd import is_grad_enabled, no_grad
from .creation import arange, full, ones, ones_like, rand, randint, randn, tensor, zeros, zeros_like
from .kernels import get_kernels, set_kernels
from .random import manual_seed
from .tensor import Tensor, cat, split, stack, where

__version__ = "0.1.0"


def __getattr__(name):
    """`tgl.exercises` is imported on first use: its graders pull in hypothesis, which plain training does not need."""
    if name == "exercises":
        return importlib.import_module(".exercises", __name__)
    raise AttributeError(f"module 'tinygrad_llm' has no attribute {name!r}")


__all__ = [
    "Tensor", "tensor", "zeros", "ones", "full", "arange", "randn", "rand", "randint", "zeros_like",
    "ones_like", "cat", "stack", "split", "where", "no_grad", "is_grad_enabled", "manual_seed", "nn",
    "optim", "testing", "data", "exercises", "set_kernels", "get_kernels",
]
