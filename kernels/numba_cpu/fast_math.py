"""Two building blocks that make row-wise kernels (softmax, cross-entropy) fast in Numba.

Numba hands loops to LLVM, and LLVM turns a loop into SIMD code (16 float32 lanes at once with AVX-512)
only when every operation in it has a vector form. Two everyday operations do not, measured on this
project's machines (shared/PERFORMANCE_NOTES.md, traps 3 and 4):

* `math.exp` / `np.exp` on a scalar becomes a call into the C library, one element at a time: about
  0.3-0.4 G elements/s. `fast_exp` below is the textbook replacement, the one vector math libraries use:

      exp(x) = 2**k * exp(r),   k = round(x / ln 2),   r = x - k ln 2   (so |r| <= ln(2) / 2)

  exp(r) on that small interval is a degree-7 polynomial (Cephes' expf coefficients), and 2**k is made
  directly from bits: k + 127 shifted into the exponent field of a float32. Every step is a multiply, an
  add, a floor, a shift or a bit-cast, all of which have vector forms: about 5 G elements/s here, >10x.

* A running max `m = max(m, x[j])` does not vectorise either: Python's max is a compare and a branch,
  and IEEE rules about NaN and -0.0 stop LLVM from reordering it. LLVM's `maxnum` intrinsic promises the
  reduction can be done in any order, so the loop vectorises: about 13 G/s against 1.9 G/s.

Accuracy of fast_exp, float32 (checked against np.exp in float64 by tests/test_kernels_rowwise.py):
  * relative error below 4e-7 (about 3 ulp; float32 eps is 1.19e-7) for -87.3 <= x <= 88.3;
  * x < -87.3 gives exactly 0: np.exp would give a subnormal below 1.2e-38 there; we flush it to 0.
    Large negative inputs (x - max of -1e4, -1e30 mask values) therefore underflow to 0 cleanly, never NaN;
  * x > 88.3 saturates at exp(88.3) ~ 2e38 instead of overflowing to inf. The kernels only ever pass
    x - max(x) <= 0 or x - logsumexp(x) <= ~0, so this side is never reached;
  * NaN in, anything out: the kernels are compiled with fastmath, which assumes no NaN or inf.
float64 uses the C library's exp (correctly rounded to within 1 ulp): float64 is the dtype of gradient
checks, where accuracy matters more than speed.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# ----------------------------------------------------------------------------- LLVM intrinsics


@intrinsic
def maxnum(typingctx, a, b):
    """max(a, b) through LLVM's `llvm.maxnum`: a max-reduction loop written with it vectorises."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        name = "llvm.maxnum.f32" if ty == ir.FloatType() else "llvm.maxnum.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty]), name)
        return builder.call(fn, args)

    return a(a, b), codegen


if numba.config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1 runs the kernels as Python, where an intrinsic has no body

    def maxnum(a, b):
        return max(a, b)


@intrinsic
def _int_bits_as_float32(typingctx, i):
    """Reinterpret the low 32 bits of an integer as a float32 (a bit-cast, no conversion)."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        bits = args[0]
        if bits.type.width != 32:
            bits = builder.trunc(bits, ir.IntType(32))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(i), codegen


# ----------------------------------------------------------------------------- exp

_LO = np.float32(-87.3)  # exp(-87.3) ~ 1.2e-38, just above float32's smallest normal number
_HI = np.float32(88.3)  # exp(88.3) ~ 2.2e38, just below float32's largest number (3.4e38)


@njit(cache=True, fastmath=True)
def fast_exp_f32(x):
    """exp(x) for a float32 x, as vectorisable arithmetic (accuracy in the module docstring)."""
    xc = min(max(x, _LO), _HI)
    k = np.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5))  # round(x / ln 2)
    # r = x - k ln 2 in two steps (Cody-Waite): ln 2 = 0.693359375 - 2.12194440e-4, where the first
    # part has few mantissa bits, so k * 0.693359375 is exact and the subtraction loses nothing.
    r = xc - k * np.float32(0.693359375)
    r = r + k * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)  # exp(r) ~ 1 + r + r^2 p(r), Horner's rule
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    two_k = _int_bits_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))  # 2**k from its exponent bits
    return p * two_k if x >= _LO else np.float32(0.0)


def fast_exp(x):
    """exp(x): the polynomial above for float32, the C library's exp for float64 (dispatch by type)."""
    return math.exp(x)


@overload(fast_exp, jit_options={"fastmath": True})
def _fast_exp_overload(x):
    if x == types.float32:
        return lambda x: fast_exp_f32(x)
    if x == types.float64:
        return lambda x: math.exp(x)
    return None


@njit(cache=True, fastmath=True)
def _exp_into(x, out):
    for i in range(x.shape[0]):
        out[i] = fast_exp(x[i])


def fast_exp_array(x: np.ndarray) -> np.ndarray:
    """fast_exp applied to every element of a float32 or float64 array (for tests and benchmarks)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _exp_into(x.reshape(-1), out.reshape(-1))
    return out


# ----------------------------------------------------------------------------- when threads pay

# Waking Numba's worker threads costs tens of microseconds per call (measured ~60 us with the workqueue
# layer on this project's 2-core machines), about the time a serial softmax takes for 200k float32. Below
# this many elements the row kernels run a serial copy of the same loop. Tests set it to 0 or to a huge
# value to exercise both paths.
PARALLEL_MIN_ELEMENTS = 1 << 19


def parallel_pays(num_elements: int) -> bool:
    """Whether a row kernel over this many elements should use its parallel (prange) version."""
    return num_elements >= PARALLEL_MIN_ELEMENTS
