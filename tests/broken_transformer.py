"""Deliberately broken attention and GPT variants, each named after its bug (M26, M27, Q11, Q21).

Each is the library's class with ONE method overridden, small enough to read next to the correct method
in tinygrad_llm/nn/attention.py or gpt.py. tests/test_broken_transformer.py proves that the learning checks
of test_attention_layers.py and test_gpt.py reject every one of them.
"""
import math

import numpy as np

from tinygrad_llm import nn
from tinygrad_llm.nn import functional as F


def _explicit_attention(q, k, v, causal, padding_mask, diagonal=0, softmax_axis=-1):
    """softmax(q k^T / sqrt(D) + mask) v written out with tensor ops, with two knobs to break it."""
    scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]))
    tq, tk = q.shape[-2], k.shape[-2]
    allowed = np.ones((q.shape[0], 1, tq, tk), dtype=bool)
    if causal:
        allowed &= np.tril(np.ones((tq, tk), dtype=bool), k=tk - tq + diagonal)
    if padding_mask is not None:
        allowed &= ~np.asarray(padding_mask, dtype=bool)[:, None, None, :]
    return F.softmax(scores.masked_fill(~allowed, -1e30), axis=softmax_axis) @ v


class AttentionWithoutScaling(nn.MultiHeadAttention):
    def attend(self, q, k, v, causal, padding_mask):
        # BUG (M26): scores of variance D instead of 1; softmax saturates and its gradient vanishes as D grows
        return F.scaled_dot_product_attention(q, k, v, causal=causal, padding_mask=padding_mask, scale=1.0)


class AttentionWithHeadsSplitAcrossTokens(nn.MultiHeadAttention):
    def split_heads(self, x):
        self.batch_and_time = x.shape[:2]
        # BUG (M27): reshape to (-1, heads, depth) = (B*T, H, D): the H heads of ONE token take the place of
        # the time axis, so heads attend to each other and tokens never see one another
        return x.reshape(-1, self.num_heads, self.head_dim).unsqueeze(1)

    def merge_heads(self, x):
        return x.reshape(*self.batch_and_time, self.embed_dim)


class AttentionWithCausalMaskOffByOne(nn.MultiHeadAttention):
    def attend(self, q, k, v, causal, padding_mask):
        # BUG: tril(..., k=1) lets query t also see key t + 1, the very token it is trained to predict
        return _explicit_attention(q, k, v, causal, padding_mask, diagonal=1)


class AttentionWithSoftmaxOverQueries(nn.MultiHeadAttention):
    def attend(self, q, k, v, causal, padding_mask):
        # BUG: normalises each key's column over the queries instead of each query's row over the keys
        return _explicit_attention(q, k, v, causal, padding_mask, softmax_axis=-2)


class GPTNewTokensAtPositionZero(nn.GPT):
    def _first_position(self, cache):
        return 0  # BUG: forgets the cached tokens: every decoding step restarts at position 0


class GPTNewTokensAtLastCachedPosition(nn.GPT):
    def _first_position(self, cache):
        # BUG: off by one: the first new token gets the position of the last cached one (length - 1)
        return max(cache.length - 1, 0) if cache is not None else 0
