"""Learning checks for multi-head attention, positions and the Transformer block (Q10, Q11, Q13).

The `check_*` functions take the attention class under test, so tests/test_broken_transformer.py can run
the very same checks on deliberately broken attention (tests/broken_transformer.py) and prove they fail.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import nn
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

pytestmark = pytest.mark.attention

seeds = st.integers(0, 2**31 - 1)


def make_attention(attention_class, embed_dim, num_heads, seed, dtype=np.float64):
    """A freshly initialised attention layer (float64 unless asked) and a generator for its inputs."""
    tgl.manual_seed(seed)
    attention = attention_class(embed_dim, num_heads)
    if dtype == np.float64:
        attention.double()
    return attention, np.random.default_rng(seed)


def naive_multi_head_attention(attention, x, causal):
    """The textbook formula in NumPy, one head at a time, from the layer's own weights: the specification."""
    def project(layer, inputs):
        return inputs @ layer.weight.data.T + (0 if layer.bias is None else layer.bias.data)

    q, k, v = (project(layer, x) for layer in (attention.q_proj, attention.k_proj, attention.v_proj))
    time, head_dim = x.shape[1], attention.head_dim
    merged = np.zeros_like(q)
    for h in range(attention.num_heads):
        features = slice(h * head_dim, (h + 1) * head_dim)
        scores = q[:, :, features] @ k[:, :, features].transpose(0, 2, 1) / math.sqrt(head_dim)
        if causal:
            scores = np.where(np.tril(np.ones((time, time), dtype=bool)), scores, -np.inf)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        merged[:, :, features] = (weights / weights.sum(axis=-1, keepdims=True)) @ v[:, :, features]
    return project(attention.out_proj, merged)


# ============================================================================ reusable checks
def check_matches_naive_attention(attention_class):
    """All heads at once (reshape/permute, one fused kernel call) equal the per-head textbook loop."""
    @settings(max_examples=15, report_multiple_bugs=False)
    @given(st.integers(1, 2), st.integers(1, 7), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 3]), st.booleans(), seeds)
    def check(batch, time, heads, head_dim, causal, seed):
        attention, rng = make_attention(attention_class, heads * head_dim, heads, seed)
        x = rng.standard_normal((batch, time, heads * head_dim))
        np.testing.assert_allclose(attention(tgl.tensor(x), causal=causal).data,
                                   naive_multi_head_attention(attention, x, causal), atol=1e-10)

    check()


def check_causal_attention(attention_class):
    """Output t is unchanged when any token after t changes: no information from the future."""
    @settings(max_examples=15, report_multiple_bugs=False)
    @given(st.integers(1, 2), st.integers(2, 8), st.sampled_from([1, 2, 4]), st.booleans(), st.data(), seeds)
    def check(batch, time, heads, rotary, data, seed):
        attention, rng = make_attention(attention_class, heads * 4, heads, seed)
        rope = nn.RotaryEmbedding(4, time) if rotary else None
        t = data.draw(st.integers(0, time - 2), label="last unchanged position")
        x = rng.standard_normal((batch, time, heads * 4))
        changed = x.copy()
        changed[:, t + 1:] = rng.standard_normal(changed[:, t + 1:].shape)
        before = attention(tgl.tensor(x), causal=True, rotary=rope).data
        after = attention(tgl.tensor(changed), causal=True, rotary=rope).data
        np.testing.assert_allclose(after[:, :t + 1], before[:, :t + 1], atol=1e-12)

    check()


def check_single_head_identity(attention_class):
    """With one head and identity projections, multi-head attention IS softmax(x x^T / sqrt(d)) x."""
    @settings(max_examples=10, report_multiple_bugs=False)
    @given(st.integers(1, 2), st.integers(1, 6), st.integers(1, 5), st.booleans(), seeds)
    def check(batch, time, dim, causal, seed):
        attention, rng = make_attention(attention_class, dim, 1, seed)
        for layer in (attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj):
            layer.weight.data[...] = np.eye(dim)
            layer.bias.data[...] = 0
        x = tgl.tensor(rng.standard_normal((batch, time, dim)))
        expected = F.scaled_dot_product_attention(x[:, None], x[:, None], x[:, None], causal=causal)[:, 0]
        np.testing.assert_allclose(attention(x, causal=causal).data, expected.data, atol=1e-12)

    check()


# ============================================================================ multi-head attention
def test_all_heads_at_once_equal_the_per_head_loop():
    check_matches_naive_attention(nn.MultiHeadAttention)


def test_attention_is_causal():
    check_causal_attention(nn.MultiHeadAttention)


def test_one_head_with_identity_projections_is_scaled_dot_product_attention():
    check_single_head_identity(nn.MultiHeadAttention)


@settings(max_examples=10)
@given(st.integers(1, 2), st.integers(1, 4), st.sampled_from([1, 2]), st.booleans(), st.booleans(), seeds)
def test_attention_gradcheck(batch, time, heads, causal, rotary, seed):
    attention, rng = make_attention(nn.MultiHeadAttention, heads * 2, heads, seed)
    rope = nn.RotaryEmbedding(2, time) if rotary else None
    padding = np.zeros((batch, time), dtype=bool)
    padding[0, -1] = time > 1  # one padding key, so the masked path is differentiated too
    x = tgl.tensor(rng.standard_normal((batch, time, heads * 2)), requires_grad=True)
    gradcheck(lambda x, *params: attention(x, causal=causal, padding_mask=padding, rotary=rope), x, *attention.parameters())


def test_the_key_bias_gets_no_gradient():
    """q . (k + b) = q . k + q . b adds the same number to every score of a query, and softmax ignores such
    shifts: the key bias cannot change the output, so its gradient is 0 (a wasted parameter, unless rotary
    positions rotate it differently at every key)."""
    attention, rng = make_attention(nn.MultiHeadAttention, 8, 2, 0)
    attention(tgl.tensor(rng.standard_normal((2, 5, 8))), causal=True).sum().backward()
    np.testing.assert_allclose(attention.k_proj.bias.grad, 0, atol=1e-12)
    assert np.abs(attention.q_proj.bias.grad).max() > 1e-3


def test_transformer_block_gradcheck():
    tgl.manual_seed(0)
    block = nn.TransformerBlock(4, 2, mlp_ratio=2).double()
    x = tgl.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    gradcheck(lambda x, *params: block(x), x, *block.parameters())


def test_block_with_silent_branches_is_the_identity():
    """Pre-LN: x + f(LN(x)); if both branches write zeros, the residual path carries x through unchanged."""
    tgl.manual_seed(0)
    block = nn.TransformerBlock(8, 2)
    for layer in (block.attn.out_proj, block.mlp_down):
        layer.weight.data[...] = 0
        layer.bias.data[...] = 0
    x = tgl.randn(2, 5, 8)
    np.testing.assert_array_equal(block(x).data, x.data)


@settings(max_examples=15)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.data(), seeds)
def test_padding_mask_hides_appended_padding(batch, time, extra_padding, data, seed):
    """Bidirectional attention over a padded batch: with the mask, each sequence's real outputs are what it
    gets alone; without it, the padding leaks into every real position."""
    attention, rng = make_attention(nn.MultiHeadAttention, 8, 2, seed, dtype=np.float32)
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch), label="real lengths")
    width = time + extra_padding
    x = rng.standard_normal((batch, width, 8)).astype(np.float32)
    padding = np.arange(width)[None, :] >= np.array(lengths)[:, None]
    masked = attention(tgl.tensor(x), causal=False, padding_mask=padding).data
    unmasked = attention(tgl.tensor(x), causal=False).data
    for b, length in enumerate(lengths):
        alone = attention(tgl.tensor(x[b:b + 1, :length]), causal=False).data[0]
        np.testing.assert_allclose(masked[b, :length], alone, atol=1e-6)
        assert np.abs(unmasked[b, :length] - alone).max() > 1e-4


@settings(max_examples=15)
@given(st.integers(2, 7), st.data(), seeds)
def test_attention_without_positions_is_permutation_equivariant(time, data, seed):
    """attn(P x) = P attn(x): attention alone sees a set, not a sequence. Adding sinusoidal positions breaks it."""
    permutation = np.array(data.draw(st.permutations(range(time)), label="permutation"))
    assume((permutation != np.arange(time)).any())
    attention, rng = make_attention(nn.MultiHeadAttention, 8, 2, seed)
    x = rng.standard_normal((1, time, 8))
    out = attention(tgl.tensor(x), causal=False).data
    np.testing.assert_allclose(attention(tgl.tensor(x[:, permutation]), causal=False).data, out[:, permutation], atol=1e-12)

    positions = nn.SinusoidalPositionalEncoding(time, 8).table.astype(np.float64)
    with_positions = attention(tgl.tensor(x + positions), causal=False).data
    permuted_with_positions = attention(tgl.tensor(x[:, permutation] + positions), causal=False).data
    assert np.abs(permuted_with_positions - with_positions[:, permutation]).max() > 1e-6


@settings(max_examples=10)
@given(st.integers(1, 2), st.lists(st.integers(1, 4), min_size=1, max_size=4), st.booleans(), seeds)
def test_attention_with_a_cache_in_chunks_equals_one_causal_pass(batch, chunks, rotary, seed):
    attention, rng = make_attention(nn.MultiHeadAttention, 8, 2, seed)
    time = sum(chunks)
    rope = nn.RotaryEmbedding(4, time) if rotary else None
    x = rng.standard_normal((batch, time, 8))
    full = attention(tgl.tensor(x), rotary=rope).data
    cache, outputs = nn.KVCache(batch, num_layers=1), []
    for size in chunks:
        start = cache.length
        outputs.append(attention(tgl.tensor(x[:, start:start + size]), cache=cache, layer_index=0, rotary=rope).data)
        cache.length += size
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-12)


def test_kv_cache_refuses_a_second_append_before_the_length_advances():
    attention, _ = make_attention(nn.MultiHeadAttention, 4, 2, 0)
    cache = nn.KVCache(1, num_layers=1)
    attention(tgl.randn(1, 3, 4).double(), cache=cache, layer_index=0)
    with pytest.raises(RuntimeError, match="append to every layer exactly once"):
        attention(tgl.randn(1, 1, 4).double(), cache=cache, layer_index=0)


def test_attention_errors_name_the_problem():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        nn.MultiHeadAttention(10, 3)
    attention = nn.MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"expected input \(B, T, 8\)"):
        attention(tgl.randn(2, 3, 6))
    with pytest.raises(ValueError, match="layer_index"):
        attention(tgl.randn(1, 3, 8), cache=nn.KVCache(1, 1))


# ============================================================================ positions
@given(st.integers(1, 5000), st.integers(1, 32).map(lambda n: 2 * n))
def test_sinusoidal_encodings_are_bounded_and_fixed(max_positions, dim):
    encoding = nn.SinusoidalPositionalEncoding(max_positions, dim)
    table = encoding(max_positions).data
    assert table.shape == (max_positions, dim)
    assert np.abs(table).max() <= 1
    assert encoding.num_parameters() == 0 and not encoding(max_positions).requires_grad


@given(st.integers(0, 2000), st.integers(-500, 500), st.integers(1, 16).map(lambda n: 2 * n))
def test_a_shift_in_position_is_a_fixed_linear_map(position, shift, dim):
    """PE(p + k) = M_k PE(p), with M_k the same for every p: relative offsets are linear maps."""
    assume(0 <= position + shift)
    encoding = nn.SinusoidalPositionalEncoding(2501, dim)
    table = encoding.table.astype(np.float64)
    np.testing.assert_allclose(encoding.shift_matrix(shift) @ table[position], table[position + shift], atol=1e-5)


def test_sinusoidal_needs_an_even_width():
    with pytest.raises(ValueError, match="even"):
        nn.SinusoidalPositionalEncoding(10, 5)


def test_learned_positions_are_rows_of_a_trained_table():
    tgl.manual_seed(0)
    positions = nn.LearnedPositionalEmbedding(10, 4)
    out = positions(3, offset=5)
    np.testing.assert_array_equal(out.data, positions.weight.data[5:8])
    out.sum().backward()
    assert (positions.weight.grad[5:8] == 1).all() and (np.delete(positions.weight.grad, [5, 6, 7], axis=0) == 0).all()
    with pytest.raises(ValueError, match=r"positions 8\.\.10 exceed max_positions=10"):
        positions(3, offset=8)


def explicit_rotary(x, positions, base=10000.0):
    """RoPE written out pair by pair: features (i, i + D/2) turned by the angle p * base^(-2i/D)."""
    half = x.shape[-1] // 2
    out = np.empty_like(x)
    for i in range(half):
        angle = positions * base ** (-2 * i / x.shape[-1])
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * np.cos(angle) - b * np.sin(angle)
        out[..., i + half] = a * np.sin(angle) + b * np.cos(angle)
    return out


@given(st.integers(1, 6), st.integers(0, 30), st.integers(1, 8).map(lambda n: 2 * n), seeds)
def test_rotary_rotates_each_pair_by_its_position(time, offset, head_dim, seed):
    x = np.random.default_rng(seed).standard_normal((1, 2, time, head_dim))
    rope = nn.RotaryEmbedding(head_dim, 40)
    rotated = rope.rotate(tgl.tensor(x), offset).data
    np.testing.assert_allclose(rotated, explicit_rotary(x, np.arange(offset, offset + time, dtype=np.float64)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1))  # rotations keep lengths


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 40), seeds)
def test_rotary_scores_depend_only_on_the_distance(query_position, key_position, shift, seed):
    """R(m) q . R(n) k = q . R(n - m) k: moving both tokens by the same amount changes no score."""
    rng = np.random.default_rng(seed)
    q, k = (tgl.tensor(rng.standard_normal((1, 1, 1, 8))) for _ in range(2))
    rope = nn.RotaryEmbedding(8, 100)

    def score(m, n):
        return float((rope.rotate(q, m).data * rope.rotate(k, n).data).sum())

    assert score(query_position, key_position) == pytest.approx(score(query_position + shift, key_position + shift), abs=1e-10)


def test_rotary_errors_name_the_problem():
    with pytest.raises(ValueError, match="even"):
        nn.RotaryEmbedding(5, 10)
    rope = nn.RotaryEmbedding(4, 10)
    with pytest.raises(ValueError, match="exceed max_positions=10"):
        rope.rotate(tgl.randn(1, 1, 3, 4), offset=8)
    with pytest.raises(ValueError, match=r"\(B, H, T, 4\)"):
        rope.rotate(tgl.randn(1, 3, 4))
