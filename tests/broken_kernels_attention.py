"""Deliberately broken attention kernels, each named after its bug (plain NumPy, written to be read).

Each has the contract of kernels/reference/attention.py; tests/test_kernels_attention.py proves that its
checks catch every one of them. `tiled_attention_forward` is the CORRECT NumPy version of the online
softmax the broken tiled one gets wrong: read the two side by side.
"""
import math

import numpy as np

from tinygrad_llm.kernels.reference import attention as reference


def _allowed(tq, tk, causal, padding_mask, batch, diagonal_shift=0):
    """(B, 1, Tq, Tk) booleans; diagonal_shift=1 lets each query see one key too many."""
    allowed = np.ones((batch, 1, tq, tk), dtype=bool)
    if causal:
        allowed &= np.tril(np.ones((tq, tk), dtype=bool), k=tk - tq + diagonal_shift)
    if padding_mask is not None:
        allowed &= ~np.asarray(padding_mask, dtype=bool)[:, None, None, :]
    return allowed


def tiled_attention_forward(q, k, v, causal=False, padding_mask=None, scale=None, block_k=4, rescale=True):
    """Online softmax over tiles of block_k keys (float64 inside). rescale=False is the classic bug."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    B, H, Tq, D = q.shape
    Tk = k.shape[-2]
    allowed = _allowed(Tq, Tk, causal, padding_mask, B)
    m = np.full((B, H, Tq, 1), -np.inf)          # running max
    l = np.zeros((B, H, Tq, 1))                  # running sum of exp(s - m)
    acc = np.zeros((B, H, Tq, D))                # running sum of exp(s - m) v
    for k0 in range(0, Tk, block_k):
        s = (q.astype(np.float64) @ np.swapaxes(k[..., k0:k0 + block_k, :], -1, -2)) * scale
        s = np.where(allowed[..., k0:k0 + block_k], s, -np.inf)
        m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
        safe = np.where(np.isfinite(m_new), m_new, 0)
        p = np.exp(s - safe)
        if rescale:
            alpha = np.exp(np.where(np.isfinite(m), m - safe, -np.inf))
        else:
            alpha = 1.0  # BUG: sums taken against the old max are never rescaled when the max rises
        l = alpha * l + p.sum(axis=-1, keepdims=True)
        acc = alpha * acc + p @ v[..., k0:k0 + block_k, :]
        m = m_new
    seen = l > 0
    out = np.where(seen, acc / np.where(seen, l, 1), 0)
    with np.errstate(divide="ignore"):
        lse = np.where(seen, m + np.log(np.where(seen, l, 1)), -np.inf)[..., 0]
    return out.astype(q.dtype), lse.astype(q.dtype)


def online_softmax_without_rescaling(q, k, v, causal=False, padding_mask=None, scale=None, block_k=4):
    return tiled_attention_forward(q, k, v, causal, padding_mask, scale, block_k, rescale=False)


def attention_without_scaling(q, k, v, causal=False, padding_mask=None, scale=None):
    # BUG: scores are q.k, not q.k / sqrt(d_k): their spread grows with D and the softmax saturates
    return reference.attention_forward(q, k, v, causal, padding_mask, scale=1.0 if scale is None else scale)


def causal_mask_off_by_one(q, k, v, causal=False, padding_mask=None, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    allowed = _allowed(q.shape[-2], k.shape[-2], causal, padding_mask, q.shape[0], diagonal_shift=1)  # BUG: sees key i+1
    scores = np.where(allowed, (q @ np.swapaxes(k, -1, -2)) * scale, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0)
    e = np.exp(scores - row_max)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, (e / np.where(total > 0, total, 1)) @ v, 0)
        lse = np.where(total > 0, row_max + np.log(total), -np.inf)[..., 0]
    return out.astype(q.dtype), lse.astype(q.dtype)


def attention_backward_without_softmax_jacobian(q, k, v, out, lse, grad_out, causal=False, padding_mask=None, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    allowed = _allowed(q.shape[-2], k.shape[-2], causal, padding_mask, q.shape[0])
    scores = np.where(allowed, (q @ np.swapaxes(k, -1, -2)) * scale, -np.inf)
    probs = np.exp(scores - np.where(np.isfinite(lse), lse, np.inf)[..., None])
    grad_v = np.swapaxes(probs, -1, -2) @ grad_out
    grad_scores = probs * (grad_out @ np.swapaxes(v, -1, -2))  # BUG: missing "- rowsum(dO * O)"
    grad_q = grad_scores @ k * scale
    grad_k = np.swapaxes(grad_scores, -1, -2) @ q * scale
    return grad_q.astype(q.dtype), grad_k.astype(q.dtype), grad_v.astype(q.dtype)
