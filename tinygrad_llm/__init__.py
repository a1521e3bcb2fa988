"""tinygrad_llm: learn how language models work by building one, from autograd up.

    import tinygrad_llm as tgl
    x = tgl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # array([2., 4., 6.], dtype=float32)
"""
import importlib

from . import thread_pools  # first: it sets OpenBLAS up before numpy is imported
from . import data, nn, optim, testing
from .autograd import is_grad_enabled, no_grad
from .creation import arange, full, ones, ones_like, rand, randint, randn, tensor, zeros, zeros_like
from .kernels import get_kernels, set_kernels
from .random import manual_seed
from .tensor import Tensor, cat, split, stack, where

__version__ = "0.1.0"


LAZY_SUBPACKAGES = ("exercises", "experiments", "generation", "metrics", "training", "benchmarks")


def __getattr__(name):
    """Subpackages a plain model does not need (`tgl.metrics`, `tgl.generation`, ...) are imported on first use:
    `tgl.exercises` pulls in hypothesis, the training loop tqdm and matplotlib."""
    if name in LAZY_SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tinygrad_llm' has no attribute {name!r}")


__all__ = [
    "Tensor", "tensor", "zeros", "ones", "full", "arange", "randn", "rand", "randint", "zeros_like",
    "ones_like", "cat", "stack", "split", "where", "no_grad", "is_grad_enabled", "manual_seed", "nn",
    "optim", "testing", "data", "exercises", "experiments", "generation", "metrics", "training", "benchmarks",
    "set_kernels", "get_kernels",
]
