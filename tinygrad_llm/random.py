"""One seeded random generator for the whole library: `tgl.manual_seed(0)` fixes initialisation,
dropout masks, data order and sampling at once, so a run can be repeated exactly."""
import numpy as np

from .device import cupy_module, is_cuda_array

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    """The library's current generator (read it at call time: manual_seed replaces it)."""
    return _generator


def uniform_like(array):
    """Uniform [0, 1) numbers of `array`'s shape, made on its device: on the CPU from the library's generator;
    on a GPU by CuPy's generator seeded from it (so a seed still fixes the run, and a dropout mask is never
    copied from the host). The two devices therefore draw different masks from the same seed."""
    if is_cuda_array(array):
        seed = int(_generator.integers(2**63))
        dtype = np.float64 if array.dtype == np.float64 else np.float32  # generators draw no half precision
        return cupy_module().random.default_rng(seed).random(array.shape, dtype=dtype)
    return _generator.random(array.shape)
