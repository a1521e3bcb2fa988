"""int4 storage: two 4-bit integers in one byte, so an int4 weight takes half the memory of int8.

Values are signed, -8..7, and a nibble holds them in two's complement (the low 4 bits of the int8).
Element 2j of a row goes into the LOW nibble of byte j and element 2j + 1 into the HIGH nibble:

    values  [ 3, -2,  7, -8 ]          nibbles 0x3, 0xE, 0x7, 0x8
    packed  [ 0xE3, 0x87 ]             byte j = high << 4 | low

Unpacking reads the two nibbles back and sign-extends them: a nibble >= 8 stands for nibble - 16.
"""
from __future__ import annotations

import numpy as np

INT4_MIN, INT4_MAX = -8, 7


def pack_int4(values: np.ndarray) -> np.ndarray:
    """int values in -8..7 with an even last axis (..., K) -> uint8 (..., K // 2)."""
    values = np.asarray(values)
    if values.shape[-1:] == () or values.shape[-1] % 2:
        raise ValueError(f"pack_int4: the last axis must have an even length (two values per byte), got shape "
                         f"{values.shape}; pad the row with a zero first")
    if values.size and (values.min() < INT4_MIN or values.max() > INT4_MAX):
        raise ValueError(f"pack_int4: values must lie in {INT4_MIN}..{INT4_MAX}, got {values.min()}..{values.max()}; "
                         "quantize (round and clip) before packing")
    nibbles = values.astype(np.uint8) & 0x0F
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """uint8 (..., K // 2) -> int8 (..., K) in -8..7: the inverse of pack_int4. An array stays where it is
    (a GPU array is unpacked on the GPU: the quantized kernels of kernels/cupy_gpu.py call this)."""
    packed = packed if hasattr(packed, "dtype") else np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"unpack_int4: expected the uint8 bytes pack_int4 returns, got dtype {packed.dtype}")
    nibbles = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1).astype(np.int8)
    return np.where(nibbles > INT4_MAX, nibbles - 16, nibbles).astype(np.int8)
