"""Deliberately broken quantized kernels, each named after its bug. Each differs from the reference in
kernels/reference/quantized_matmul.py by one line; the checks in test_kernels_quantized.py must catch them."""
import numpy as np

from tinygrad_llm.kernels import reference


def int8_matmul_with_int16_accumulator(a, b):
    """a @ b.T summed in int16: one product of int8 values fits (|-128 * -128| = 16384 < 32767), but
    two of them already do not, and the sum silently wraps around."""
    return (a.astype(np.int16) @ b.astype(np.int16).T).astype(np.int32)  # BUG: int16 wraps; widen to int32


def quantized_matmul_with_nibbles_swapped(x, values, scales, zero_points, bits, group_size):
    """Reads column 2j from the HIGH nibble and 2j + 1 from the low one: every pair of weights trades places."""
    if bits == 4:
        values = (values >> 4) | (values << 4)  # BUG: pack_int4 puts column 2j in the LOW nibble
    return reference.quantized_matmul(x, values, scales, zero_points, bits, group_size)
