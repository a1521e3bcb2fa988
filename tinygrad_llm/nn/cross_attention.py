"""Cross-attention: how a decoder reads the encoder (Q14-Q15).

    queries from the decoder      q = W_q x              x (B, T, d): one per target position
    keys, values from the encoder k = W_k m, v = W_v m   m (B, S, d): one per SOURCE token
    out = softmax(q k^T / sqrt(D) + padding mask) v      (B, T, d)

Self-attention mixes a sequence with itself; cross-attention lets each target position pick the source
tokens it needs (when reversing, output t looks at source S - 1 - t; the attention map is an anti-diagonal).

Two masks differ from self-attention:
- no causal mask: the whole source is known before decoding starts, so every target position may read
  every source token (a causal mask here would hide the end of the source from the first outputs);
- a padding mask over the KEYS (source pads), never over the queries: a padded source token must get
  zero weight from every query, while every query row still has real keys to attend to.

The keys and values depend on the encoder output only, not on the target, so incremental decoding
computes them ONCE per source (`project_memory`) and reuses them at every step.
"""
from __future__ import annotations

import numpy as np

from .attention import MultiHeadAttention
from ..kernels.reference.attention import attention_probabilities
from ..tensor import Tensor


class CrossAttention(MultiHeadAttention):
    """Multi-head attention whose queries come from `x` and whose keys and values come from the encoder.

    The fused attention kernel never stores the probabilities; with `record_weights` on, forward also
    computes them with the NumPy reference into `last_weights` (B, H, T, S), for plotting what each output reads.
    """

    record_weights = False
    last_weights: np.ndarray | None = None

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder states (B, S, d) -> keys and values (B, H, S, D): once per source, reused at every step."""
        if memory.ndim != 3 or memory.shape[-1] != self.embed_dim:
            raise ValueError(f"CrossAttention: expected encoder states (B, S, {self.embed_dim}), got {memory.shape}")
        return self.split_heads(self.k_proj(memory)), self.split_heads(self.v_proj(memory))

    def forward(self, x: Tensor, memory_keys: Tensor, memory_values: Tensor, memory_padding=None) -> Tensor:
        """x (B, T, d) attends over the projected encoder states (B, H, S, D); memory_padding (B, S) is True at
        source pads. Returns (B, T, d)."""
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"CrossAttention: expected decoder states (B, T, {self.embed_dim}), got {x.shape}")
        q = self.split_heads(self.q_proj(x))
        if self.record_weights:
            self.last_weights = attention_probabilities(q.data, memory_keys.data, padding_mask=memory_padding)
        out = self.attend(q, memory_keys, memory_values, causal=False, padding_mask=memory_padding)
        return self.dropout(self.out_proj(self.merge_heads(out)))
