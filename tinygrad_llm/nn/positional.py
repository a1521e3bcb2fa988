"""Positions: attention alone cannot tell "dog bites man" from "man bites dog".

Self-attention is permutation-equivariant: shuffle the input tokens and the outputs come back shuffled
the same way, because every score q_i . k_j depends only on the two tokens, not on where they sit. Order
must be supplied from outside, in one of three ways:

    LearnedPositionalEmbedding    a trained vector per position, added to the token embedding (GPT-2)
    SinusoidalPositionalEncoding  a fixed sin/cos vector per position, added the same way (the Transformer paper)
    RotaryEmbedding               no addition: q and k of every head are rotated by an angle proportional
                                  to their position (RoPE, used by Llama and most recent LLMs)

All three take an `offset`, the position of the first token they are given: 0 for a whole sequence, and
`cache.length` when decoding with a KV cache, where the new token at step t sits at position t, not 0.
Getting that offset wrong is a classic cache bug (tests/broken_transformer.py keeps it). The offset may also
be an int array (B,), one per row: a server decodes a ragged batch of requests that have each seen a different
number of tokens, so row b's tokens start at position offset[b] (tinygrad_llm/serving/batched_decoding.py).
"""
from __future__ import annotations

import numpy as np

from . import init
from .module import Module
from .parameter import Parameter
from ..tensor import DEFAULT_FLOAT, Tensor


def _check_positions(owner: str, length: int, offset, max_positions: int) -> None:
    offsets = np.asarray(offset)
    if offsets.ndim > 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(f"{owner}: offset must be an int or an int array (B,) with one offset per row, got {offset!r}")
    if length < 0 or (offsets.size and offsets.min() < 0):
        raise ValueError(f"{owner}: offset and length must be non-negative, got offset={offset}, length={length}")
    if offsets.size and offsets.max() + length > max_positions:
        raise ValueError(
            f"{owner}: positions {offsets.max()}..{offsets.max() + length - 1} exceed max_positions={max_positions}; "
            f"feed at most {max_positions} tokens in all (crop the context to its last {max_positions} tokens) "
            "or build the model with a larger context_size"
        )


def _position_index(length: int, offset):
    """Where to read positions offset .. offset + length - 1 in a (max_positions, ...) table: a slice when every
    row shares one offset (the rows come out (length, ...)), an int array (B, length) when each row has its own
    (the rows come out (B, length, ...)). Either broadcasts against (B, length, dim)."""
    if np.ndim(offset) == 0:
        return slice(offset, offset + length)
    return np.asarray(offset)[:, None] + np.arange(length)


def _angles(max_positions: int, dim: int, base: float) -> np.ndarray:
    """(max_positions, dim // 2) angles p * w_i with w_i = base^(-2i/dim): frequencies from 1 rad/position down to
    ~1/base, so the fast pairs tell neighbours apart and the slow ones locate far-apart tokens."""
    frequencies = base ** (-np.arange(0, dim - 1, 2, dtype=np.float64) / dim)
    return np.arange(max_positions, dtype=np.float64)[:, None] * frequencies


class LearnedPositionalEmbedding(Module):
    """A trained vector per position, looked up like a token embedding and added to it (GPT-2's `wpe`).

    Simple and as expressive as it gets, but blind past `max_positions`: row p is trained only by sequences
    longer than p, so a model trained on length 64 has nothing to say at position 100 (Q13).
    Initialised N(0, 0.02), GPT-2's scale for every embedding.
    """

    def __init__(self, max_positions: int, dim: int):
        self.max_positions, self.dim = max_positions, dim
        self.weight = init.normal_(Parameter(np.empty((max_positions, dim), dtype=DEFAULT_FLOAT)), std=0.02)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """(length, dim): the vectors of positions offset .. offset + length - 1, to add to (B, length, dim);
        (B, length, dim) for an offset array (B,)."""
        _check_positions(type(self).__name__, length, offset, self.max_positions)
        return self.weight[_position_index(length, offset)]

    def extra_repr(self):
        return f"{self.max_positions}, {self.dim}"


class SinusoidalPositionalEncoding(Module):
    """Fixed (not learned, not a Parameter) encodings from "Attention Is All You Need":

        PE[p, 2i] = sin(p * w_i),   PE[p, 2i + 1] = cos(p * w_i),   w_i = 10000^(-2i/dim)

    Every value lies in [-1, 1], whatever the position, so adding it never swamps the token embedding.

    Why sin AND cos: each (sin, cos) pair is a point on a circle turning at speed w_i, and moving k
    positions on turns it by the angle k * w_i, which is a rotation, the same for every p:

        PE(p + k) = M_k PE(p),   M_k block-diagonal with blocks [[cos k w_i, sin k w_i], [-sin k w_i, cos k w_i]]

    (`shift_matrix(k)` builds M_k). So "the token k places back" is one fixed linear map of the current
    position's code, and linear layers (the query and key projections) can learn to attend by relative
    offset with the same weights at every position. `dim` must be even, so that every sin has its cos.
    """

    def __init__(self, max_positions: int, dim: int, base: float = 10000.0):
        if dim % 2:
            raise ValueError(f"SinusoidalPositionalEncoding: dim must be even (sin/cos pairs), got {dim}")
        self.max_positions, self.dim, self.base = max_positions, dim, base
        angles = _angles(max_positions, dim, base)
        table = np.empty((max_positions, dim))
        table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
        self.table = table.astype(DEFAULT_FLOAT)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """(length, dim): the encodings of positions offset .. offset + length - 1 (constants, no gradient);
        (B, length, dim) for an offset array (B,)."""
        _check_positions(type(self).__name__, length, offset, self.max_positions)
        return Tensor(self.table[_position_index(length, offset)])

    def shift_matrix(self, k: int) -> np.ndarray:
        """(dim, dim) M_k with PE(p + k) = M_k @ PE(p) for every p: a shift in position is a rotation."""
        step = _angles(abs(k) + 1, self.dim, self.base)[-1] * np.sign(k)
        matrix = np.zeros((self.dim, self.dim))
        sin_rows, cos_rows = np.arange(0, self.dim, 2), np.arange(1, self.dim, 2)
        matrix[sin_rows, sin_rows], matrix[sin_rows, cos_rows] = np.cos(step), np.sin(step)
        matrix[cos_rows, sin_rows], matrix[cos_rows, cos_rows] = -np.sin(step), np.cos(step)
        return matrix

    def extra_repr(self):
        return f"{self.max_positions}, {self.dim}"


class RotaryEmbedding(Module):
    """Rotary position embedding (RoPE, Su et al. 2021): rotate each head's q and k by their position.

    Feature i of a head is paired with feature i + D/2 (the "rotate half" layout of GPT-NeoX and Llama),
    and the pair is rotated by the angle p * w_i at position p. For a query at position m and a key at n,

        R(m) q . R(n) k = q . R(m)^T R(n) k = q . R(n - m) k

    so every attention score depends on the two positions only through their DISTANCE n - m: relative
    positions for free, with nothing added to the residual stream and no parameter. Vectors keep their
    length (rotations are orthogonal), and nothing limits the angle table but `max_positions`.

    With a KV cache, the cached keys were rotated at their own positions when they were stored; only the
    new q and k are rotated, at positions offset .. offset + T - 1 (offset = tokens already cached).
    """

    def __init__(self, head_dim: int, max_positions: int, base: float = 10000.0):
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding: head_dim must be even (features rotate in pairs), got {head_dim}")
        self.head_dim, self.max_positions, self.base = head_dim, max_positions, base
        angles = np.concatenate([_angles(max_positions, head_dim, base)] * 2, axis=1)  # pair i <-> i + D/2
        self.cos, self.sin = np.cos(angles), np.sin(angles)
        half = head_dim // 2
        # rotate_half(x) = (-x[D/2:], x[:D/2]), the 90-degree turn of every pair, as a fixed matrix: x @ R
        self.rotate_half = np.zeros((head_dim, head_dim))
        self.rotate_half[np.arange(half, head_dim), np.arange(half)] = -1
        self.rotate_half[np.arange(half), np.arange(half, head_dim)] = 1

    def rotate(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (B, H, T, D) rotated at positions offset .. offset + T - 1:  x * cos + rotate_half(x) * sin.

        Pair (a, b) = (x_i, x_{i+D/2}) at angle t becomes (a cos t - b sin t, a sin t + b cos t), and
        rotate_half(x) = (-x[D/2:], x[:D/2]) supplies the (-b, a). It is one product with a fixed signed
        permutation matrix rather than slices and a concatenation: fewer ops, and a cheaper backward.
        An offset array (B,) rotates row b from its own position offset[b].
        """
        if x.ndim != 4 or x.shape[-1] != self.head_dim:
            raise ValueError(f"RotaryEmbedding: expected (B, H, T, {self.head_dim}) queries or keys, got {x.shape}")
        length = x.shape[-2]
        _check_positions(type(self).__name__, length, offset, self.max_positions)
        positions = _position_index(length, offset)
        cos, sin = self.cos[positions].astype(x.dtype), self.sin[positions].astype(x.dtype)
        if np.ndim(offset):  # (B, T, D) -> (B, 1, T, D): the same angles for every head of a row
            cos, sin = cos[:, None], sin[:, None]
        cos, sin = Tensor(cos), Tensor(sin)
        return x * cos + (x @ Tensor(self.rotate_half.astype(x.dtype))) * sin

    def forward(self, q: Tensor, k: Tensor, offset: int = 0):
        """(rotated q, rotated k), both (B, H, T, D) at positions offset .. offset + T - 1."""
        return self.rotate(q, offset), self.rotate(k, offset)

    def extra_repr(self):
        return f"head_dim={self.head_dim}, max_positions={self.max_positions}, base={self.base}"
