"""Where a tensor's numbers live: "cpu" (a NumPy array) or "cuda" (a CuPy array on an NVIDIA GPU).

The library has one code path. A tensor's device is simply the type of its array, and the kernels follow
the array: the ops pick the kernel set for the device of their input (`tinygrad_llm.kernels.active`), so a
model moved with `model.to("cuda")` runs CuPy's cuBLAS products and the library's own CUDA kernels with
no other change. CuPy is an optional extra (`pip install -e ".[gpu]"`) and is imported only when "cuda"
is asked for, so a machine without it imports and runs everything on the CPU as before.

Asking for "cuda" where it cannot work raises `DeviceUnavailableError` saying which of the three
requirements is missing: CuPy, a working NVIDIA driver, a visible GPU.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

DEVICES = ("cpu", "cuda")


class DeviceUnavailableError(RuntimeError):
    """The device exists as a name but not on this machine (the message says why)."""


def check_device(device: str) -> str:
    """The canonical device name ('cuda:0' means 'cuda'), or a clear error for an unknown or unavailable one."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    name = "cuda" if device in ("cuda", "cuda:0", "gpu") else device
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: choose 'cpu' or 'cuda'")
    if name == "cuda":
        cupy_module()
    return name


@functools.lru_cache(maxsize=None)
def _cuda_status():
    """(cupy module, None) when CUDA works here, else (None, the reason it does not). Checked once."""
    try:
        import cupy
    except ImportError:
        return None, ("CuPy is not installed. On a machine with an NVIDIA GPU run `pip install -e \".[gpu]\"`; "
                      "without a GPU, leave the device as 'cpu'.")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # cupy's CUDARuntimeError: no driver, or one too old for this CuPy's CUDA
        return None, (f"CuPy is installed but CUDA did not start ({error}). Check that an NVIDIA driver is installed "
                      "(`nvidia-smi`) and is new enough for the CUDA version of the installed cupy-cuda* wheel.")
    if count == 0:
        return None, "CuPy and the NVIDIA driver work, but no GPU is visible. Check `nvidia-smi` and CUDA_VISIBLE_DEVICES."
    return cupy, None


def cuda_is_available() -> bool:
    return _cuda_status()[0] is not None


def cupy_module():
    """The cupy module, or DeviceUnavailableError saying why CUDA cannot be used here."""
    cupy, reason = _cuda_status()
    if cupy is None:
        raise DeviceUnavailableError(f"device 'cuda' is not available: {reason}")
    return cupy


def is_cuda_array(array) -> bool:
    """True for a CuPy array. Never imports CuPy: an array can only be one if CuPy was imported already."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(array, cupy.ndarray)


def device_of(array) -> str:
    return "cuda" if is_cuda_array(array) else "cpu"


def array_module(array):
    """numpy for a CPU array, cupy for a GPU one: `xp = array_module(x); xp.zeros(...)` makes arrays on x's device."""
    return sys.modules["cupy"] if is_cuda_array(array) else np


def to_device(array, device: str):
    """The array on `device`: the same object when it is there already, else a copy there."""
    device = check_device(device)
    if device_of(array) == device:
        return array
    if device == "cuda":
        return cupy_module().asarray(array)
    return array.get()  # cupy -> numpy: one device-to-host copy


def as_array_on(value, device: str):
    """`value` (an array on either device, or Python data such as a list of token ids) as an array on `device`."""
    if not is_cuda_array(value):
        value = np.asarray(value)
    return to_device(value, device)


def take_rows(array, rows):
    """array[rows] for integer row indices held on either device, computed on array's device (beam search
    reorders its caches this way; a GPU array cannot be indexed by a host array)."""
    return array[as_array_on(rows, device_of(array))]
