"""Chapter 2 experiments in fast mode (Q03, M06-M08).

Thresholds were calibrated once against full-size runs (`fast=False`, seed 0), recorded next to each
assertion; the fast runs use the same seeds, so they are deterministic on one machine.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.experiments import mlp
from tinygrad_llm.nn import Linear, Sequential

pytestmark = pytest.mark.mlp


@pytest.fixture(scope="module")
def linear_vs_relu():
    return mlp.linear_vs_relu(fast=True)


@pytest.fixture(scope="module")
def initialisation():
    return mlp.initialisation_comparison(fast=True)


@pytest.fixture(scope="module")
def char_lm():
    return mlp.char_mlp_language_model(fast=True)


# ---------------------------------------------------------------- M06: linear stacks collapse
def test_relu_beats_the_linear_stack_on_spirals_by_30_points(linear_vs_relu):
    # Calibration, full size (2,000 points, 1,000 steps): linear 0.42, ReLU 0.99 test accuracy.
    spirals = linear_vs_relu["spirals"]
    assert spirals["relu"]["test_acc"] - spirals["linear"]["test_acc"] >= 0.30, spirals
    assert spirals["relu"]["train_acc"] >= 0.9, spirals


def test_the_linear_stack_is_a_linear_classifier_on_xor(linear_vs_relu):
    # No line separates XOR's quadrants: a linear classifier stays near chance; the ReLU MLP solves it.
    xor = linear_vs_relu["xor"]
    assert xor["linear"]["test_acc"] <= 0.65, xor
    assert xor["relu"]["test_acc"] >= 0.95, xor


def test_least_squares_fit_to_xor_predicts_one_half(linear_vs_relu):
    fit = linear_vs_relu["xor_least_squares"]
    np.testing.assert_allclose(fit["corner_predictions"], 0.5, atol=1e-12)
    np.testing.assert_allclose(fit["corner_weights"], 0.0, atol=1e-12)
    assert abs(fit["prediction_mean"] - 0.5) < 0.02
    assert fit["prediction_min"] > 0.4 and fit["prediction_max"] < 0.6, fit


def test_the_trained_linear_stack_equals_its_product_matrix(linear_vs_relu):
    collapse = linear_vs_relu["collapse"]
    assert collapse["product_shape"] == [2, 3]
    assert collapse["max_abs_diff"] <= 1e-5 * max(1.0, collapse["max_abs_output"])


@given(
    widths=st.lists(st.integers(1, 12), min_size=2, max_size=5),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 8),
)
def test_any_linear_stack_equals_x_times_the_product_of_transposes_plus_b(widths, seed, batch):
    """M06: Linear(W3) o Linear(W2) o Linear(W1) (x) == x @ (W1^T W2^T W3^T) + b for every shape."""
    tgl.manual_seed(seed)
    stack = Sequential(*[Linear(a, b) for a, b in zip(widths, widths[1:])])
    x = np.random.default_rng(seed).standard_normal((batch, widths[0]))
    W, b = mlp.collapse_linear_stack(stack)
    assert W.shape == (widths[0], widths[-1])
    expected = x @ W + b
    received = stack(tgl.Tensor(x)).data  # float64 input: the whole stack runs in float64
    np.testing.assert_allclose(received, expected, rtol=1e-6, atol=1e-6)
    if len(stack) == 3:  # the explicit formula for three layers
        W1, W2, W3 = (layer.weight.data.astype(np.float64) for layer in stack.layers)
        np.testing.assert_allclose(W, W1.T @ W2.T @ W3.T, rtol=1e-12, atol=1e-12)


def test_the_collapse_check_catches_a_relu_stack():
    """The same weights with ReLU in between do not equal the product matrix: the nonlinearity matters."""
    tgl.manual_seed(0)
    with_relu = mlp.make_mlp(2, 16, 3, depth=3, activation=True)
    linear_layers = Sequential(*[layer for layer in with_relu.layers if isinstance(layer, Linear)])
    W, b = mlp.collapse_linear_stack(linear_layers)
    x = np.random.default_rng(0).standard_normal((64, 2)) * 3
    difference = np.abs(with_relu(tgl.Tensor(x)).data - (x @ W + b)).max()
    assert difference > 0.1
    with pytest.raises(ValueError, match="only Linear layers collapse"):
        mlp.collapse_linear_stack(with_relu)


# ---------------------------------------------------------------- M07: softmax overflow
def test_naive_softmax_overflow_gaps_per_dtype():
    gaps = mlp.softmax_overflow_gaps()
    assert 705 <= gaps["float64"]["integer_gap"] <= 712, gaps["float64"]
    assert 85 <= gaps["float32"]["integer_gap"] <= 92, gaps["float32"]
    assert 10 <= gaps["float16"]["integer_gap"] <= 13, gaps["float16"]
    for dtype, row in gaps.items():
        assert abs(row["exact_gap"] - row["log_max"]) < 0.01, (dtype, row)  # overflow is exp(g) > max float
        assert row["stable_finite"], dtype
        assert not np.isfinite(row["naive_at_gap"]).all(), dtype
        np.testing.assert_allclose(sum(row["stable_at_gap"]), 1.0, rtol=1e-3)


@given(
    rows=st.integers(1, 4), cols=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
    shift=st.floats(-1e4, 1e4),
)
def test_stable_softmax_is_the_naive_one_where_that_is_finite_and_shift_invariant(rows, cols, seed, shift):
    x = np.random.default_rng(seed).uniform(-20, 20, (rows, cols))
    stable = mlp.stable_softmax(x)
    np.testing.assert_allclose(stable, mlp.naive_softmax(x), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(stable.sum(axis=-1), 1.0, rtol=1e-12)
    shifted = mlp.stable_softmax(x + shift)
    assert np.isfinite(shifted).all()
    np.testing.assert_allclose(shifted, stable, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- M08: initialisation
def test_he_initialisation_starts_near_uniform_and_trains_faster(initialisation):
    normal, he = initialisation["normal"], initialisation["he"]
    # Calibration, full size: logit std 16.2 (N(0,1)) vs 0.51 (He); 90% after 331 vs 114 steps.
    assert normal["logit_std"] > 10 * he["logit_std"], (normal["logit_std"], he["logit_std"])
    assert normal["initial_loss"] > 3 * initialisation["uniform_loss"]
    assert abs(he["initial_loss"] - initialisation["uniform_loss"]) < 0.6
    assert he["steps_to_90"] is not None, he["steps_to_90"]
    assert normal["steps_to_90"] is None or normal["steps_to_90"] > 1.5 * he["steps_to_90"]


# ---------------------------------------------------------------- the character MLP language model
def test_char_mlp_lm_starts_at_ln_v_and_beats_it(char_lm):
    ln_v = math.log(char_lm["vocab_size"])
    assert char_lm["uniform_loss"] == pytest.approx(ln_v)
    assert abs(char_lm["initial_val_loss"] - ln_v) < 0.1, (char_lm["initial_val_loss"], ln_v)
    assert abs(char_lm["initial_train_loss"] - ln_v) < 0.1
    # Calibration: full size (whole corpus, 3,000 steps) val 1.49 nats vs ln V = 4.63; fast (20 kB, 300 steps) 2.32 vs 4.45.
    assert char_lm["val_loss"] < ln_v - 1.0, (char_lm["val_loss"], ln_v)
    assert char_lm["train_loss"] < ln_v - 1.0
    losses = [record["val_loss"] for record in char_lm["history"]]
    assert losses[-1] < losses[0]


def test_char_mlp_lm_samples_have_the_requested_length(char_lm):
    block = char_lm["config"]["mlp_window"]
    assert set(char_lm["samples"]) == {0.5, 1.0}
    for text in char_lm["samples"].values():
        assert len(text) == block + 200
