"""Deliberately broken pieces of post-training quantization, each named after its bug. Each replaces one function
of tinygrad_llm/compression/quantization.py (BROKEN_PIECES: the attribute it replaces -> the broken version);
test_quantization.py swaps it in and proves its checks catch every one."""
import numpy as np

from tinygrad_llm.compression import quantization


def scales_from_the_mean(slices, bits):
    """scale = mean |w| / qmax: every weight above the mean |w| lands beyond qmax and is clipped."""
    _, qmax = quantization.integer_range(bits, symmetric=True)
    return quantization._nonzero(np.abs(slices).mean(axis=-1, keepdims=True) / qmax)  # BUG: mean, not max


def rounding_by_truncation(x):
    """astype(int) drops the fraction: errors up to a whole step, all pulled towards zero."""
    return x.astype(np.int64)  # BUG: truncation, not rounding to nearest


def pack_int4_nibbles_swapped(values):
    """Element 2j in the HIGH nibble and 2j + 1 in the low one: every pair of weights trades places."""
    nibbles = np.asarray(values).astype(np.uint8) & 0x0F
    return (nibbles[..., 0::2] << 4) | nibbles[..., 1::2]  # BUG: the shift belongs on the odd elements


BROKEN_PIECES = {
    "symmetric_scales": scales_from_the_mean,
    "round_to_nearest": rounding_by_truncation,
    "pack_int4": pack_int4_nibbles_swapped,
}
