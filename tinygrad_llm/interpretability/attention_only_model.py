"""An attention-only Transformer whose every head can be read and rewritten (Q32).

    ids (B, T) -> token embedding + learned positions         "embeddings"           (B, T, d)
               -> num_layers x  x = x + attention(LayerNorm(x))   "blocks.l"         (B, T, d)
               -> final LayerNorm -> unembedding (d -> V)        logits              (B, T, V)

A GPT without its MLPs. What is left moves information between positions and nothing else, so a circuit
such as the induction circuit (a previous-token head in layer 0 feeding an induction head in layer 1) is
all there is to find.

The library's MultiHeadAttention computes softmax(q k^T / sqrt(D)) v in one fused kernel that never
stores the probabilities, and merges the heads before anyone can see them. Here the same layer (its
projections, split_heads and merge_heads are reused) computes attention step by step and passes two
intermediate results through identity modules, so that forward hooks (activations.py) reach them:

    blocks.l.attn.pattern        (B, H, T, T)  each head's attention probabilities, rows summing to 1
    blocks.l.attn.head_outputs   (B, H, T, D)  each head's output, before out_proj mixes the heads

Replacing head h's slice of head_outputs is patching that one head: out_proj is linear, so the layer's
output is the sum over heads of out_proj's columns for that head applied to its output (plus the bias).
"""
from __future__ import annotations

import math

import numpy as np

from ..nn.attention import MultiHeadAttention
from ..nn.gpt import gpt2_initialise
from ..nn.layers import Embedding, Identity, LayerNorm, Linear
from ..nn.module import Module
from ..nn.positional import LearnedPositionalEmbedding
from ..tensor import Tensor


class InspectableAttention(MultiHeadAttention):
    """Causal multi-head attention computed in plain steps, with the pattern and the per-head outputs passed
    through the hook points `pattern` and `head_outputs`. Same parameters and same function as
    MultiHeadAttention (up to rounding); slower, since it stores the (T x T) probabilities."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__(embed_dim, num_heads)
        self.pattern = Identity()
        self.head_outputs = Identity()

    def attend(self, q: Tensor, k: Tensor, v: Tensor, causal: bool, padding_mask) -> Tensor:
        """softmax(q k^T / sqrt(D) + causal mask) v, (B, H, T, D) in and out, one visible step at a time."""
        if not causal or padding_mask is not None:
            raise ValueError("InspectableAttention: supports causal attention without padding only "
                             "(call it as attention(x))")
        time = q.shape[2]
        scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(self.head_dim))          # (B, H, T, T)
        future = np.triu(np.ones((time, time), dtype=bool), k=1)                       # key after the query
        probabilities = self.pattern(scores.masked_fill(future, -np.inf).softmax(axis=-1))
        return self.head_outputs(probabilities @ v)                                     # (B, H, T, D)


class AttentionOnlyBlock(Module):
    """x + attention(LayerNorm(x)): a pre-LN Transformer block without its MLP."""

    def __init__(self, embed_dim: int, num_heads: int):
        self.ln = LayerNorm(embed_dim)
        self.attn = InspectableAttention(embed_dim, num_heads)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.ln(x))


class AttentionOnlyTransformer(Module):
    """ids (B, T) -> logits (B, T, V); logits[:, t] predicts ids[:, t + 1] from ids[:, :t + 1].

    Hook points: "embeddings" (the residual stream before the first block), "blocks.l" (after block l),
    "blocks.l.attn.pattern", "blocks.l.attn.head_outputs", "final_norm", "unembed". GPT-2's initialisation
    (nn/gpt.py), with the untied unembedding of the small interpretability models."""

    def __init__(self, vocab_size: int, context_size: int, embed_dim: int = 32, num_heads: int = 4,
                 num_layers: int = 2):
        self.vocab_size, self.context_size = vocab_size, context_size
        self.num_layers, self.num_heads = num_layers, num_heads
        self.token_embedding = Embedding(vocab_size, embed_dim)
        self.position_embedding = LearnedPositionalEmbedding(context_size, embed_dim)
        self.embeddings = Identity()
        self.blocks = [AttentionOnlyBlock(embed_dim, num_heads) for _ in range(num_layers)]
        self.final_norm = LayerNorm(embed_dim)
        self.unembed = Linear(embed_dim, vocab_size, bias=False)
        gpt2_initialise(self, [block.attn.out_proj for block in self.blocks])

    def forward(self, ids) -> Tensor:
        ids = np.asarray(getattr(ids, "data", ids))
        if ids.ndim != 2 or ids.shape[1] > self.context_size:
            raise ValueError(f"AttentionOnlyTransformer: ids must be (B, T) with T <= context_size = "
                             f"{self.context_size}, got shape {ids.shape}")
        x = self.embeddings(self.token_embedding(ids) + self.position_embedding(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.final_norm(x))
