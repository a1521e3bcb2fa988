"""Matrix products with integer weights: the readable specification of the two quantized kernels.

    int8_matmul(a, b)        int8 (M, K) x int8 (N, K) -> int32 (M, N) = a @ b.T, exactly
    quantized_matmul(x, values, scales, zero_points, bits, group_size, activations="float32")
                             float32 x (M, K) times a quantized weight W (N, K) -> float32 (M, N) = x @ W.T

int8_matmul is what a W8A8 layer runs: both operands are integers, so the product is exact integer
arithmetic, and every kernel set must return the same int32 matrix bit for bit. It must widen before it
multiplies: one product of two int8 values can reach (-128) * (-128) = 16384, which no int8 holds, and a sum
of K of them needs up to log2(K) more bits. int32 holds K * 16384 for every K below 131072.

quantized_matmul is the weight-only case a decoder runs one token at a time: the activations stay float, the
weight is stored as int8 (or int4, two per byte) with a float scale (and an integer zero point, if affine)
per tensor, per output channel or per group of `group_size` input columns:

    W[n, k] = scales[r, k // group_size] * (q[n, k] - zero_points[r, k // group_size]),   r = 0 if R == 1 else n

This version spells that out: it builds the whole float32 W and hands it to BLAS. A fast kernel must never
do so (see kernels/numba_cpu/quantized_matmul.py): building W reads the small integers and then writes and
reads back four bytes per weight, the very traffic quantization was meant to save.

activations="int16" (W8A16) also rounds each row of x to int16 with its own scale, x[m] ~ x_scale[m] * x_q[m]
(quantize_activation_rows), so that the inner loop is integer arithmetic from end to end:

    out[m, n] = x_scale[m] * sum over groups g of  scales[r, g] * (sum_{k in g} x_q[m, k] q[n, k] - z[r, g] sum_{k in g} x_q[m, k])

Why: a CPU converts an int8 into a float32 at a fraction of the rate it can multiply small integers (x86's
vpmaddwd multiplies sixteen int16 pairs and adds neighbours in one instruction), so the float version of the
decode product is bound by conversions, not by memory. The integer sums are exact; x_q adds an error of at
most x_scale[m] / 2 per activation, so |out - x @ W.T| <= x_scale[m] / 2 * sum_k |W[n, k]| (plus float32
rounding), where x_scale[m] = max|x[m]| / 32767: about 1/258 of the step int8 weights already round to.
"""
from __future__ import annotations

import numpy as np

from .int4_packing import unpack_int4

BITS = (8, 4)
MAX_INT8_DOT_LENGTH = (2**31 - 1) // 128**2  # the longest int8 dot product an int32 sum always holds: 131071
ACTIVATIONS = ("float32", "int16")
INT16_LEVELS = 32767  # symmetric int16: -32767..32767, so that negating a value never overflows


def check_int8_operands(a, b) -> None:
    """Raise a ValueError naming the problem unless a is int8 (M, K) and b is int8 (N, K)."""
    for name, operand in (("a", a), ("b", b)):
        if operand.dtype != np.int8 or operand.ndim != 2:
            raise ValueError(f"int8_matmul: {name} must be a 2-D int8 array, got {operand.dtype} of shape "
                             f"{operand.shape}; quantize float inputs first (round, clip to -128..127, astype(int8))")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"int8_matmul: a is (M, K) = {a.shape} and b is (N, K) = {b.shape}; their K must agree "
                         "(b holds one row per output, like a Linear weight: pass W, not W.T)")
    if a.shape[1] > MAX_INT8_DOT_LENGTH:
        raise ValueError(f"int8_matmul: K = {a.shape[1]} products of up to 128 * 128 could overflow the int32 sum "
                         f"(K must be at most {MAX_INT8_DOT_LENGTH}); split K and add the int32 (or int64) parts")


def check_quantized_operands(x, values, scales, zero_points, bits: int, group_size: int,
                             activations: str = "float32") -> None:
    """Raise a ValueError naming the argument unless the arguments follow the quantized weight format
    (x float32 (M, K); values int8 (N, K) or packed uint8 (N, K // 2); scales float32 (R, K // group_size)
    with R = 1 or N; zero_points None or int8 shaped like scales)."""
    if x.dtype != np.float32 or x.ndim != 2:
        raise ValueError(f"quantized_matmul: x must be a 2-D float32 array (M, K), got {x.dtype} of shape {x.shape}; "
                         "reshape the input to rows and cast it with astype(np.float32)")
    if bits not in BITS:
        raise ValueError(f"quantized_matmul: bits must be 8 or 4, got {bits!r}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"quantized_matmul: activations must be 'float32' (x used as it is) or 'int16' (each row of "
                         f"x rounded to int16 with its own scale, W8A16), got {activations!r}")
    k = x.shape[1]
    storage, per_byte = (np.int8, 1) if bits == 8 else (np.uint8, 2)
    if values.dtype != storage or values.ndim != 2 or values.shape[1] * per_byte != k:
        packing = "" if bits == 8 else " (two int4 values packed per byte by pack_int4)"
        raise ValueError(f"quantized_matmul: for bits={bits} and x of shape {x.shape}, values must be "
                         f"{np.dtype(storage)} of shape (N, {k // per_byte}){packing}, got {values.dtype} of shape "
                         f"{values.shape}")
    if not isinstance(group_size, (int, np.integer)) or group_size < 1 or k % group_size or group_size % per_byte:
        even = " and even (an int4 group holds whole bytes)" if bits == 4 else ""
        raise ValueError(f"quantized_matmul: group_size must be a positive divisor of K = {k}{even}, got "
                         f"{group_size!r}; use K for per-tensor or per-channel scales")
    n = values.shape[0]
    groups = k // group_size
    if scales.dtype != np.float32 or scales.ndim != 2 or scales.shape[0] not in (1, n) or scales.shape[1] != groups:
        raise ValueError(f"quantized_matmul: scales must be float32 of shape (1, {groups}) (per tensor) or "
                         f"({n}, {groups}) (per output channel), got {scales.dtype} of shape {scales.shape}")
    if zero_points is not None and (zero_points.dtype != np.int8 or zero_points.shape != scales.shape):
        raise ValueError(f"quantized_matmul: zero_points must be None (symmetric) or int8 shaped like scales "
                         f"{scales.shape}, got {zero_points.dtype} of shape {zero_points.shape}")


def int8_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T in int32, exactly: widen to int32 first, then multiply and add (integers have no rounding)."""
    check_int8_operands(a, b)
    return a.astype(np.int32) @ b.astype(np.int32).T


def dequantize_weight(values: np.ndarray, scales: np.ndarray, zero_points, bits: int, group_size: int) -> np.ndarray:
    """The float32 weight (N, K) that the integers stand for: scale * (q - zero point), group by group."""
    q = unpack_int4(values) if bits == 4 else values
    # One (scale, zero point) per group of columns: repeat each group's entry along K, then broadcast over rows.
    scale_per_column = np.repeat(scales, group_size, axis=1)
    centred = q.astype(np.float32)
    if zero_points is not None:
        centred = centred - np.repeat(zero_points, group_size, axis=1).astype(np.float32)
    return scale_per_column * centred


def quantize_activation_rows(x):
    """(x_q, x_scale): x_q int16 (M, K) and x_scale float32 (M, 1) with x ~ x_scale * x_q, one scale per row
    (a row is one token's activations; its largest |value| maps to 32767). An all-zero row gets scale 1.
    Every kernel set must round exactly like this (float32 division, round half to even), so that their
    integer sums agree bit for bit."""
    peak = abs(x).max(axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1), np.float32)
    x_scale = np.where(peak > 0, peak / np.float32(INT16_LEVELS), np.float32(1)).astype(np.float32)
    return np.rint(x / x_scale).astype(np.int16), x_scale


def _integer_group_sums(x_q, q, zero_points, group_size: int):
    """(M, N, G) int64: sum over each group of x_q[m, k] (q[n, k] - zero_points[r, g]), exactly."""
    m, k = x_q.shape
    groups = k // group_size
    x_groups = x_q.astype(np.int64).reshape(m, groups, group_size).transpose(1, 0, 2)  # (G, M, group)
    q_groups = q.astype(np.int64).reshape(q.shape[0], groups, group_size).transpose(1, 2, 0)  # (G, group, N)
    sums = (x_groups @ q_groups).transpose(1, 2, 0)  # (M, N, G)
    if zero_points is not None:
        sums = sums - x_groups.sum(axis=2).T[:, None, :] * zero_points.astype(np.int64)[None, :, :]
    return sums


def quantized_matmul(x: np.ndarray, values: np.ndarray, scales: np.ndarray, zero_points, bits: int,
                     group_size: int, activations: str = "float32") -> np.ndarray:
    """x @ W.T for the quantized weight W. float32 activations: build W in float32 and call BLAS. int16
    activations: round x row by row, sum the integers exactly in int64, then apply the scales in float64."""
    check_quantized_operands(x, values, scales, zero_points, bits, group_size, activations)
    if activations == "float32":
        return x @ dequantize_weight(values, scales, zero_points, bits, group_size).T
    x_q, x_scale = quantize_activation_rows(x)
    q = unpack_int4(values) if bits == 4 else values
    sums = _integer_group_sums(x_q, q, zero_points, group_size)
    per_channel = (sums * scales.astype(np.float64)[None, :, :]).sum(axis=2)  # scales broadcast over N if R == 1
    return (x_scale.astype(np.float64) * per_channel).astype(np.float32)

