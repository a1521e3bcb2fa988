"""The Transformer decoder block of an encoder-decoder (Q15), pre-LN like TransformerBlock:

    x = x + SelfAttention(LayerNorm(x), causal)          the target prefix, each position sees itself and the past
    x = x + CrossAttention(LayerNorm(x), encoder states)  then reads the source (no causal mask, source pads hidden)
    x = x + MLP(LayerNorm(x))                             then thinks on its own

An encoder block is a TransformerBlock run with causal=False and the source padding mask. A decoder is NOT
a stack of encoder blocks (misconception M31): without the causal mask each position could read the very
token it must predict (the shifted target puts it one step to the right), and without cross-attention it
never sees the source.

Parameters with biases, d_ff = mlp_ratio * d: two attentions 8d^2 + 8d, the MLP 2 d d_ff + d_ff + d, three
LayerNorms 6d: 8d^2 + 2 d d_ff + d_ff + 15d (an encoder block: 4d^2 + 2 d d_ff + d_ff + 9d).
"""
from __future__ import annotations

from .cross_attention import CrossAttention
from .layers import LayerNorm
from .transformer_block import TransformerBlock
from ..tensor import Tensor


class DecoderBlock(TransformerBlock):
    """A TransformerBlock with a cross-attention sublayer (and its LayerNorm) between attention and MLP."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0, bias: bool = True):
        super().__init__(embed_dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, bias=bias)
        self.ln_cross = LayerNorm(embed_dim)
        self.cross_attn = CrossAttention(embed_dim, num_heads, dropout=dropout, bias=bias)

    def forward(self, x: Tensor, memory_keys: Tensor, memory_values: Tensor, memory_padding=None, cache=None,
                layer_index=None) -> Tensor:
        """x (B, T, d) -> (B, T, d). memory_keys, memory_values: this block's projection of the encoder states
        (cross_attn.project_memory); cache, layer_index: the self-attention KV cache, as in TransformerBlock."""
        x = x + self.attn(self.ln1(x), causal=True, cache=cache, layer_index=layer_index)
        x = x + self.cross_attn(self.ln_cross(x), memory_keys, memory_values, memory_padding)
        return x + self.mlp(self.ln2(x))
