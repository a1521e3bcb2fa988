"""Half-precision arrays (float16, bfloat16) through the float32 kernels: stored in 2 bytes, computed in 4.

A GPU's tensor core multiplies half-precision inputs but adds the products up in float32 and rounds only
the result back to half; its softmax, layer-norm, cross-entropy and attention kernels keep their sums,
maxima and log-sum-exps in float32 too. They must: float16 carries about 3 significant digits, so a sum of
a few thousand terms in float16 stops growing once the terms fall below its last digit, and a bfloat16
sum (2 digits) does so sooner.

On a CPU there is no fast half arithmetic at all: NumPy converts every float16 element to float32 and
back inside each operation, and Numba compiles neither float16 nor bfloat16. So this adapter does in
software what the GPU does in hardware, once, for every kernel: it upcasts the half inputs to float32,
runs the float32 kernel, and rounds the result back to the input's dtype. What a kernel hands back only
to its own backward pass (log-sum-exp, mean, 1/std) stays float32, and so do the per-row cross-entropy
losses: the loss is computed and returned in float32 (so is its gradient, until the logits' gradient is
rounded to half on its way into the model).

kernels.active(array) returns this adapter for a half-precision array, wrapped around the kernel set that
array would use anyway (the CPU set, or the GPU set for a CuPy float16 array).
"""
from __future__ import annotations

import functools
import types

import numpy as np

from tinygrad_llm.dtypes import is_half

from . import reference

# Outputs (by position) kept in float32; every other floating output is rounded to the input's half dtype.
FLOAT32_OUTPUTS = {
    "cross_entropy_forward": (0, 1),  # per-row losses, log-sum-exp
    "layer_norm_forward": (1, 2),     # mean, 1/std
    "attention_forward": (1,),        # log-sum-exp of each query's scores
}


def _upcast(value):
    return value.astype(np.float32) if hasattr(value, "dtype") and is_half(value.dtype) else value


def _in_float32(kernel, name: str, dtype: np.dtype):
    keep = FLOAT32_OUTPUTS.get(name, ())

    def round_back(out, position: int):
        """Floating outputs go back to the half dtype; integer ones (int8_matmul's exact int32 sums) stay."""
        return out if position in keep or out.dtype.kind != "f" else out.astype(dtype)

    def run(*args, **kwargs):
        result = kernel(*(_upcast(a) for a in args), **{key: _upcast(v) for key, v in kwargs.items()})
        if isinstance(result, tuple):
            return tuple(round_back(out, i) for i, out in enumerate(result))
        return round_back(result, 0)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"{name} on {dtype} arrays: upcast to float32, run the float32 kernel, round back to {dtype}."
    return run


@functools.lru_cache(maxsize=None)
def in_float32(kernel_set: types.ModuleType, dtype: np.dtype) -> types.SimpleNamespace:
    """`kernel_set` for `dtype` arrays, computing in float32: every kernel the reference set defines."""
    if not is_half(dtype):
        raise TypeError(f"half_precision.in_float32: {dtype} is not a half-precision dtype (float16 or bfloat16)")
    return types.SimpleNamespace(**{name: _in_float32(getattr(kernel_set, name), name, np.dtype(dtype))
                                    for name in reference.__all__})
