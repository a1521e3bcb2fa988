"""Additive (Bahdanau) attention: how an RNN decoder reads every encoder state (Bahdanau, Cho and Bengio, 2014).

    score(s, h_i)  = v . tanh(W_q s + W_k h_i)        s (B, Hq): the decoder state, h_i (B, S, Hk): the encoder states
    a_i            = softmax over the source of the scores, with source pads set to -inf (weight exactly 0)
    context        = sum_i a_i h_i                   (B, Hk): a fresh summary of the source for every output step

Before it, an RNN decoder started from the encoder's LAST state and nothing else, so the whole source had
to fit in one fixed-size vector, and quality fell with length (M30). With attention the decoder looks
back at one state per source token at every step.

"Additive" because query and key are added inside a small one-layer network; Transformers use the
multiplicative form q . k / sqrt(d), which is one matrix product for all pairs. W_k h_i does not depend on
the decoder, so it is computed once per source (`project_keys`) and reused at every step.
"""
from __future__ import annotations

import numpy as np

from .layers import Linear
from .module import Module
from ..tensor import Tensor


class AdditiveAttention(Module):
    def __init__(self, query_dim: int, key_dim: int, attention_dim: int):
        self.query_proj = Linear(query_dim, attention_dim)
        self.key_proj = Linear(key_dim, attention_dim, bias=False)
        self.score = Linear(attention_dim, 1, bias=False)

    def project_keys(self, states: Tensor) -> Tensor:
        """W_k h_i for every source state: (B, S, Hk) -> (B, S, A), once per source."""
        return self.key_proj(states)

    def forward(self, query: Tensor, projected_keys: Tensor, states: Tensor, padding=None) -> tuple[Tensor, Tensor]:
        """query (B, Hq), projected_keys (B, S, A), states (B, S, Hk), padding (B, S) True at pads
        -> (context (B, Hk), weights (B, S))."""
        scores = self.score((self.query_proj(query).unsqueeze(1) + projected_keys).tanh()).squeeze(-1)  # (B, S)
        if padding is not None:
            scores = scores.masked_fill(np.asarray(padding, dtype=bool), -np.inf)
        weights = scores.softmax(axis=-1)
        context = (weights.unsqueeze(-1) * states).sum(axis=1)
        return context, weights
