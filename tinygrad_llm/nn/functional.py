"""Stateless neural-network functions (activations, losses, dropout, normalisation), as in torch.nn.functional.

Modules in `tinygrad_llm.nn` hold parameters and call these; a model with several inputs can call
them directly.
"""
from __future__ import annotations

import numpy as np

from ..device import array_module, as_array_on
from ..ops.attention import ScaledDotProductAttention
from ..ops.cross_entropy import CrossEntropy, SoftTargetCrossEntropy
from ..ops.embedding import EmbeddingLookup
from ..ops.layer_norm import LayerNorm
from ..ops.softmax import LogSoftmax, Softmax
from ..random import uniform_like
from ..tensor import Tensor, stack

_REDUCTIONS = ("mean", "sum", "none")


def relu(x: Tensor) -> Tensor:
    return x.relu()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    return x.gelu(approximate=approximate)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis` (each row separately, never over the whole array)."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) computed as x - logsumexp(x): finite even where softmax underflows to 0."""
    return LogSoftmax.apply(x, axis=axis)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, with weight stored (out_features, in_features) as in PyTorch."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the weight expects "
            f"{weight.shape[-1]} (weight shape {weight.shape}, i.e. out_features x in_features)"
        )
    out = x @ weight.transpose(-2, -1)
    return out + bias if bias is not None else out


def _reduce(losses: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_class_targets(target: np.ndarray, num_classes: int, weight, ignore_index: int) -> np.ndarray:
    """Raise a clear error for an out-of-range id or a badly shaped weight; return the class weights."""
    flat = target.reshape(-1)
    bad = np.flatnonzero((flat != ignore_index) & ((flat < 0) | (flat >= num_classes)))
    if bad.size:
        position = [int(i) for i in np.unravel_index(bad[0], target.shape)]
        raise IndexError(
            f"cross_entropy: target{position} = {flat[bad[0]]} is out of range for {num_classes} classes "
            f"(valid ids are 0..{num_classes - 1}, or ignore_index={ignore_index} to skip a position)"
        )
    class_weight = np.ones(num_classes) if weight is None else as_array_on(weight.data if isinstance(weight, Tensor) else weight, "cpu").astype(np.float64)
    if class_weight.shape != (num_classes,):
        hint = (" It has the targets' shape: per-sample weights go in sample_weight=, not weight= (M57)."
                if class_weight.shape == target.shape else "")
        raise ValueError(
            f"cross_entropy: weight must have shape ({num_classes},), one per class, got {class_weight.shape}.{hint}"
        )
    return class_weight


def _check_sample_weight(sample_weight, target_shape: tuple) -> np.ndarray:
    """Per-sample weights: one non-negative number per target position, not all zero."""
    weights = as_array_on(sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight, "cpu")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != target_shape:
        raise ValueError(
            f"cross_entropy: sample_weight must have the targets' shape {target_shape}, one weight per example, got "
            f"{weights.shape}. Weights per class go in weight= instead; the two are not interchangeable (M57)."
        )
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() == 0:
        raise ValueError("cross_entropy: sample_weight must be finite, non-negative and not all zero")
    return weights


def cross_entropy(
    logits: Tensor,
    target,
    weight=None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    sample_weight=None,
) -> Tensor:
    """Cross-entropy between softmax(logits) and the target, with classes on the LAST axis.

    target: integer class ids of shape logits.shape[:-1] (e.g. (B, T) for (B, T, V) logits), or
    probabilities of logits' own shape (each row summing to 1).
    weight: per-class weights; the mean is then sum(w[y] * nll) / sum(w[y]), as in PyTorch.
    ignore_index: positions whose target equals it (padding) add no loss and get zero gradient; if every
    position is ignored the mean is 0.
    sample_weight: one weight per target position (e.g. fairness reweighing); the mean is then
    sum(s * l) / sum(s), with l the (class-weighted) loss of each position, so scaling every s changes nothing.
    Class weights give every example of a class the same weight; per-sample weights need not (M57).
    """
    # Targets are checked on the host (a small copy if they are on the GPU), then handed to the op on logits' device.
    target_array = as_array_on(target.data if isinstance(target, Tensor) else target, "cpu")
    num_classes = logits.shape[-1]
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if np.issubdtype(target_array.dtype, np.integer):
        if target_array.shape != logits.shape[:-1]:
            raise ValueError(
                f"cross_entropy: class-id targets must have shape {logits.shape[:-1]} (logits {logits.shape} minus "
                f"the class axis), got {target_array.shape}"
            )
        class_weight = _check_class_targets(target_array, num_classes, weight, ignore_index)
        flat_target = target_array.reshape(-1).astype(np.int64)
        losses = CrossEntropy.apply(
            logits.reshape(-1, num_classes), targets=as_array_on(flat_target, logits.device),
            class_weight=as_array_on(class_weight.astype(logits.dtype), logits.device),
            ignore_index=ignore_index, label_smoothing=label_smoothing,
        ).reshape(target_array.shape)
        counted = flat_target != ignore_index
        position_weight = np.where(counted, class_weight[np.where(counted, flat_target, 0)], 0.0)
    elif np.issubdtype(target_array.dtype, np.floating) and target_array.shape == logits.shape:
        if (target_array < 0).any() or not np.allclose(target_array.sum(axis=-1), 1, atol=1e-3):
            raise ValueError(
                "cross_entropy: float targets must be probability distributions over the last axis (non-negative, "
                "rows summing to 1); for class labels pass integer ids instead"
            )
        q = (1 - label_smoothing) * target_array + label_smoothing / num_classes
        if weight is not None:
            q = q * as_array_on(weight.data if isinstance(weight, Tensor) else weight, "cpu")
        position_weight = np.ones(target_array.shape[:-1])
        losses = SoftTargetCrossEntropy.apply(logits, Tensor(as_array_on(q.astype(logits.dtype), logits.device)))
    else:
        raise TypeError(
            f"cross_entropy: targets must be integer class ids of shape {logits.shape[:-1]} or probability "
            f"distributions of shape {logits.shape}; got dtype {target_array.dtype} and shape {target_array.shape}. "
            "Random real numbers are not labels."
        )
    position_weight = position_weight.reshape(losses.shape)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, losses.shape)
        losses = losses * Tensor(as_array_on(sample_weight.astype(logits.dtype), logits.device))
        position_weight = position_weight * sample_weight
    normaliser = position_weight.sum()
    if reduction == "mean":
        return losses.sum() / normaliser if normaliser else losses.sum() * 0
    return _reduce(losses, reduction, "cross_entropy")


def binary_cross_entropy_with_logits(logits: Tensor, target, reduction: str = "mean") -> Tensor:
    """BCE of sigmoid(logits) against 0/1 targets, as log(1 + e^z) - z*y = logsumexp([0, z]) - z*y: never log(0).

    (The pieces of max(z, 0) - z*y + log(1 + e^-|z|) have kinks at z = 0 whose subgradients do not add up to
    sigmoid(0) - y; log-sum-exp gives the exact gradient sigmoid(z) - y everywhere.)
    """
    target = target if isinstance(target, Tensor) else Tensor(as_array_on(target, logits.device).astype(logits.dtype))
    zeros = array_module(logits.data).zeros(logits.shape, dtype=logits.dtype)
    softplus = stack([Tensor(zeros), logits], axis=-1).logsumexp(axis=-1)
    losses = softplus - logits * target
    return _reduce(losses, reduction, "binary_cross_entropy_with_logits")


def mse_loss(prediction: Tensor, target, reduction: str = "mean") -> Tensor:
    target = prediction._operand(target)
    if prediction.shape != target.shape:
        raise ValueError(f"mse_loss: prediction {prediction.shape} and target {target.shape} must have the same shape")
    diff = prediction - target
    return _reduce(diff * diff, reduction, "mse_loss")


def huber_loss(prediction: Tensor, target, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """0.5 e^2 for |e| <= delta, delta * (|e| - delta / 2) outside: quadratic near 0, linear (robust) for outliers.

    Outside delta the gradient is delta * sign(e), never 0: a constant there would ignore outliers entirely.
    """
    target = prediction._operand(target)
    if prediction.shape != target.shape:
        raise ValueError(f"huber_loss: prediction {prediction.shape} and target {target.shape} must have the same shape")
    error = (prediction - target).abs()
    quadratic = error.clamp(max=delta)
    return _reduce(0.5 * quadratic * quadratic + delta * (error - quadratic), reduction, "huber_loss")


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p and scale survivors by 1 / (1 - p), so the
    expected value is unchanged and evaluation needs no rescaling (it is the identity)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = uniform_like(x.data) >= p
    return x * Tensor((keep / (1 - p)).astype(x.dtype))


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing `normalized_shape` axes to mean 0 and (biased) variance 1, then scale and shift."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm: input shape {x.shape} does not end with normalized_shape {normalized_shape}")
    features = int(np.prod(normalized_shape))
    xp = array_module(x.data)
    weight = Tensor(xp.ones(normalized_shape, dtype=x.dtype)) if weight is None else weight
    bias = Tensor(xp.zeros(normalized_shape, dtype=x.dtype)) if bias is None else bias
    flat = x.reshape(x.shape[: x.ndim - len(normalized_shape)] + (features,))
    out = LayerNorm.apply(flat, weight.reshape(features), bias.reshape(features), eps=eps)
    return out.reshape(x.shape)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, padding_mask=None, scale=None) -> Tensor:
    """softmax(q k^T * scale) v over keys, for q (B, H, Tq, D) and k, v (B, H, Tk, D).

    causal: query i sees keys up to i + (Tk - Tq) (queries are the last Tq positions).
    padding_mask: (B, Tk) booleans, True where a key is padding (ignored). scale defaults to 1/sqrt(D).
    A query that may see no key at all gets zeros, not NaN.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"scaled_dot_product_attention: q, k, v must be (B, H, T, D), got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[:2] + q.shape[3:] != k.shape[:2] + k.shape[3:]:
        raise ValueError(
            f"scaled_dot_product_attention: q {q.shape}, k {k.shape} and v {v.shape} must share B, H and D, "
            "and k and v the same number of keys"
        )
    if padding_mask is not None:
        padding_mask = np.asarray(padding_mask.data if isinstance(padding_mask, Tensor) else padding_mask, dtype=bool)
        if padding_mask.shape != (k.shape[0], k.shape[2]):
            raise ValueError(f"scaled_dot_product_attention: padding_mask must be (B, Tk) = {(k.shape[0], k.shape[2])}, got {padding_mask.shape}")
    return ScaledDotProductAttention.apply(q, k, v, causal=causal, padding_mask=padding_mask, scale=scale)


def embedding(ids, weight: Tensor) -> Tensor:
    """Rows of `weight` (V, D) picked by integer ids (any shape) -> ids.shape + (D,); the gradient scatter-adds
    back into those rows (in the active kernel set)."""
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be a (num_embeddings, embedding_dim) table, got shape {weight.shape}")
    ids = as_array_on(ids.data if isinstance(ids, Tensor) else ids, weight.device)  # token ids follow the table
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
        bad = ids[(ids < 0) | (ids >= weight.shape[0])][0]
        raise IndexError(f"embedding: id {bad} is out of range for a table of {weight.shape[0]} rows (valid 0..{weight.shape[0] - 1})")
    return EmbeddingLookup.apply(weight, ids=ids)
