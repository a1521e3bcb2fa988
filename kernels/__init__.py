"""The hot path: matmul, softmax, cross-entropy, layer norm and attention, as interchangeable kernel sets.

    reference   plain NumPy (kernels/reference/): the readable specification
    numba       JIT-compiled with Numba (kernels/numba_cpu/): the same results, faster on CPU
    cupy        CuPy on an NVIDIA GPU (kernels/cupy_gpu.py, CUDA sources in kernels/cuda/)

The library's ops call `active(x)` with their input array and never name a kernel set. For an array on
the CPU that is the chosen CPU set, so switching is one call, `tgl.set_kernels("reference")`, or the
environment variable TGL_KERNELS, and changes no model code. For an array on the GPU (a CuPy array) it is
the cupy set: the kernels follow the data, so `model.to("cuda")` is all a model needs. A half-precision
array (float16, bfloat16) gets the same set through one adapter that computes in float32
(kernels/half_precision.py), so no kernel needs a half-precision twin.
"""
from __future__ import annotations

import functools
import importlib
import os

from tinygrad_llm.device import is_cuda_array
from tinygrad_llm.dtypes import is_half

from . import half_precision

KERNEL_SETS = {"reference": ".reference", "numba": ".numba_cpu"}
DEFAULT = "numba"

_active_name = None
_active_module = None


def set_kernels(name: str):
    """Choose the kernel set every op uses from now on; returns the kernel module."""
    global _active_name, _active_module
    if name not in KERNEL_SETS:
        raise ValueError(f"set_kernels: unknown kernel set {name!r}; choose one of {sorted(KERNEL_SETS)}")
    _active_module = importlib.import_module(KERNEL_SETS[name], __name__)
    _active_name = name
    return _active_module


def get_kernels() -> str:
    """The name of the active kernel set."""
    active()
    return _active_name


def active(array=None):
    """The kernel module for `array`: the cupy set for a GPU array, else the active CPU set (chosen on first
    use from TGL_KERNELS, else the default). For a float16 or bfloat16 array, that set computing in float32
    and rounding its results back (kernels/half_precision.py: what a GPU's tensor cores do)."""
    if array is not None and is_cuda_array(array):
        kernel_set = _gpu_kernels()
    else:
        if _active_module is None:
            set_kernels(os.environ.get("TGL_KERNELS", DEFAULT))
        kernel_set = _active_module
    if array is not None and is_half(array.dtype):
        return half_precision.in_float32(kernel_set, array.dtype)
    return kernel_set


@functools.lru_cache(maxsize=None)
def _gpu_kernels():
    return importlib.import_module(".cupy_gpu", __name__)
