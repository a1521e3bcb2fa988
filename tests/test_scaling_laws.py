"""Chapter 10 (Q24, Q25): the scaling-law and Amdahl fitters recover what they are given, 6ND and the GPT's
parameter count agree with the library's own counts, and the fast sweeps run and show loss falling with scale.

The fitters are checked on synthetic data drawn by hypothesis, where the true parameters are known. The check
on the power-law fitter is a function so that it can also be run on a broken fitter that ignores the loss
floor c (tests/broken_scaling_laws.py), which it must catch.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinygrad_llm.experiments import scaling as S
from tinygrad_llm.nn import GPT
from tinygrad_llm.scaling_laws import amdahl_speedup, fit_amdahl, fit_power_law, training_flops

import broken_scaling_laws as broken

pytestmark = pytest.mark.scaling

# Noise on the synthetic losses, as a share of the smallest reducible part a N^-alpha. Measured over 912 draws
# like the ones below: at this level the worst error on alpha was 1.4% (99th percentile 0.7%); at 1% noise
# the worst was 6.9%, so 5% holds only while the noise stays well below the curve's visible bend.
NOISE = 2e-3


@st.composite
def power_law_points(draw):
    """(N, L, true alpha): 6-12 model sizes log-spaced over 1-3 decades from 10^3-10^5, with a floor c in
    [0, 3] and a reducible loss of 0.5-5 nats at the smallest size that shrinks at least 3x across the range
    (less than that and a, alpha and c trade off: see fit_power_law)."""
    alpha, c = draw(st.floats(0.2, 1.0)), draw(st.floats(0.0, 3.0))
    decades, smallest = draw(st.floats(1.0, 3.0)), 10 ** draw(st.floats(3.0, 5.0))
    assume(10 ** (decades * alpha) >= 3)
    N = np.geomspace(smallest, smallest * 10**decades, draw(st.integers(6, 12)))
    a = draw(st.floats(0.5, 5.0)) * smallest**alpha
    reducible = a * N**-alpha
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(len(N))
    return N, reducible + c + NOISE * reducible.min() * noise, alpha


def check_power_law_fitter(fit):
    """fit(N, L) recovers alpha within 5% from slightly noisy points of a N^-alpha + c."""

    @given(points=power_law_points())
    def recovers_alpha(points):
        N, L, alpha = points
        fitted = fit(N, L)
        assert abs(fitted.alpha / alpha - 1) < 0.05, f"fitted alpha {fitted.alpha:.4f}, true {alpha:.4f}"

    recovers_alpha()


def test_power_law_fitter_recovers_alpha_within_5_percent():
    check_power_law_fitter(fit_power_law)


def test_the_check_catches_a_fitter_that_ignores_the_floor():
    with pytest.raises(AssertionError):
        check_power_law_fitter(broken.fit_power_law_without_floor)


@given(alpha=st.floats(0.05, 2.0), c=st.floats(0.0, 5.0), scale=st.floats(0.5, 5.0), decades=st.floats(1.0, 4.0))
def test_power_law_fit_is_exact_without_noise(alpha, c, scale, decades):
    assume(10 ** (decades * alpha) >= 3)
    N = np.geomspace(1e3, 1e3 * 10**decades, 8)
    L = scale * (N / N[0]) ** -alpha + c
    fitted = fit_power_law(N, L)
    np.testing.assert_allclose([fitted.alpha, fitted.c], [alpha, c], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fitted.predict(N), L, rtol=1e-6)


def test_power_law_fitter_explains_bad_input():
    with pytest.raises(ValueError, match="fit_power_law.*at least 4 distinct"):
        fit_power_law([1e3, 1e4, 1e5], [3.0, 2.5, 2.2])
    with pytest.raises(ValueError, match="fit_power_law.*positive"):
        fit_power_law([1e3, 1e4, 1e5, 1e6], [3.0, 2.5, -2.2, 2.0])


workers_lists = st.lists(st.integers(1, 64), min_size=2, max_size=6, unique=True).filter(lambda k: max(k) > 1)


@given(serial_fraction=st.floats(0.0, 1.0), workers=workers_lists)
def test_amdahl_fit_recovers_the_serial_fraction(serial_fraction, workers):
    speedups = amdahl_speedup(workers, serial_fraction)
    assert fit_amdahl(workers, speedups) == pytest.approx(serial_fraction, abs=1e-9)


@given(workers=workers_lists, speedups=st.lists(st.floats(1e-3, 1e3), min_size=6, max_size=6))
def test_amdahl_fit_lies_in_0_1_for_any_positive_speedups(workers, speedups):
    assert 0.0 <= fit_amdahl(workers, speedups[: len(workers)]) <= 1.0


def test_amdahl_fit_explains_bad_input():
    with pytest.raises(ValueError, match="fit_amdahl.*more than one worker"):
        fit_amdahl([1, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="fit_amdahl.*same length"):
        fit_amdahl([1, 2, 4], [1.0, 1.8])


@given(d_per_head=st.integers(1, 32), heads=st.sampled_from([1, 2, 4]), vocab=st.integers(2, 300),
       layers=st.integers(1, 4), context=st.integers(1, 256), tokens=st.integers(1, 10**12))
def test_6ND_is_three_forward_passes_of_every_matmul_weight(d_per_head, heads, vocab, layers, context, tokens):
    """6ND = 3 x the forward matmul FLOPs GPT.flops_per_token counts (backward = 2 x forward), without its
    attention scores (which have no parameters), plus 6 FLOPs per token for each parameter that is not a
    matmul weight: the learned positions, the biases and the layer norms (13 d per block, 2 d at the end)."""
    d = d_per_head * heads
    config = dict(vocab_size=vocab, context_size=context, embed_dim=d, num_heads=heads, num_layers=layers)
    matmul_forward = GPT.flops_per_token(**config) - 4 * layers * context * d
    not_in_a_matmul = context * d + layers * 13 * d + 2 * d
    N = GPT.parameter_count(**config)
    assert training_flops(N, tokens) == pytest.approx(3 * tokens * matmul_forward + 6 * tokens * not_in_a_matmul,
                                                      rel=1e-12)


@given(d_per_head=st.integers(1, 16), heads=st.sampled_from([1, 2, 4]), vocab=st.integers(2, 120))
def test_tied_two_layer_parameter_count(d_per_head, heads, vocab):
    """A 2-layer tied GPT with learned positions and context 64 has 2(12 d^2 + 13 d) + V d + 64 d + 2 d
    parameters, in closed form and in the model actually built."""
    d = d_per_head * heads
    config = dict(vocab_size=vocab, context_size=64, embed_dim=d, num_heads=heads, num_layers=2,
                  positions="learned", tie_weights=True)
    expected = 2 * (12 * d * d + 13 * d) + vocab * d + 64 * d + 2 * d
    assert GPT.parameter_count(**config) == expected
    assert GPT(**config).num_parameters() == expected


# ============================================================================ the sweeps, fast mode
@pytest.fixture(scope="module")
def model_sweep():
    return S.model_size_sweep(fast=True)


@pytest.fixture(scope="module")
def data_sweep():
    return S.data_size_sweep(fast=True)


def test_model_sweep_bookkeeping(model_sweep):
    vocab = model_sweep["vocab_size"]
    for row in model_sweep["rows"]:
        config = dict(vocab_size=vocab, context_size=64, embed_dim=row["embed_dim"], num_layers=2)
        assert row["parameters"] == GPT.parameter_count(**config)
        assert row["non_embedding_parameters"] == row["parameters"] - (vocab + 64) * row["embed_dim"]
        assert row["tokens"] == model_sweep["tokens"] == model_sweep["steps"] * 16 * 64
        assert row["training_flops"] == 6 * row["parameters"] * row["tokens"]


def test_loss_falls_as_the_model_grows(model_sweep):
    """Fast mode trains for 150 steps, and neighbouring widths end only a few hundredths of a nat apart
    (measured for d = 8, 16, 24, 32: 3.248, 3.103, 3.026, 2.986), close enough for a change of recipe to swap
    two of them. The robust statement: the largest model beats the smallest by a clear margin (measured 0.26
    nats), and the fit found a falling law above a floor below every loss."""
    losses = [row["val_loss"] for row in model_sweep["rows"]]
    assert losses[-1] < losses[0] - 0.05, losses
    fit = model_sweep["fit"]
    assert fit["alpha"] > 0 and fit["a"] > 0 and 0 <= fit["c"] < min(losses)


def test_loss_falls_as_the_data_grows(data_sweep):
    losses = [row["val_loss"] for row in data_sweep["rows"]]
    tokens = [row["tokens"] for row in data_sweep["rows"]]
    assert tokens == sorted(tokens) and len(set(row["parameters"] for row in data_sweep["rows"])) == 1
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_achieved_flops_are_6ND_over_the_measured_seconds(model_sweep):
    for row in model_sweep["rows"]:
        assert row["achieved_gflops"] == pytest.approx(row["training_flops"] / row["train_seconds"] / 1e9)
        assert math.isfinite(row["achieved_gflops"]) and row["achieved_gflops"] > 0
