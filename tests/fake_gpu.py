"""A stand-in for CuPy that runs on the CPU, strict the way CuPy is, so the device plumbing is tested here.

`FakeDeviceArray` is a NumPy array that pretends to live on a GPU. Like a CuPy array, it refuses to be
mixed with host (NumPy) arrays in any NumPy function or ufunc: `np.exp(device_array)` works and stays on
the device, `device_array + np.zeros(3)` raises TypeError. So a code path that builds a host array and
combines it with a tensor's data (the usual way a "works on CPU" library breaks on a GPU) fails in these
tests exactly where it would fail under CuPy; so does `np.asarray(device_array)` (install() makes np.asarray,
np.array, np.ascontiguousarray and np.asanyarray refuse device arrays, as CuPy's do). What it cannot show:
CuPy's own gaps (functions it lacks, indexing rules), speed, and the CUDA kernels themselves, which need a
real GPU (tests/test_cuda_sources.py).

`install(monkeypatch)` puts the fake module in sys.modules["cupy"] and makes the library's "cuda" device
use it. The GPU kernel set becomes the NumPy reference kernels, run directly on the device arrays (as on a
real GPU, where they are the naive baseline of the benchmark): so they too must never make a host array.
"""
import sys
import types

import numpy as np


def _is_host_array(value) -> bool:
    return isinstance(value, np.ndarray) and not isinstance(value, FakeDeviceArray)


def _any_host_array(values) -> bool:
    for value in values:
        if _is_host_array(value):
            return True
        if isinstance(value, (list, tuple)) and _any_host_array(value):
            return True
    return False


def _to_host(value):
    if isinstance(value, FakeDeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    return value


def _to_device(value):
    """Results back on the device; a NumPy scalar becomes a 0-d device array, as CuPy's reductions return."""
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and not isinstance(value, FakeDeviceArray):
        return value.view(FakeDeviceArray)
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    if isinstance(value, list):
        return [_to_device(v) for v in value]
    return value


class FakeDeviceArray(np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if _any_host_array(inputs) or _any_host_array(kwargs.get("out", ())):
            raise TypeError(f"fake GPU: {ufunc.__name__}.{method} mixes device and host (NumPy) arrays: "
                            f"{[type(x).__name__ for x in inputs]}")
        inputs = _to_host(inputs)
        if "out" in kwargs:
            kwargs["out"] = _to_host(kwargs["out"])
        return _to_device(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        if _any_host_array(args) or _any_host_array(kwargs.values()):
            raise TypeError(f"fake GPU: np.{func.__name__} mixes device and host (NumPy) arrays")
        return _to_device(func(*_to_host(args), **{k: _to_host(v) for k, v in kwargs.items()}))

    def get(self):
        """Device -> host copy, as cupy.ndarray.get()."""
        return np.array(self.view(np.ndarray))

    def __getitem__(self, index):
        if _any_host_array(index if isinstance(index, tuple) else (index,)):
            raise TypeError("fake GPU: indexing a device array with a host (NumPy) index array")
        return _to_device(self.view(np.ndarray)[_to_host(index)])

    def __setitem__(self, index, value):
        if _is_host_array(value) and value.ndim > 0:
            raise TypeError("fake GPU: assigning a host (NumPy) array into a device array")
        self.view(np.ndarray)[_to_host(index)] = _to_host(value)


def _asarray(value, dtype=None):
    if isinstance(value, FakeDeviceArray):
        return value if dtype is None else value.astype(dtype)
    return np.array(value, dtype=dtype).view(FakeDeviceArray)


def _device_function(name):
    """cupy.<name>: NumPy's function on device arrays only (CuPy's functions refuse NumPy arrays too)."""
    function = getattr(np, name)
    if isinstance(function, np.ufunc) or not callable(function):
        return function  # ufuncs check their arguments themselves (FakeDeviceArray.__array_ufunc__); dtypes

    def on_device(*args, **kwargs):
        if _any_host_array(args) or _any_host_array(kwargs.values()):
            raise TypeError(f"fake GPU: cupy.{name} was given a host (NumPy) array")
        return _to_device(function(*_to_host(args), **{k: _to_host(v) for k, v in kwargs.items()}))

    return on_device


class _FakeGenerator:
    """cupy.random.default_rng(seed): draws made on the device."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size, dtype=np.float64):
        return self._rng.random(size, dtype=dtype).view(FakeDeviceArray)


def fake_cupy_module() -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.ndarray = FakeDeviceArray
    module.asarray = _asarray  # the host -> device copy: the one function that takes NumPy arrays
    module.array = _asarray
    module.asnumpy = FakeDeviceArray.get  # the device -> host copy
    module.random = types.SimpleNamespace(default_rng=_FakeGenerator)
    module.cuda = types.SimpleNamespace(Device=lambda *_: types.SimpleNamespace(synchronize=lambda: None))
    module.__getattr__ = _device_function
    return module


def _refusing_device_arrays(convert):
    """np.asarray and friends, refusing a device array as CuPy's arrays do (an ndarray subclass would
    otherwise be quietly viewed as a host array)."""
    def strict(value, *args, **kwargs):
        if isinstance(value, FakeDeviceArray):
            raise TypeError(f"fake GPU: np.{convert.__name__} of a device array (implicit device -> host conversion "
                            "is not allowed; use .get() or tinygrad_llm.device.to_device)")
        return convert(value, *args, **kwargs)

    return strict


def install(monkeypatch):
    """Make 'cuda' mean the fake GPU for the rest of the test."""
    from tinygrad_llm import device, kernels
    from tinygrad_llm.kernels import reference

    module = fake_cupy_module()
    for name in ("asarray", "array", "ascontiguousarray", "asanyarray"):
        monkeypatch.setattr(np, name, _refusing_device_arrays(getattr(np, name)))
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(device, "_cuda_status", lambda: (module, None))
    monkeypatch.setattr(kernels, "_gpu_kernels", lambda: reference)
    return module
