"""Post-training quantization of one weight matrix: floats -> small integers and a few float scales (Q20).

A Linear weight W (N, K) = (out_features, in_features) is cut into slices, and each slice keeps one float
`scale` (and, if affine, one integer `zero_point`); every weight becomes an integer q with

    W[n, k] ~ scale * (q[n, k] - zero_point)

The slices ("granularity"):
    tensor    the whole matrix shares one scale                         scales (1, 1)
    channel   one scale per output row n                                scales (N, 1)
    group     one scale per row and per run of group_size columns       scales (N, K // group_size)
A finer slice fits its own range, so its step can only shrink: a row's largest |w| is at most the matrix's.
One large weight in a per-tensor matrix makes the step coarse for every other row.

Two schemes:
    symmetric   q in -qmax..qmax (qmax = 2^(bits-1) - 1: 127, or 7 for int4), zero point 0,
                scale = max|w| / qmax. Zero stays exactly zero; one code (-128, -8) is left unused.
    affine      q over the full range -2^(bits-1)..2^(bits-1) - 1 with an integer zero point,
                scale = (hi - lo) / (2^bits - 1) where lo = min(w, 0) and hi = max(w, 0). A lopsided slice
                (all weights positive, say) spends every code on its own range instead of half of them on
                signs it never uses. Zero stays in the range, so it is still stored exactly (as the zero point).

Rounding is to the NEAREST integer (np.rint), so every weight is off by at most scale / 2; truncating
(astype(int)) would double that and bias every weight towards zero. The scale comes from the MAXIMUM
|w|: nothing is clipped, whereas a mean would put the large weights, the ones that matter, out of range.

Storage (the shared format of kernels/reference/quantized_matmul.py): int8 values (N, K), or for int4 two
values per byte, uint8 (N, K // 2), packed by pack_int4; float32 scales; int8 zero points or None.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.reference.int4_packing import pack_int4
from ..kernels.reference.quantized_matmul import dequantize_weight
from ..tensor import Tensor

BITS = (8, 4)
GRANULARITIES = ("tensor", "channel", "group")


@dataclass(frozen=True)
class QuantizedTensor:
    """A quantized (N, K) weight: integers (packed two per byte for int4), scales and zero points."""
    values: np.ndarray              # int8 (N, K), or uint8 (N, K // 2) for int4
    scales: np.ndarray              # float32 (R, K // group_size), R = 1 (per tensor) or N
    zero_points: np.ndarray | None  # None (symmetric) or int8 shaped like scales (affine)
    bits: int
    group_size: int                 # columns per scale: K unless per group
    shape: tuple                    # (N, K) of the float weight

    @property
    def symmetric(self) -> bool:
        return self.zero_points is None

    @property
    def granularity(self) -> str:
        rows, groups = self.scales.shape
        return "group" if groups > 1 else "tensor" if rows == 1 else "channel"

    @property
    def nbytes(self) -> int:
        """Bytes held: the integers, the scales and the zero points (what replaces 4 * N * K float32 bytes)."""
        return int(self.values.nbytes + self.scales.nbytes + (0 if self.symmetric else self.zero_points.nbytes))

    def describe(self) -> str:
        """e.g. 'int4 affine, per group of 64'."""
        where = {"tensor": "per tensor", "channel": "per output channel",
                 "group": f"per group of {self.group_size}"}[self.granularity]
        return f"int{self.bits} {'symmetric' if self.symmetric else 'affine'}, {where}"


def integer_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax): -127..127 / -7..7 symmetric, -128..127 / -8..7 affine."""
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


def weight_slices(w: np.ndarray, granularity: str, group_size: int) -> np.ndarray:
    """A view (R, G, S) of w (N, K): slice (r, g) holds the S weights that share scale (r, g)."""
    n, k = w.shape
    if granularity == "tensor":
        return w.reshape(1, 1, n * k)
    return w.reshape(n, k // group_size, group_size)  # channel: group_size = K, one group per row


def symmetric_scales(slices: np.ndarray, bits: int) -> np.ndarray:
    """max |w| / qmax per slice (R, G, 1): the largest weight lands exactly on +-qmax, nothing is clipped."""
    _, qmax = integer_range(bits, symmetric=True)
    return _nonzero(np.abs(slices).max(axis=-1, keepdims=True) / qmax)


def affine_scales(slices: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(scales, zero points) per slice: [min(w, 0), max(w, 0)] spread over all 2^bits codes, and the integer
    that stands for 0.0 (qmin - lo / scale, rounded, so it lies in the integer range).

    The scale is rounded DOWN to float32: then the range spans at least 2^bits - 1 steps and its two ends get
    the two end codes. Rounded up, it could span a hair less, both ends round inwards, and quantizing the
    dequantized weight again would find a narrower range and other integers."""
    qmin, _ = integer_range(bits, symmetric=False)
    low = np.minimum(slices.min(axis=-1, keepdims=True), 0.0)
    high = np.maximum(slices.max(axis=-1, keepdims=True), 0.0)
    exact = (high - low) / (2 ** bits - 1)
    rounded = exact.astype(np.float32)
    scales = _nonzero(np.where(rounded > exact, np.nextafter(rounded, np.float32(0)), rounded))
    zero_points = qmin - round_to_nearest(low / scales)
    return scales, zero_points


def _nonzero(scales: np.ndarray) -> np.ndarray:
    """float32 scales, with 1 for an all-zero slice (its integers are 0 whatever the scale; 0 would divide by 0)."""
    scales = scales.astype(np.float32)
    return np.where(scales == 0, np.float32(1), scales)


def round_to_nearest(x: np.ndarray) -> np.ndarray:
    """Nearest integer (ties to even): the error of each weight is at most half a step."""
    return np.rint(x)


def quantize_tensor(w, bits: int = 8, symmetric: bool = True, granularity: str = "channel",
                    group_size: int | None = None) -> QuantizedTensor:
    """Quantize a 2-D float weight (N, K); see the module docstring. group_size: only with granularity='group',
    and it must divide K (32, 64 or 128 are the usual choices; even for int4, so a group fills whole bytes)."""
    w = _check_weight(w, bits, granularity, group_size)
    n, k = w.shape
    group_size = group_size if granularity == "group" else k
    slices = weight_slices(w.astype(np.float64), granularity, group_size)
    if symmetric:
        scales, zero_points = symmetric_scales(slices, bits), None
    else:
        scales, zero_points = affine_scales(slices, bits)
    offset = 0 if zero_points is None else zero_points
    integers = np.clip(round_to_nearest(slices / scales) + offset, *integer_range(bits, symmetric))
    values = integers.reshape(n, k).astype(np.int8)
    return QuantizedTensor(
        values=pack_int4(values) if bits == 4 else values,
        scales=scales[..., 0],
        zero_points=None if zero_points is None else zero_points[..., 0].astype(np.int8),
        bits=bits, group_size=group_size, shape=(n, k))


def dequantize(qt: QuantizedTensor) -> np.ndarray:
    """The float32 (N, K) weight the integers stand for: scale * (q - zero point)."""
    return dequantize_weight(qt.values, qt.scales, qt.zero_points, qt.bits, qt.group_size)


def _check_weight(w, bits, granularity, group_size) -> np.ndarray:
    w = w.data if isinstance(w, Tensor) else w  # a Parameter: its array
    if not isinstance(w, np.ndarray) or w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"quantize_tensor: expected a 2-D float array (out_features, in_features), got "
                         f"{type(w).__name__} {getattr(w, 'dtype', '')} of shape {getattr(w, 'shape', '?')}; pass a "
                         "Linear weight (layer.weight) or reshape to 2-D")
    if bits not in BITS:
        raise ValueError(f"quantize_tensor: bits must be 8 or 4, got {bits!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"quantize_tensor: granularity must be one of {GRANULARITIES}, got {granularity!r}")
    n, k = w.shape
    if w.size == 0:
        raise ValueError(f"quantize_tensor: the weight has shape {w.shape}, with nothing to quantize")
    if not np.isfinite(w).all():
        raise ValueError(f"quantize_tensor: the weight holds {int((~np.isfinite(w)).sum())} inf/NaN values; a scale "
                         "cannot be fitted to them; find where training diverged first")
    if bits == 4 and k % 2:
        raise ValueError(f"quantize_tensor: int4 packs two values per byte along K, so K (in_features) must be even; "
                         f"got shape {w.shape}; use bits=8 for this layer or pad K by one zero column")
    if granularity == "group":
        fits = isinstance(group_size, (int, np.integer)) and group_size >= 1 and k % group_size == 0
        if not fits or (bits == 4 and group_size % 2):
            even = " and is even (an int4 group fills whole bytes)" if bits == 4 else ""
            usual = [g for g in (32, 64, 128) if k % g == 0] or "the divisors of K"
            raise ValueError(f"quantize_tensor: granularity='group' needs a group_size that divides K = {k} (weight "
                             f"shape {w.shape}){even}, got {group_size!r}; try one of {usual}")
    elif group_size is not None:
        raise ValueError(f"quantize_tensor: group_size={group_size} only applies to granularity='group' (got "
                         f"granularity={granularity!r}); drop group_size or ask for groups")
    return w
