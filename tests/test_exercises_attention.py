"""The chapter 6 exercises (causal mask, scaled dot-product attention, split and merge heads, a GPT's parameter
count): each reference agrees with the library, and classic wrong answers are rejected by the property that
names their bug. The wrong answers are real functions, named after the bug (spot-the-bug material); the shared
bank test (test_exercises.py) grades the references, the starters and WRONG_ANSWERS below with every other
exercise.
"""
import math

import numpy as np
import pytest

import tinygrad_llm as tgl
import tinygrad_llm.exercises as ex
from tinygrad_llm import nn
from tinygrad_llm.exercises.attention import causal_mask, merge_heads, split_heads
from tinygrad_llm.nn import functional as F

pytestmark = [pytest.mark.exercises, pytest.mark.attention]

ATTENTION_EXERCISES = ["causal_mask", "scaled_dot_product_attention", "split_heads", "merge_heads",
                       "gpt_parameter_count"]

# ---- causal_mask -----------------------------------------------------------------------------------------

def causal_mask_of_zeros_and_ones(num_queries, num_keys):
    return np.tril(np.ones((num_queries, num_keys)), k=num_keys - num_queries)


def causal_mask_off_by_one(num_queries, num_keys):
    visible = np.tril(np.ones((num_queries, num_keys), dtype=bool), k=num_keys - num_queries + 1)
    return np.where(visible, 0.0, -np.inf)


def causal_mask_ignores_the_cache_offset(num_queries, num_keys):
    return np.where(np.tril(np.ones((num_queries, num_keys), dtype=bool)), 0.0, -np.inf)


def causal_mask_hides_the_past(num_queries, num_keys):
    visible = np.triu(np.ones((num_queries, num_keys), dtype=bool), k=num_keys - num_queries)
    return np.where(visible, 0.0, -np.inf)


# ---- scaled_dot_product_attention ------------------------------------------------------------------------

def _attention(q, k, v, mask, *, scaled=True, axis=-1, stable=True, hide_with_zero=False):
    """The reference with a switch per classic bug; each wrong answer below flips one."""
    scores = q @ np.swapaxes(k, -1, -2) / (np.sqrt(q.shape[-1]) if scaled else 1.0)
    if mask is not None:
        scores = np.where(mask == 0, scores, 0.0) if hide_with_zero else scores + mask
    e = np.exp(scores - scores.max(axis=axis, keepdims=True) if stable else scores)
    return e / e.sum(axis=axis, keepdims=True) @ v


def attention_without_scaling(q, k, v, mask=None):
    return _attention(q, k, v, mask, scaled=False)


def attention_softmax_over_the_queries(q, k, v, mask=None):
    return _attention(q, k, v, mask, axis=-2)


def attention_without_max_subtraction(q, k, v, mask=None):
    return _attention(q, k, v, mask, stable=False)


def attention_sets_hidden_scores_to_zero(q, k, v, mask=None):
    return _attention(q, k, v, mask, hide_with_zero=True)


# ---- split_heads and merge_heads -------------------------------------------------------------------------

def split_heads_reshape_minus_one_heads_depth(x, num_heads):
    return x.reshape(-1, num_heads, x.shape[-1] // num_heads)  # M27: (B*T, H, D)


def split_heads_reshape_without_transpose(x, num_heads):
    batch, time, dim = x.shape
    return x.reshape(batch, num_heads, time, dim // num_heads)


def split_heads_interleaves_features(x, num_heads):
    batch, time, dim = x.shape
    return x.reshape(batch, time, dim // num_heads, num_heads).transpose(0, 3, 1, 2)


def merge_heads_reshape_without_transpose(x):
    batch, heads, time, head_dim = x.shape
    return x.reshape(batch, time, heads * head_dim)


def merge_heads_interleaves_heads(x):
    batch, heads, time, head_dim = x.shape
    return x.transpose(0, 2, 3, 1).reshape(batch, time, heads * head_dim)


def merge_heads_along_time(x):
    batch, heads, time, head_dim = x.shape
    return x.reshape(batch, heads * time, head_dim)


# ---- gpt_parameter_count ---------------------------------------------------------------------------------

def _count(vocab_size, context_size, embed_dim, num_layers, tie_weights, *, block=None, head_twice=False,
           positions=True):
    d = embed_dim
    per_block = 12 * d * d + 13 * d if block is None else block
    head = vocab_size * d if head_twice or not tie_weights else 0
    return vocab_size * d + (context_size * d if positions else 0) + num_layers * per_block + 2 * d + head


def gpt_count_projections_per_head(vocab_size, context_size, embed_dim, num_heads, num_layers, tie_weights):
    d = embed_dim
    block = num_heads * 4 * (d * d + d) + 8 * d * d + 9 * d  # attention counted once per head
    return _count(vocab_size, context_size, d, num_layers, tie_weights, block=block)


def gpt_count_tied_head_counted_twice(vocab_size, context_size, embed_dim, num_heads, num_layers, tie_weights):
    return _count(vocab_size, context_size, embed_dim, num_layers, tie_weights, head_twice=True)


def gpt_count_forgets_the_layer_norms(vocab_size, context_size, embed_dim, num_heads, num_layers, tie_weights):
    d = embed_dim
    return _count(vocab_size, context_size, d, num_layers, tie_weights, block=12 * d * d + 9 * d)


def gpt_count_mlp_as_wide_as_the_model(vocab_size, context_size, embed_dim, num_heads, num_layers, tie_weights):
    d = embed_dim
    return _count(vocab_size, context_size, d, num_layers, tie_weights, block=6 * d * d + 10 * d)


def gpt_count_without_the_position_table(vocab_size, context_size, embed_dim, num_heads, num_layers, tie_weights):
    return _count(vocab_size, context_size, embed_dim, num_layers, tie_weights, positions=False)


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("causal_mask", causal_mask_of_zeros_and_ones, "only 0 (visible) and -inf"),
    ("causal_mask", causal_mask_off_by_one, "never a later one"),
    ("causal_mask", causal_mask_hides_the_past, "never a later one"),
    ("causal_mask", causal_mask_ignores_the_cache_offset, "LAST positions"),
    ("scaled_dot_product_attention", attention_without_scaling, "sqrt(D)"),
    ("scaled_dot_product_attention", attention_softmax_over_the_queries, "summing to 1 over the KEYS"),
    ("scaled_dot_product_attention", attention_sets_hidden_scores_to_zero, "weight exactly 0"),
    ("scaled_dot_product_attention", attention_without_max_subtraction, "huge scores"),
    ("split_heads", split_heads_reshape_minus_one_heads_depth, "returns (B, H, T, D)"),
    ("split_heads", split_heads_reshape_without_transpose, "features h*D"),
    ("split_heads", split_heads_interleaves_features, "features h*D"),
    ("merge_heads", merge_heads_reshape_without_transpose, "inverse of split_heads"),
    ("merge_heads", merge_heads_interleaves_heads, "inverse of split_heads"),
    ("merge_heads", merge_heads_along_time, "returns (B, T, H * D)"),
    ("gpt_parameter_count", gpt_count_projections_per_head, "does not depend on num_heads"),
    ("gpt_parameter_count", gpt_count_tied_head_counted_twice, "untying the LM head"),
    ("gpt_parameter_count", gpt_count_forgets_the_layer_norms, "each block adds"),
    ("gpt_parameter_count", gpt_count_mlp_as_wide_as_the_model, "each block adds"),
    ("gpt_parameter_count", gpt_count_without_the_position_table, "library's count"),
]


def test_the_attention_exercises_are_registered_each_with_two_wrong_answers():
    names = [name for name, _ in ex.list_exercises()]
    for name in ATTENTION_EXERCISES:
        assert name in names
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# ---- the references agree with the library ---------------------------------------------------------------

@pytest.mark.parametrize("num_queries, num_keys", [(1, 1), (4, 4), (1, 5), (3, 7)])
def test_causal_mask_reference_agrees_with_the_library_kernel(num_queries, num_keys):
    """Adding the mask to the scores gives the library's causal attention, cache alignment included."""
    rng = np.random.default_rng(num_keys)
    q, k, v = (rng.standard_normal((1, 2, t, 3)) for t in (num_queries, num_keys, num_keys))
    expected = F.scaled_dot_product_attention(tgl.tensor(q), tgl.tensor(k), tgl.tensor(v), causal=True).data
    attention = ex.get_exercise("scaled_dot_product_attention").reference
    np.testing.assert_allclose(attention(q, k, v, causal_mask(num_queries, num_keys)), expected, rtol=1e-10, atol=1e-12)


def test_split_and_merge_references_are_the_layers_own():
    tgl.manual_seed(0)
    layer = nn.MultiHeadAttention(12, 3)
    x = np.random.default_rng(1).standard_normal((2, 5, 12))
    library_split = layer.split_heads(tgl.tensor(x))
    np.testing.assert_array_equal(split_heads(x, 3), library_split.data)
    np.testing.assert_array_equal(merge_heads(split_heads(x, 3)), layer.merge_heads(library_split).data)


def test_gpt_parameter_count_reference_matches_the_library_and_the_statement():
    count = ex.get_exercise("gpt_parameter_count").reference
    assert count(65, 64, 128, 4, 4, True) == 809_856
    for config in [(11, 8, 12, 3, 2, False), (50, 16, 8, 2, 1, True)]:
        vocab, context, dim, heads, layers, tie = config
        model = nn.GPT(vocab, context_size=context, embed_dim=dim, num_heads=heads, num_layers=layers, tie_weights=tie)
        assert count(*config) == model.num_parameters()
    assert "809,856" in ex.get_exercise("gpt_parameter_count").statement


def test_the_m27_wrong_answer_is_told_why_its_shape_is_wrong():
    result = ex.get_exercise("split_heads").grade(split_heads_reshape_minus_one_heads_depth)
    assert not result and "should have shape" in str(result)


def test_other_correct_styles_pass():
    """A per-head loop with einsum and a boolean mask turned into -inf; split/merge written with moveaxis."""
    def attention_with_einsum(q, k, v, mask=None):
        scores = np.einsum("...qd,...kd->...qk", q / math.sqrt(q.shape[-1]), k)
        if mask is not None:
            scores = np.where(mask == -np.inf, -np.inf, scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        return np.einsum("...qk,...kv->...qv", weights / weights.sum(axis=-1, keepdims=True), v)

    def split_with_moveaxis(x, num_heads):
        return np.moveaxis(x.reshape(*x.shape[:2], num_heads, -1), 2, 1)

    def merge_with_moveaxis(x):
        return np.moveaxis(x, 1, 2).reshape(x.shape[0], x.shape[2], -1)

    for name, function in (("scaled_dot_product_attention", attention_with_einsum),
                           ("split_heads", split_with_moveaxis), ("merge_heads", merge_with_moveaxis)):
        result = ex.get_exercise(name).grade(function)
        assert result, str(result)
