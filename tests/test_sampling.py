"""Chapter 9 checks for the decoding rules (Q19): temperature -> 0 is greedy, top-k never leaves the
top k, the top-p set is the smallest with mass >= p, and with nothing filtered the sampled frequencies are the
softmax (a chi-square test). Each is a fact a learner should be able to state and defend in an interview.
"""
import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.generation import (
    apply_temperature, sample_next_token, top_k_filter, top_p_filter,
)

pytestmark = pytest.mark.inference


@st.composite
def logit_rows(draw, max_batch=4, max_vocab=10):
    """(B, V) float64 logits; rounding to a 0.25 grid makes ties common, so tie rules get exercised too."""
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_vocab)))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-8, 8, allow_nan=False)))
    return np.round(values * 4) / 4


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kept(filtered):
    return np.isfinite(filtered)


def chi_square_critical_value(dof, alpha=1e-3):
    """The (1 - alpha) quantile of chi-square(dof), by the Wilson-Hilferty cube approximation (no SciPy)."""
    z = NormalDist().inv_cdf(1 - alpha)
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


# ============================================================================ temperature and greedy
@given(logit_rows())
def test_temperature_zero_is_exactly_argmax_lowest_id_on_ties(logits):
    rng = np.random.default_rng(0)
    tokens = sample_next_token(logits, temperature=0, rng=rng)
    np.testing.assert_array_equal(tokens, logits.argmax(axis=-1))
    assert tokens.dtype == np.int64
    assert rng.random() == np.random.default_rng(0).random(), "greedy decoding must draw no random numbers"


@given(logit_rows(), st.integers(0, 2**32 - 1))
def test_small_temperature_gives_argmax_when_top_is_unique_by_a_margin(logits, seed):
    rows = np.arange(len(logits))
    logits[rows, logits.argmax(axis=-1)] += 0.5  # the top logit now leads every other by at least 0.5
    # at tau = 0.01 any other token has probability <= V * exp(-0.5 / 0.01) = V * 2e-22
    tokens = sample_next_token(np.tile(logits, (50, 1)), temperature=0.01, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(tokens, np.tile(logits.argmax(axis=-1), 50))


@given(logit_rows(), st.floats(0.05, 20))
def test_apply_temperature_gives_softmax_of_logits_over_tau(logits, tau):
    np.testing.assert_allclose(softmax(apply_temperature(logits, tau)), softmax(logits / tau), rtol=1e-9, atol=1e-12)


@given(logit_rows(), st.floats(0.05, 0.95))
def test_temperature_below_one_sharpens_and_above_one_flattens(logits, tau):
    top = softmax(logits).max(axis=-1)
    assert np.all(softmax(apply_temperature(logits, tau)).max(axis=-1) >= top - 1e-12)
    assert np.all(softmax(apply_temperature(logits, 1 / tau)).max(axis=-1) <= top + 1e-12)


def test_tiny_temperature_does_not_overflow():
    logits = np.array([[1e6, 0.0, -1e6]])
    shifted = apply_temperature(logits, 1e-300)
    assert not np.isnan(softmax(shifted)).any() and shifted[0, 0] == 0
    assert sample_next_token(logits, temperature=1e-300, rng=np.random.default_rng(0))[0] == 0


# ============================================================================ top-k
@given(logit_rows(), st.integers(1, 12))
def test_top_k_keeps_exactly_the_k_highest_logits_unchanged(logits, k):
    filtered = top_k_filter(logits, k)
    mask = kept(filtered)
    assert np.all(mask.sum(axis=-1) == min(k, logits.shape[1]))
    np.testing.assert_array_equal(filtered[mask], logits[mask])
    for row, row_mask in zip(logits, mask):
        if not row_mask.all():
            assert row[row_mask].min() >= row[~row_mask].max(), "a dropped token beat a kept one"


def test_top_k_ties_at_the_kth_value_keep_the_lower_token_ids():
    logits = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(kept(top_k_filter(logits, 2))[0], [False, True, True, False, False])


@given(logit_rows(), st.integers(0, 2**32 - 1))
def test_top_k_of_one_is_greedy(logits, seed):
    tokens = sample_next_token(logits, temperature=1.5, top_k=1, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(tokens, logits.argmax(axis=-1))


@given(logit_rows(), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_top_k_never_samples_outside_the_top_k(logits, k, seed):
    allowed = kept(top_k_filter(logits, k))
    draws = 40
    tokens = sample_next_token(np.repeat(logits, draws, axis=0), temperature=2.0, top_k=k,
                               rng=np.random.default_rng(seed))
    assert np.all(np.repeat(allowed, draws, axis=0)[np.arange(len(tokens)), tokens])


# ============================================================================ top-p
@given(logit_rows(), st.floats(0.01, 0.999))
def test_top_p_set_is_the_smallest_with_mass_at_least_p(logits, p):
    mask = kept(top_p_filter(logits, p))
    probs = softmax(logits)
    for row_probs, row_mask in zip(probs, mask):
        assert row_mask.any(), "top-p must keep at least one token"
        mass = row_probs[row_mask].sum()
        assert mass >= p - 1e-9, f"the kept set holds {mass} < p = {p}"
        assert mass - row_probs[row_mask].min() < p, "removing the least likely kept token still reaches p"
        if not row_mask.all():
            assert row_probs[row_mask].min() >= row_probs[~row_mask].max(), "a dropped token was likelier"


@given(logit_rows())
def test_top_p_keeps_only_the_argmax_for_tiny_p_and_everything_for_p_one(logits):
    only_top = kept(top_p_filter(logits, 1e-9))
    np.testing.assert_array_equal(only_top.argmax(axis=-1), logits.argmax(axis=-1))
    assert np.all(only_top.sum(axis=-1) == 1)
    np.testing.assert_array_equal(top_p_filter(logits, 1.0), logits)


def test_top_p_is_not_fooled_by_rounding_in_the_cumulative_sum():
    """Ten equal tokens: nine hold 0.9 exactly, although 0.1 summed nine times is 0.8999999999999999."""
    assert kept(top_p_filter(np.zeros((1, 10)), 0.9)).sum() == 9


def test_temperature_is_applied_before_top_p():
    """At tau = 1 the probabilities are [0.67, 0.24, 0.09] and the 0.7-nucleus is {0, 1}; at tau = 0.5 they
    are [0.87, 0.12, 0.02] and it is {0}. The nucleus must be measured on the distribution actually sampled."""
    logits = np.array([[2.0, 1.0, 0.0]])
    tokens = sample_next_token(np.repeat(logits, 500, axis=0), temperature=0.5, top_p=0.7,
                               rng=np.random.default_rng(0))
    assert np.all(tokens == 0)
    tokens = sample_next_token(np.repeat(logits, 500, axis=0), temperature=1.0, top_p=0.7,
                               rng=np.random.default_rng(0))
    assert set(tokens.tolist()) == {0, 1}


def test_top_p_is_measured_after_the_top_k_cut():
    """Probabilities [0.4, 0.3, 0.3]: top-2 renormalises {0, 1} to [0.57, 0.43], so p = 0.5 keeps token 0 only."""
    logits = np.log(np.array([[0.4, 0.3, 0.3]]))
    tokens = sample_next_token(np.repeat(logits, 300, axis=0), top_k=2, top_p=0.5, rng=np.random.default_rng(1))
    assert np.all(tokens == 0)


# ============================================================================ sampling matches the softmax
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_full_top_k_and_top_p_one_sample_the_softmax_chi_square(temperature):
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws = 20_000
    tokens = sample_next_token(np.tile(logits, (draws, 1)), temperature=temperature, top_k=len(logits), top_p=1.0,
                               rng=np.random.default_rng(1234))
    observed = np.bincount(tokens, minlength=len(logits))
    expected = draws * softmax(logits / temperature)
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert statistic < chi_square_critical_value(len(logits) - 1), (observed, expected.round())


# ============================================================================ seeds
@given(logit_rows(), st.integers(0, 2**32 - 1))
def test_the_same_seed_gives_the_same_samples(logits, seed):
    first = sample_next_token(logits, top_p=0.9, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(first, sample_next_token(logits, top_p=0.9, rng=np.random.default_rng(seed)))


def test_different_seeds_give_different_samples_and_the_library_seed_is_the_default():
    logits = np.zeros((200, 8))  # uniform: two seeds agree on all 200 draws with probability 8 ** -200
    a = sample_next_token(logits, rng=np.random.default_rng(0))
    assert not np.array_equal(a, sample_next_token(logits, rng=np.random.default_rng(1)))
    tgl.manual_seed(7)
    b = sample_next_token(logits)
    tgl.manual_seed(7)
    np.testing.assert_array_equal(b, sample_next_token(logits))


# ============================================================================ clear errors
@pytest.mark.parametrize("options, message", [
    (dict(temperature=-0.1), "temperature must be >= 0"),
    (dict(temperature=float("nan")), "temperature must be >= 0"),
    (dict(top_k=0), "k >= 1"),
    (dict(top_k=2.5), "k >= 1"),
    (dict(top_p=0.0), r"p in \(0, 1\]"),
    (dict(top_p=1.5), r"p in \(0, 1\]"),
])
def test_bad_sampling_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        sample_next_token(np.zeros((1, 4)), **options)


def test_bad_logits_are_clear_errors():
    with pytest.raises(ValueError, match=r"shape \(batch, vocab_size\).*logits\[None\]"):
        sample_next_token(np.zeros(4))
    with pytest.raises(TypeError, match="floating point"):
        top_k_filter(np.zeros((1, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="NaN"):
        top_p_filter(np.array([[0.0, np.nan]]), 0.5)
    with pytest.raises(ValueError, match="entirely -inf"):
        sample_next_token(np.full((1, 3), -np.inf))
    with pytest.raises(ValueError, match="temperature 0 means greedy"):
        apply_temperature(np.zeros((1, 3)), 0)
