"""Scaled dot-product attention, the naive way: build the full (Tq x Tk) score matrix.

    S = Q K^T * scale        (scale = 1 / sqrt(D) by default: keeps the scores' variance ~1 whatever D)
    S = -inf where a key is not allowed (after the query in causal attention, or padding)
    P = softmax(S) over keys,   O = P V

Shapes: q (B, H, Tq, D), k and v (B, H, Tk, D). `causal`: query i may see key j only if
j <= i + (Tk - Tq) (queries are the LAST Tq positions, as when decoding with a cache). `padding_mask`:
(B, Tk) booleans, True where a key is padding and must be ignored. A query that may see no key at all
gets an output of zeros (not NaN).

The forward also returns lse = logsumexp of each query's scores, so the backward can rebuild P from Q, K
and lse without storing it; with P, for upstream dO:
    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dO * O)),   dQ = dS K * scale,   dK = dS^T Q * scale
The rowsum term is the softmax Jacobian's; it is what makes the backward more than two matmuls.

This version holds B*H*Tq*Tk scores at once: O(T^2) memory. The compiled kernels never do.

Written with NumPy functions that CuPy also answers, it runs unchanged on GPU arrays too: there it is the
naive baseline ("CuPy's own composition") that the CUDA kernels are benchmarked against.
"""
import math

import numpy as np

from tinygrad_llm.device import array_module, as_array_on, device_of


def allowed_keys(tq, tk, causal, padding_mask, batch, like=None):
    """(B, 1, Tq, Tk) booleans: which keys each query may attend to (on the device of `like`, default the CPU)."""
    xp = array_module(like)
    allowed = xp.ones((batch, 1, tq, tk), dtype=bool)
    if causal:
        allowed &= xp.tril(xp.ones((tq, tk), dtype=bool), k=tk - tq)
    if padding_mask is not None:
        allowed &= ~as_array_on(padding_mask, device_of(allowed))[:, None, None, :]
    return allowed


def _masked_scores(q, k, allowed, scale):
    return np.where(allowed, (q @ np.swapaxes(k, -1, -2)) * scale, -np.inf)


def _probabilities(scores, lse):
    """P = exp(S - lse); 0 for disallowed keys and for queries that see no key (lse = -inf)."""
    safe_lse = np.where(np.isfinite(lse), lse, np.inf)[..., None]
    return np.exp(scores - safe_lse)


def _scores_and_lse(q, k, causal, padding_mask, scale):
    """The masked scores S (B, H, Tq, Tk) and each query's logsumexp (-inf where it sees no key)."""
    scores = _masked_scores(q, k, allowed_keys(q.shape[-2], k.shape[-2], causal, padding_mask, q.shape[0], like=q), scale)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0)
    with np.errstate(divide="ignore"):
        lse = (row_max + np.log(np.exp(scores - row_max).sum(axis=-1, keepdims=True)))[..., 0]
    return scores, lse


def attention_probabilities(q, k, causal=False, padding_mask=None, scale=None):
    """P = softmax(S) (B, H, Tq, Tk), materialised: to look at (attention maps), never on the training path."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _probabilities(*_scores_and_lse(q, k, causal, padding_mask, scale))


def attention_forward(q, k, v, causal=False, padding_mask=None, scale=None):
    """(output (B, H, Tq, D), lse (B, H, Tq)); lse is -inf for a query that sees no key."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores, lse = _scores_and_lse(q, k, causal, padding_mask, scale)
    return (_probabilities(scores, lse) @ v).astype(q.dtype), lse.astype(q.dtype)


def attention_backward(q, k, v, out, lse, grad_out, causal=False, padding_mask=None, scale=None):
    """(dq, dk, dv)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = _masked_scores(q, k, allowed_keys(q.shape[-2], k.shape[-2], causal, padding_mask, q.shape[0], like=q), scale)
    probs = _probabilities(scores, lse)
    grad_v = np.swapaxes(probs, -1, -2) @ grad_out
    grad_probs = grad_out @ np.swapaxes(v, -1, -2)
    grad_scores = probs * (grad_probs - (grad_out * out).sum(axis=-1, keepdims=True))
    grad_q = grad_scores @ k * scale
    grad_k = np.swapaxes(grad_scores, -1, -2) @ q * scale
    return grad_q.astype(q.dtype), grad_k.astype(q.dtype), grad_v.astype(q.dtype)
