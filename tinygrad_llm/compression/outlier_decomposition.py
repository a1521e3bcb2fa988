"""W8A8 products and outlier decomposition (the LLM.int8() idea): why a few huge activations break int8.

Weight-only quantization (QuantizedLinear) keeps the activations float. W8A8 quantizes them too, so the
whole product runs on integers and one int32 accumulation per output:

    x ~ sx * qx   (per row of x: one scale per token)       W ~ sw * qw   (per output channel)
    x @ W.T ~ (qx @ qw.T) * sx[:, None] * sw[None, :]        qx @ qw.T exact in int32 (int8_matmul)

Large Transformers grow a few feature dimensions whose activations are 20-100x larger than the rest, in
every token. A scale fitted to those (max |x| / 127) leaves the ordinary features only a handful of integer
levels, or rounds them to 0. Per-row scales do not help: every row holds the outliers. LLM.int8() splits
the product by columns instead: the few columns of x that hold a value above a threshold are multiplied in
float against the matching columns of W, and all the others go through int8:

    x @ W.T = x[:, outliers] @ W[:, outliers].T  (float)  +  x[:, rest] @ W[:, rest].T  (int8, per-row scales)
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from .quantization import quantize_tensor

LLM_INT8_THRESHOLD = 6.0  # the paper's magnitude: ordinary hidden features stay well below it


def w8a8_matmul(x: np.ndarray, w: np.ndarray, activations: str = "row", weights: str = "channel") -> np.ndarray:
    """x (M, K) @ w (N, K).T with both operands symmetric int8 and an exact int32 accumulation, rescaled to float32.

    activations: 'row' (one scale per row of x) or 'tensor' (one for all of x); weights: 'channel' or 'tensor'.
    """
    if activations not in ("row", "tensor") or weights not in ("channel", "tensor"):
        raise ValueError(f"w8a8_matmul: activations must be 'row' or 'tensor' and weights 'channel' or 'tensor', got "
                         f"{activations!r}, {weights!r}")
    # Quantizing x per row is quantizing it per "output channel": each row gets its own max |x| / 127.
    qx = quantize_tensor(x, 8, granularity="channel" if activations == "row" else "tensor")
    qw = quantize_tensor(w, 8, granularity=weights)
    accumulated = kernels.active(qx.values).int8_matmul(qx.values, qw.values)  # int32 (M, N)
    return accumulated.astype(np.float32) * qx.scales * qw.scales.T  # (M, 1 or 1) x (1 or N)


def outlier_columns(x: np.ndarray, threshold: float = LLM_INT8_THRESHOLD) -> np.ndarray:
    """Boolean (K,): the features (columns of x) where some |value| exceeds the threshold."""
    return (np.abs(x) > threshold).any(axis=0)


def decomposed_matmul(x: np.ndarray, w: np.ndarray, threshold: float = LLM_INT8_THRESHOLD) -> np.ndarray:
    """x @ w.T with the outlier columns of x multiplied in float and the rest in W8A8 (per-row, per-channel)."""
    x, w = np.asarray(x, np.float32), np.asarray(w, np.float32)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"decomposed_matmul: expected x (M, K) and w (N, K) with the same K, got {x.shape} and "
                         f"{w.shape}")
    outliers = outlier_columns(x, threshold)
    result = x[:, outliers] @ w[:, outliers].T
    if not outliers.all():
        result += w8a8_matmul(x[:, ~outliers], w[:, ~outliers])
    return result
