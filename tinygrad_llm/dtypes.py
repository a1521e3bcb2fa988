"""The floating-point dtypes the library trains in: float32, and the two half-precision formats.

    float32    1 sign, 8 exponent, 23 mantissa bits   ~7 digits, up to 3e38
    float16    1 sign, 5 exponent, 10 mantissa bits   ~3 digits, up to 65504, normal down to 6e-5, nothing below 6e-8
    bfloat16   1 sign, 8 exponent,  7 mantissa bits   ~2 digits, float32's whole range (it is float32's top half)

float16 is NumPy's own. bfloat16 comes from the small `ml_dtypes` package (the one JAX uses): a real
storage format with NumPy arithmetic, rather than float32 rounded by hand, so a bfloat16 array takes 2
bytes per number like on a GPU. It is a NumPy *extension* dtype, and np.issubdtype(bfloat16, np.floating)
is False; `is_floating` is the test to use instead.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
HALF_DTYPES = (np.dtype(np.float16), BFLOAT16)


def is_half(dtype) -> bool:
    """float16 or bfloat16: stored in 2 bytes, computed in float32 by the kernels (kernels/half_precision.py)."""
    return np.dtype(dtype) in HALF_DTYPES


def is_floating(dtype) -> bool:
    """A real floating-point dtype, bfloat16 included (NumPy's issubdtype does not know it)."""
    return np.issubdtype(dtype, np.floating) or is_half(dtype)
