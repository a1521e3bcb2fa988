"""Multi-head self-attention (Q10-Q11): every position reads a weighted mix of the positions it may see.

    x (B, T, d) --W_q, W_k, W_v--> q, k, v (B, T, d) --split heads--> (B, H, T, D)     D = d / H
    every head at once:  softmax(q k^T / sqrt(D) + mask) v                 (B, H, T, D)
    merge heads -> (B, T, d) --W_o--> output (B, T, d)

Each head attends in its own D-dimensional subspace, so one head can track the previous token while
another tracks the subject of the sentence; W_o mixes what the heads found. The cost is that of one
head of width d: the heads split the width, they do not multiply it.

Why divide by sqrt(D): for q, k with unit-variance entries, q . k is a sum of D products and has variance
D. Unscaled, the scores grow with the head width, softmax saturates to a one-hot and its Jacobian (the
gradient that reaches q and k) goes to zero (M26; tests/broken_transformer.py keeps the unscaled variant).

Splitting the heads correctly (M27). The d features of each token are cut into H groups of D, and the
TIME axis must stay the attention axis:

    right:  (B, T, d) -> reshape (B, T, H, D) -> permute (B, H, T, D)   each head attends over T tokens
    wrong:  (B, T, d) -> reshape (B*T, H, D)                             "(-1, heads, depth)"

The wrong one leaves H where attention expects time: the softmax then runs over the H heads of ONE token,
so heads attend to each other and no token ever sees another (a model built so stays at chance on any
task that needs context). The arrays even have plausible shapes, which is why the bug survives reading.

The score computation itself is F.scaled_dot_product_attention, which calls the active kernel set: the
compiled kernel streams over tiles of keys and never stores the (T x T) probability matrix. For the same
reason there is no dropout ON the attention probabilities here (GPT-2 has one): the fused kernel never
materialises them. Dropout is applied to the output instead (residual dropout, as everywhere in GPT-2).
"""
from __future__ import annotations

from . import functional as F
from .kv_cache import KVCache
from .layers import Dropout, Linear
from .module import Module
from ..tensor import Tensor


class MultiHeadAttention(Module):
    """Self-attention with `num_heads` heads over `embed_dim` features.

    q, k and v come from three Linear(d, d) layers (q_proj, k_proj, v_proj). GPT-2 fuses them into one
    Linear(d, 3d) and splits its output: the same function, one matrix product instead of three. Here the
    split costs more than it saves (its backward scatters each third into a zero (B, T, 3d) array, measured
    ~2x slower for d = 128), so the projections stay separate. Fused weights load with
    W_q, W_k, W_v = W_qkv[:d], W_qkv[d:2d], W_qkv[2d:].

    k_proj's bias is kept for parity with GPT-2, but without rotary positions it can never learn: it adds
    q . b_k to every score of a query alike, a shift softmax ignores, so its gradient is exactly 0. (RoPE
    rotates the bias differently at every key position, and then it does matter.)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiHeadAttention: embed_dim={embed_dim} is not divisible by num_heads={num_heads}; each head "
                f"gets embed_dim / num_heads features, so choose e.g. num_heads in "
                f"{[h for h in range(1, embed_dim + 1) if embed_dim % h == 0][:8]}"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = Dropout(dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, d) -> (B, H, T, D): feature groups become heads, time stays the attention axis."""
        batch, time, _ = x.shape
        return x.reshape(batch, time, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, D) -> (B, T, H * D): the inverse of split_heads, the heads side by side again. H * D is d,
        unless structured pruning removed heads (compression/structured_pruning.py)."""
        batch, _, time, _ = x.shape
        return x.permute(0, 2, 1, 3).reshape(batch, time, self.num_heads * self.head_dim)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, causal: bool, padding_mask) -> Tensor:
        """softmax(q k^T / sqrt(D) + mask) v for q (B, H, Tq, D), k and v (B, H, Tk, D), all heads at once."""
        return F.scaled_dot_product_attention(q, k, v, causal=causal, padding_mask=padding_mask)

    def forward(self, x: Tensor, causal: bool = True, padding_mask=None, cache: KVCache | None = None,
                layer_index: int | None = None, rotary=None, positions_offset: int | None = None) -> Tensor:
        """x (B, T, d) -> (B, T, d).

        causal: token t attends to tokens <= t only (a decoder); False lets every token see every other (an encoder).
        padding_mask: (B, Tk) booleans, True where a KEY is padding and must be ignored; Tk = T without a cache,
            cache.length + T with one.
        cache, layer_index: the new keys and values are appended to the cache's layer `layer_index`, and the T
            queries attend to every cached key (the causal mask aligns them to the last T keys).
        rotary: a RotaryEmbedding applied to q and k at positions positions_offset .. positions_offset + T - 1;
            positions_offset defaults to cache.length (tokens already seen), or 0 without a cache; an int array (B,)
            puts each row at its own position (a ragged batch, see RotaryEmbedding.rotate).
        """
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: expected input (B, T, {self.embed_dim}), got {x.shape}")
        if cache is not None and layer_index is None:
            raise ValueError("MultiHeadAttention: a cache needs layer_index, the layer whose keys and values to use")
        if positions_offset is None:
            positions_offset = cache.next_positions if cache is not None else 0
        q, k, v = (self.split_heads(project(x)) for project in (self.q_proj, self.k_proj, self.v_proj))
        if rotary is not None:
            q, k = rotary(q, k, positions_offset)
        if cache is not None:
            k, v = cache.append(layer_index, k, v)
        out = self.attend(q, k, v, causal, padding_mask)
        return self.dropout(self.out_proj(self.merge_heads(out)))

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
