"""The quantized matrix products with Numba: the contracts of kernels/reference/quantized_matmul.py, fast.

int8_matmul: int8 (M, K) x int8 (N, K) -> int32 (M, N)
    Each output is a dot product of two int8 rows, widened to int32 before the multiply and summed in an
    int32 register. LLVM turns the loop into vpmaddwd (multiply 16-bit pairs, add neighbours into 32 bits),
    16 products per instruction. Integer addition is associative, so this order, the reference's and any
    other give the same int32, bit for bit. A full GEMM (M = N = K = 2048) is compute bound: here it
    competes with a float32 BLAS sgemm, whose hand-written micro-kernel this loop does not have.

quantized_matmul: float32 x (M, K) times a quantized weight W (N, K) -> float32 (M, N), weight-only.
    The decode-time product: M is the batch (1..8 sequences, one new token each), so every weight is used
    M times at most, and the time goes into READING W. A float32 GEMV reads 4 bytes per weight; this kernel
    reads the int8 byte (or half a byte of int4) and turns it into a float in a register, group by group:

        out[m, n] = sum over groups g of  scale[r, g] * sum_{k in g} x[m, k] * (q[n, k] - zero_point[r, g])

    so the float32 W is never written anywhere: the memory traffic is 1 (or 0.5) byte per weight, the
    saving quantization promised. The scale multiplies each group's sum once instead of every weight, and
    the zero point leaves the inner loop too: sum x (q - z) = sum x q - z sum x, where sum x (per row and
    group) is the same for every output channel and is computed once per call. What remains inside is a
    plain dot product of float activations with integers converted in registers.
    The float sums run in another order than the reference's (BLAS on the dequantized W), so the two
    agree within float32 rounding, not bit for bit.

int4: byte j of a row holds column 2j in its low nibble and 2j + 1 in its high nibble
(kernels/reference/int4_packing.py). x is split once per call into its even and odd columns, so both
nibbles of byte j meet contiguous activations (x_even[j], x_odd[j]) and the loop over bytes vectorises.
Each nibble is sign-extended by shifts on an int8: the high nibble is the byte read as int8, shifted right
by 4 (an arithmetic shift copies the sign bit down); the low nibble is first shifted up into those 4 bits.

activations="int16" (W8A16): each row of x is first rounded to int16 (the reference's quantize_activation_rows,
bit for bit), and the inner loop becomes a dot product of int16 activations with int8 (or int4) weights,
summed in int32, which LLVM turns into vpmaddwd: sixteen int16 products, added in pairs into eight int32
lanes, by one instruction, where the float loop needs a sign extension, a conversion and a multiply-add for
every eight weights. On a CPU whose int -> float conversions are slow (AVX2) that is the difference between a
kernel bound by its arithmetic and one bound by memory. The integer sums are exact as long as no int32 sum
outgrows 2**31: int8 sums run over blocks of INT8_BLOCK = 256 columns (256 * 32767 * 128 < 2**31) added into
an int64; an int4 group holds at most INT4_GROUP = 8192 columns, and a longer one (per channel) is cut into
sub-groups that share its scale and zero point. Only the scales are float.
Numba types the product of two int16 values as int64; wrapping the running sum in np.int32(...) says that
only 32 bits are wanted, which is what lets LLVM use vpmaddwd (without it the loop ran in 64-bit lanes, at a
fifth of the speed). The loops index slices from 0, as elsewhere in this file: an index built from an
offset that might be negative makes Numba test for wraparound at every step, which stops the vectoriser.

Threads: output channels (rows of W) are independent, so a `prange` splits them into blocks of
ROWS_PER_TASK; each block is written by one thread only (no shared accumulator, no race). Waking the
threads costs tens of microseconds, so a product smaller than fast_math.parallel_pays's threshold runs the
same loops on one thread.

Numba details: `fastmath={"reassoc", "contract"}` lets LLVM reorder the float sums into vector lanes (and
fuse multiply-adds) without assuming away infinities and NaNs; the float accumulators start at
`np.float32(0)`, since a bare 0.0 is a float64 and would make the loop float64; the inner loops run over
sliced views from 0 (a `range(k0, k1)` loop over a whole row stopped the vectoriser). Numba types the
difference of two int32 values as int64: subtracting the zero point from every weight as an integer, or
decoding nibbles with int32 masks next to it, made LLVM use 64-bit vector lanes, and that int4 loop ran at
about half the speed of the one below (measured in a prototype, single thread). Hence the zero point's
removal from the loop and the int8 shifts.
"""
import numpy as np
from numba import njit, prange

from ..reference.quantized_matmul import INT16_LEVELS, check_int8_operands, check_quantized_operands
from .fast_math import parallel_pays

INT8_BLOCK = 256  # int16 x int8 products summed in int32, then moved to an int64: 256 * 32767 * 128 < 2**31
INT4_GROUP = 8192  # the most int4 columns an int32 sum of int16 x int4 products holds: 8192 * 32767 * 8 < 2**31
ROWS_PER_TASK = 16  # output channels per prange iteration: enough work per task to hide the scheduling
FLOAT_SUMS = {"reassoc", "contract"}


# ------------------------------------------------------------------ int8 x int8 -> int32
@njit(cache=True)
def _int8_rows(a, b, out, first: int, last: int):
    """out[:, first:last] = a @ b[first:last].T, in int32. Each row of a meets all the task's rows of b
    (ROWS_PER_TASK x K bytes, held in the L1/L2 caches) while it is in L1 itself."""
    for m in range(a.shape[0]):
        a_row = a[m]
        for n in range(first, last):
            b_row = b[n]
            total = np.int32(0)
            for k in range(a_row.shape[0]):
                total += np.int32(a_row[k]) * np.int32(b_row[k])  # widen first: -128 * -128 needs 15 bits
            out[m, n] = total


@njit(cache=True, parallel=True)
def _int8_parallel(a, b, out):
    n_rows = b.shape[0]
    for task in prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        _int8_rows(a, b, out, first, min(first + ROWS_PER_TASK, n_rows))


@njit(cache=True)
def _int8_serial(a, b, out):
    _int8_rows(a, b, out, 0, b.shape[0])


def int8_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T for int8 a (M, K) and b (N, K): int32 (M, N), exactly the reference's integers."""
    check_int8_operands(a, b)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    (_int8_parallel if parallel_pays(out.size * a.shape[1]) else _int8_serial)(a, b, out)
    return out


# ------------------------------------------------------------------ float32 x int8 weights, dequantized on the fly
@njit(cache=True, fastmath=FLOAT_SUMS)
def _int8_weight_rows(x, x_sums, values, scales, zero_points, group_size: int, out, first: int, last: int):
    """out[:, first:last] for int8 weights. Each weight row (a few KiB) stays in the L1 cache while the
    activation rows pass over it, so memory sees each weight byte once."""
    for n in range(first, last):
        r = min(n, scales.shape[0] - 1)  # the scale row: 0 per tensor, n per channel or group
        for m in range(x.shape[0]):
            total = np.float32(0)
            for g in range(scales.shape[1]):
                x_group = x[m, g * group_size:(g + 1) * group_size]
                q_group = values[n, g * group_size:(g + 1) * group_size]
                dot = np.float32(0)
                for k in range(group_size):
                    dot += x_group[k] * np.float32(q_group[k])
                total += scales[r, g] * (dot - np.float32(zero_points[r, g]) * x_sums[m, g])
            out[m, n] = total


@njit(cache=True, inline="always")
def _nibbles(byte):
    """The two signed int4 values of a packed byte, as int8: (low nibble, high nibble)."""
    low = np.int8(byte << 4) >> 4  # the low nibble moved up to an int8's sign bit and back:
    high = np.int8(byte) >> 4      # an arithmetic shift copies the sign bit, -8..7 come out
    return low, high


@njit(cache=True, fastmath=FLOAT_SUMS)
def _int4_weight_rows(x_even, x_odd, x_sums, packed, scales, zero_points, group_size: int, out, first: int,
                      last: int):
    """out[:, first:last] for packed int4 weights: byte j meets x_even[j] (low nibble) and x_odd[j] (high)."""
    group_bytes = group_size // 2
    for n in range(first, last):
        r = min(n, scales.shape[0] - 1)
        for m in range(x_even.shape[0]):
            total = np.float32(0)
            for g in range(scales.shape[1]):
                even_group = x_even[m, g * group_bytes:(g + 1) * group_bytes]
                odd_group = x_odd[m, g * group_bytes:(g + 1) * group_bytes]
                byte_group = packed[n, g * group_bytes:(g + 1) * group_bytes]
                dot = np.float32(0)
                for j in range(group_bytes):
                    low, high = _nibbles(byte_group[j])
                    dot += even_group[j] * np.float32(low) + odd_group[j] * np.float32(high)
                total += scales[r, g] * (dot - np.float32(zero_points[r, g]) * x_sums[m, g])
            out[m, n] = total


@njit(cache=True, fastmath=FLOAT_SUMS)
def _group_sums(x, group_size: int):
    """(M, G): the sum of each row of x over each group of columns, the zero point's share of the output
    (sum x (q - z) = sum x q - z sum x). It does not depend on the output channel: computed once per call."""
    n_groups = x.shape[1] // group_size
    sums = np.empty((x.shape[0], n_groups), dtype=np.float32)
    for m in range(x.shape[0]):
        for g in range(n_groups):
            x_group = x[m, g * group_size:(g + 1) * group_size]
            total = np.float32(0)
            for k in range(group_size):
                total += x_group[k]
            sums[m, g] = total
    return sums


@njit(cache=True)
def _even_and_odd_columns(x):
    """x[:, 0::2] and x[:, 1::2] as contiguous arrays: the partners of the low and high nibbles."""
    return np.ascontiguousarray(x[:, 0::2]), np.ascontiguousarray(x[:, 1::2])


@njit(cache=True, parallel=True)
def _int8_weight_parallel(x, values, scales, zero_points, group_size, out):
    x_sums = _group_sums(x, group_size)
    n_rows = values.shape[0]
    for task in prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        _int8_weight_rows(x, x_sums, values, scales, zero_points, group_size, out, first,
                          min(first + ROWS_PER_TASK, n_rows))


@njit(cache=True)
def _int8_weight_serial(x, values, scales, zero_points, group_size, out):
    _int8_weight_rows(x, _group_sums(x, group_size), values, scales, zero_points, group_size, out, 0,
                      values.shape[0])


@njit(cache=True, parallel=True)
def _int4_weight_parallel(x, packed, scales, zero_points, group_size, out):
    x_sums = _group_sums(x, group_size)
    x_even, x_odd = _even_and_odd_columns(x)
    n_rows = packed.shape[0]
    for task in prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        _int4_weight_rows(x_even, x_odd, x_sums, packed, scales, zero_points, group_size, out, first,
                          min(first + ROWS_PER_TASK, n_rows))


@njit(cache=True)
def _int4_weight_serial(x, packed, scales, zero_points, group_size, out):
    x_even, x_odd = _even_and_odd_columns(x)
    _int4_weight_rows(x_even, x_odd, _group_sums(x, group_size), packed, scales, zero_points, group_size, out, 0,
                      packed.shape[0])

# ------------------------------------------------------------------ int16 activations x int8 / int4 weights (W8A16)
@njit(cache=True)
def _activation_rows_int16(x):
    """The reference's quantize_activation_rows, bit for bit: x_q int16 (M, K) and x_scale float32 (M,)."""
    x_q = np.empty(x.shape, dtype=np.int16)
    x_scale = np.empty(x.shape[0], dtype=np.float32)
    for m in range(x.shape[0]):
        peak = np.float32(0)
        for k in range(x.shape[1]):
            peak = max(peak, abs(x[m, k]))
        scale = peak / np.float32(INT16_LEVELS) if peak > 0 else np.float32(1)
        for k in range(x.shape[1]):
            x_q[m, k] = np.int16(np.rint(x[m, k] / scale))
        x_scale[m] = scale
    return x_q, x_scale


@njit(cache=True)
def _integer_sums(x_q, group_size: int):
    """(M, G) int64: each row's sum of x_q over each group, the zero point's share (z sum x_q)."""
    n_groups = x_q.shape[1] // group_size
    sums = np.zeros((x_q.shape[0], n_groups), dtype=np.int64)
    for m in range(x_q.shape[0]):
        for k in range(x_q.shape[1]):
            sums[m, k // group_size] += x_q[m, k]
    return sums


@njit(cache=True)
def _int8_int16_dot(x_part, q_part) -> np.int64:
    """sum x_part[k] q_part[k] for int16 x and int8 q, exactly: int32 sums over blocks of INT8_BLOCK columns,
    added into an int64. The block's constant trip count lets LLVM unroll the vpmaddwd loop four ways."""
    exact = np.int64(0)
    full_blocks = x_part.shape[0] // INT8_BLOCK
    for b in range(full_blocks):
        x_block = x_part[b * INT8_BLOCK:(b + 1) * INT8_BLOCK]
        q_block = q_part[b * INT8_BLOCK:(b + 1) * INT8_BLOCK]
        block = np.int32(0)
        for k in range(INT8_BLOCK):
            block = np.int32(block + np.int16(x_block[k]) * np.int16(q_block[k]))
        exact += block
    x_tail, q_tail = x_part[full_blocks * INT8_BLOCK:], q_part[full_blocks * INT8_BLOCK:]
    block = np.int32(0)
    for k in range(x_tail.shape[0]):
        block = np.int32(block + np.int16(x_tail[k]) * np.int16(q_tail[k]))
    return exact + block


@njit(cache=True, fastmath=FLOAT_SUMS)
def _int8_int16_rows(x_q, x_scale, x_sums, values, scales, zero_points, group_size: int, out, first: int, last: int):
    """out[:, first:last] from int16 activations and int8 weights: each group's exact integer sum, then its
    scale in float32."""
    for n in range(first, last):
        r = min(n, scales.shape[0] - 1)
        q_row = values[n]
        for m in range(x_q.shape[0]):
            x_row = x_q[m]
            total = np.float32(0)
            for g in range(scales.shape[1]):
                columns = slice(g * group_size, (g + 1) * group_size)
                exact = _int8_int16_dot(x_row[columns], q_row[columns])
                total += scales[r, g] * np.float32(exact - zero_points[r, g] * x_sums[m, g])
            out[m, n] = x_scale[m] * total


@njit(cache=True, fastmath=FLOAT_SUMS)
def _int4_int16_rows(x_even, x_odd, x_scale, x_sums, packed, scales, zero_points, group_size: int, out, first: int,
                     last: int):
    """As _int8_int16_rows for packed int4 weights: byte j meets x_even[j] (low nibble) and x_odd[j] (high)."""
    group_bytes = group_size // 2
    for n in range(first, last):
        r = min(n, scales.shape[0] - 1)
        for m in range(x_even.shape[0]):
            total = np.float32(0)
            for g in range(scales.shape[1]):
                even_group = x_even[m, g * group_bytes:(g + 1) * group_bytes]
                odd_group = x_odd[m, g * group_bytes:(g + 1) * group_bytes]
                byte_group = packed[n, g * group_bytes:(g + 1) * group_bytes]
                exact = np.int32(0)
                for j in range(group_bytes):
                    low, high = _nibbles(byte_group[j])
                    exact = np.int32(exact + np.int16(even_group[j]) * np.int16(low)
                                     + np.int16(odd_group[j]) * np.int16(high))
                total += scales[r, g] * np.float32(exact - zero_points[r, g] * x_sums[m, g])
            out[m, n] = x_scale[m] * total


@njit(cache=True, parallel=True)
def _int8_int16_parallel(x, values, scales, zero_points, group_size, out):
    x_q, x_scale = _activation_rows_int16(x)
    x_sums = _integer_sums(x_q, group_size)
    n_rows = values.shape[0]
    for task in prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        _int8_int16_rows(x_q, x_scale, x_sums, values, scales, zero_points, group_size, out, first,
                         min(first + ROWS_PER_TASK, n_rows))


@njit(cache=True)
def _int8_int16_serial(x, values, scales, zero_points, group_size, out):
    x_q, x_scale = _activation_rows_int16(x)
    _int8_int16_rows(x_q, x_scale, _integer_sums(x_q, group_size), values, scales, zero_points, group_size, out, 0,
                     values.shape[0])


@njit(cache=True, parallel=True)
def _int4_int16_parallel(x, packed, scales, zero_points, group_size, out):
    x_q, x_scale = _activation_rows_int16(x)
    x_sums = _integer_sums(x_q, group_size)
    x_even, x_odd = _even_and_odd_columns(x_q)
    n_rows = packed.shape[0]
    for task in prange((n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        first = task * ROWS_PER_TASK
        _int4_int16_rows(x_even, x_odd, x_scale, x_sums, packed, scales, zero_points, group_size, out, first,
                         min(first + ROWS_PER_TASK, n_rows))


@njit(cache=True)
def _int4_int16_serial(x, packed, scales, zero_points, group_size, out):
    x_q, x_scale = _activation_rows_int16(x)
    x_even, x_odd = _even_and_odd_columns(x_q)
    _int4_int16_rows(x_even, x_odd, x_scale, _integer_sums(x_q, group_size), packed, scales, zero_points, group_size,
                     out, 0, packed.shape[0])


KERNELS = {  # (bits, activations, parallel) -> kernel
    (8, "float32", False): _int8_weight_serial, (8, "float32", True): _int8_weight_parallel,
    (4, "float32", False): _int4_weight_serial, (4, "float32", True): _int4_weight_parallel,
    (8, "int16", False): _int8_int16_serial, (8, "int16", True): _int8_int16_parallel,
    (4, "int16", False): _int4_int16_serial, (4, "int16", True): _int4_int16_parallel,
}


def _sub_groups(scales, zero_points, group_size: int):
    """The same int4 weight described with groups of at most INT4_GROUP columns: the largest even divisor of
    group_size that fits, each group's scale and zero point repeated over its sub-groups."""
    size = max(d for d in range(2, INT4_GROUP + 1, 2) if group_size % d == 0)
    repeat = group_size // size
    return (np.ascontiguousarray(np.repeat(scales, repeat, axis=1)),
            np.ascontiguousarray(np.repeat(zero_points, repeat, axis=1)), size)


def quantized_matmul(x: np.ndarray, values: np.ndarray, scales: np.ndarray, zero_points, bits: int,
                     group_size: int, activations: str = "float32") -> np.ndarray:
    """x @ W.T for the quantized weight W (format: kernels/reference/quantized_matmul.py), float32 (M, N),
    reading each stored weight byte once and never building W in float32; activations="int16" rounds each
    row of x to int16 first and sums integers (W8A16, the faster loop)."""
    check_quantized_operands(x, values, scales, zero_points, bits, group_size, activations)
    x, values, scales = np.ascontiguousarray(x), np.ascontiguousarray(values), np.ascontiguousarray(scales)
    # Symmetric weights have zero points of 0: one compiled kernel serves both schemes.
    zero_points = np.zeros(scales.shape, np.int8) if zero_points is None else np.ascontiguousarray(zero_points)
    if activations == "int16" and bits == 4 and group_size > INT4_GROUP:
        scales, zero_points, group_size = _sub_groups(scales, zero_points, group_size)
    out = np.empty((x.shape[0], values.shape[0]), dtype=np.float32)
    kernel = KERNELS[bits, activations, parallel_pays(out.size * x.shape[1])]
    kernel(x, values, scales, zero_points, int(group_size), out)
    return out
