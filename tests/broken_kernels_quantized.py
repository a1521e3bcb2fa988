"""Deliberately broken quantized kernels, each named after its bug. Each differs from the reference in
kernels/reference/quantized_matmul.py by one line; the checks in test_kernels_quantized.py must catch them."""
import numpy as np

from tinygrad_llm.kernels import reference
from tinygrad_llm.kernels.reference.int4_packing import unpack_int4
from tinygrad_llm.kernels.reference.quantized_matmul import quantize_activation_rows


def int8_matmul_with_int16_accumulator(a, b):
    """a @ b.T summed in int16: one product of int8 values fits (|-128 * -128| = 16384 < 32767), but
    two of them already do not, and the sum silently wraps around."""
    return (a.astype(np.int16) @ b.astype(np.int16).T).astype(np.int32)  # BUG: int16 wraps; widen to int32


def quantized_matmul_with_nibbles_swapped(x, values, scales, zero_points, bits, group_size, activations="float32"):
    """Reads column 2j from the HIGH nibble and 2j + 1 from the low one: every pair of weights trades places."""
    if bits == 4:
        values = (values >> 4) | (values << 4)  # BUG: pack_int4 puts column 2j in the LOW nibble
    return reference.quantized_matmul(x, values, scales, zero_points, bits, group_size, activations)


def quantized_matmul_with_int16_activations_summed_in_int32(x, values, scales, zero_points, bits, group_size,
                                                           activations="float32"):
    """Sums a whole group of int16 x int8 products in one int32: right until a group's sum passes 2**31
    (4096 products of 32767 * 128 do), where it silently wraps around."""
    if activations != "int16":
        return reference.quantized_matmul(x, values, scales, zero_points, bits, group_size, activations)
    x_q, x_scale = quantize_activation_rows(x)
    q = unpack_int4(values) if bits == 4 else values
    m, k = x_q.shape
    groups = k // group_size
    x_groups = x_q.astype(np.int32).reshape(m, groups, group_size)
    sums = np.einsum("mgk,ngk->mng", x_groups, q.astype(np.int32).reshape(q.shape[0], groups, group_size))  # BUG
    if zero_points is not None:
        sums = sums - x_groups.sum(axis=2)[:, None, :] * zero_points.astype(np.int32)[None, :, :]
    weighted = (sums * scales.astype(np.float64)[None, :, :]).sum(axis=2)
    return (x_scale.astype(np.float64) * weighted).astype(np.float32)
