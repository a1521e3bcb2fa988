"""Learning checks for Gaussian-process Bayesian optimisation (Q34): kernels are symmetric positive semi-definite,
the GP interpolates noiseless data (its posterior variance vanishes at observed points), posterior variances lie
between 0 and the prior variance, the Cholesky log marginal likelihood equals the dense formula, expected
improvement is >= 0, exact where the GP is certain, falls as the mean rises and equals its Monte Carlo estimate,
and BO on Branin beats random search on the same budget. The EI checks also run against the broken EI in
tests/broken_acquisition.py and must catch it, and BO driven by it must do worse than random search."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from tinygrad_llm.tuning import bayesian_optimisation as bo_module
from tinygrad_llm.tuning.acquisition import expected_improvement, lower_confidence_bound, upper_confidence_bound
from tinygrad_llm.tuning.bayesian_optimisation import bayesian_optimisation
from tinygrad_llm.tuning.gaussian_process import (KERNELS, GaussianProcess, Hyperparameters, log_marginal_likelihood,
                                                  maximise_log_marginal_likelihood)
from tinygrad_llm.tuning.benchmark_functions import BRANIN_MINIMUM, branin, forrester, with_gaussian_noise

import broken_acquisition as broken

pytestmark = pytest.mark.hpo

# A failing example is reported as drawn: every example already fails the broken EI, and shrinking cost seconds.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)
kernels = st.sampled_from(sorted(KERNELS))


@st.composite
def grid_points(draw, max_points=10):
    """n distinct nodes of the grid {0, 1/4, .., 1}^d: at least 1/4 apart, so a tiny-noise covariance stays well
    conditioned and interpolation can be checked to a tight tolerance."""
    dimension = draw(st.integers(1, 3))
    nodes = list(itertools.product(np.linspace(0, 1, 5), repeat=dimension))
    chosen = draw(st.lists(st.sampled_from(nodes), min_size=2, max_size=min(max_points, len(nodes)), unique=True))
    return np.array(chosen)


@st.composite
def hyperparameters(draw, dimension, noise=None):
    lengthscales = draw(st.lists(st.floats(0.1, 0.5), min_size=dimension, max_size=dimension))
    noise_variance = noise if noise is not None else draw(st.floats(1e-4, 1.0))
    return Hyperparameters(np.array(lengthscales), draw(st.floats(0.5, 2.0)), noise_variance)


def targets(seed, n):
    rng = np.random.default_rng(seed)
    return rng.normal(rng.uniform(-50, 50), rng.uniform(0.1, 30), n)


# ------------------------------------------------------------------ kernels and the GP
@given(kernels, grid_points(), st.data())
def test_kernels_are_symmetric_positive_semidefinite(kernel, points, data):
    h = data.draw(hyperparameters(points.shape[1]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = np.vstack([points, rng.random(points.shape)])  # grid nodes and arbitrary points, near-duplicates allowed
    covariance = KERNELS[kernel](x, x, h.lengthscales, h.signal_variance)
    np.testing.assert_array_equal(covariance, covariance.T)
    np.testing.assert_allclose(np.diag(covariance), h.signal_variance)  # k(x, x) is the prior variance
    assert np.all(np.abs(covariance) <= h.signal_variance * (1 + 1e-12))
    assert np.linalg.eigvalsh(covariance).min() >= -1e-10 * len(x) * h.signal_variance


@given(kernels, grid_points(), st.integers(0, 2**16), st.data())
def test_gp_interpolates_noiseless_data(kernel, x, seed, data):
    y = targets(seed, len(x))
    gp = GaussianProcess(kernel, data.draw(hyperparameters(x.shape[1], noise=1e-10))).fit(x, y, optimise=False)
    mean, variance = gp.predict(x)
    np.testing.assert_allclose(mean, y, rtol=0, atol=1e-5 * (y.std() + 1))
    assert np.all(variance <= 1e-6 * gp.prior_variance)


@given(kernels, grid_points(), st.integers(0, 2**16), st.data())
def test_posterior_variance_lies_between_zero_and_the_prior_variance(kernel, x, seed, data):
    rng = np.random.default_rng(seed)
    h = data.draw(hyperparameters(x.shape[1]))
    gp = GaussianProcess(kernel, h).fit(x, targets(seed, len(x)), optimise=False)
    queries = np.vstack([x, rng.uniform(-0.5, 1.5, (50, x.shape[1]))])  # observed, between and beyond the data
    _, variance = gp.predict(queries)
    assert np.all(variance >= 0) and np.all(variance <= gp.prior_variance * (1 + 1e-12))
    _, noisy_variance = gp.predict(queries, include_noise=True)  # a new observation: f's variance plus the noise
    np.testing.assert_allclose(noisy_variance, variance + gp.noise_variance)


@given(kernels, grid_points(), st.integers(0, 2**16), st.floats(0.1, 100), st.floats(-100, 100), st.data())
def test_predictions_do_not_depend_on_the_units_of_inputs_or_targets(kernel, x, seed, scale, shift, data):
    """Inputs are rescaled to [0, 1] and targets standardised before fitting, so fitting a*y + b at c*x + s gives
    the mean a*m + b and the variance a^2 v: hyperparameters mean the same on every problem."""
    assume(np.all(np.ptp(x, axis=0) > 0))  # an axis with one value has no range to rescale by
    h = data.draw(hyperparameters(x.shape[1]))
    y = targets(seed, len(x))
    queries = np.random.default_rng(seed).random((20, x.shape[1]))
    mean, variance = GaussianProcess(kernel, h).fit(x, y, optimise=False).predict(queries)
    moved = GaussianProcess(kernel, h).fit(scale * x + shift, -scale * y + shift, optimise=False)
    moved_mean, moved_variance = moved.predict(scale * queries + shift)
    np.testing.assert_allclose(moved_mean, -scale * mean + shift, rtol=1e-6, atol=1e-6 * scale * (y.std() + 1))
    np.testing.assert_allclose(moved_variance, scale**2 * variance, rtol=1e-6, atol=1e-9 * scale**2 * y.var())


@given(kernels, grid_points(max_points=8), st.integers(0, 2**16), st.data())
def test_log_marginal_likelihood_equals_the_dense_formula(kernel, x, seed, data):
    h = data.draw(hyperparameters(x.shape[1]))
    y = np.random.default_rng(seed).standard_normal(len(x))
    covariance = KERNELS[kernel](x, x, h.lengthscales, h.signal_variance) + h.noise_variance * np.eye(len(x))
    sign, log_det = np.linalg.slogdet(covariance)
    dense = -0.5 * y @ np.linalg.inv(covariance) @ y - 0.5 * log_det - 0.5 * len(x) * math.log(2 * math.pi)
    assert sign == 1
    assert log_marginal_likelihood(x, y, kernel, h) == pytest.approx(dense, rel=1e-8, abs=1e-8)


@given(kernels, grid_points(), st.integers(0, 2**16), st.data())
@settings(max_examples=10)
def test_maximised_likelihood_is_at_least_the_starting_one(kernel, x, seed, data):
    y = np.random.default_rng(seed).standard_normal(len(x))
    start = data.draw(hyperparameters(x.shape[1]))
    found = maximise_log_marginal_likelihood(x, y, kernel, np.random.default_rng(seed), restarts=1, starts=[start])
    assert log_marginal_likelihood(x, y, kernel, found) >= log_marginal_likelihood(x, y, kernel, start)


def test_gp_learns_the_noise_of_a_noisy_objective():
    """Forrester plus N(0, 0.5^2) noise at 40 points: the fitted noise variance (in the targets' units) is the
    right size, neither interpolating the noise (~0) nor calling everything noise (~ the data's variance)."""
    x = np.random.default_rng(0).random((40, 1))
    y = with_gaussian_noise(forrester, 0.5, seed=1)(x)
    gp = GaussianProcess("matern52", seed=0).fit(x, y)
    assert 0.25 / 4 < gp.noise_variance < 0.25 * 4 < y.var()  # within a factor 4 (0.14 to 0.42 on seeds 0-7)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown kernel"):
        GaussianProcess("gaussian")
    with pytest.raises(ValueError, match=r"x must be \(n, d\)"):
        GaussianProcess().fit(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="optimise=False needs Hyperparameters"):
        GaussianProcess().fit(np.zeros((3, 2)), np.zeros(3), optimise=False)
    with pytest.raises(ValueError, match="tiny noise_variance"):
        Hyperparameters(np.ones(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="std must be finite and >= 0"):
        expected_improvement(np.zeros(2), -np.ones(2), 0.0)


# ------------------------------------------------------------------ acquisition functions
finite = st.floats(-100, 100)
stds = st.floats(0.01, 50)
margins = st.floats(0, 1)


def check_ei_is_exact_where_the_gp_is_certain(ei):
    """std = 0: f is known to be `mean`, so EI = max(best - xi - mean, 0), and 0 where mean >= best."""
    @given(st.lists(finite, min_size=1, max_size=20), finite, margins)
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def certain(means, best, xi):
        means = np.array(means + [best, best + 1.0])
        np.testing.assert_allclose(ei(means, np.zeros_like(means), best, xi), np.maximum(best - xi - means, 0.0))

    certain()


def check_ei_falls_as_the_mean_rises(ei):
    """A lower predicted loss is worth more at the same uncertainty: dEI/dmean = -Phi(z) < 0."""
    @given(finite, stds, st.floats(-2, 2), margins)
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def monotone(best, std, offset_in_stds, xi_in_stds):
        # Means within a few std of the best, where Phi(z) is far from rounding to 0 or 1 and EI is strictly falling.
        means = best + (offset_in_stds + np.linspace(-2, 2, 9)) * std
        values = ei(means, np.full_like(means, std), best, xi_in_stds * std)
        assert np.all(np.diff(values) < 0)

    monotone()


def check_ei_equals_its_monte_carlo_estimate(ei):
    """EI is the expectation E[max(best - xi - f, 0)] with f ~ N(mean, std^2): sample it."""
    @given(finite, stds, st.floats(-2, 3), margins, st.integers(0, 2**16))
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def monte_carlo(mean, std, best_in_stds, xi_in_stds, seed):
        # best - xi at least 3 std below the mean: about 135 of the samples still improve, enough to estimate.
        best, xi = mean + best_in_stds * std, xi_in_stds * std
        samples = np.maximum(best - xi - (mean + std * np.random.default_rng(seed).standard_normal(100_000)), 0.0)
        standard_error = samples.std() / math.sqrt(len(samples))
        assert abs(ei(np.array([mean]), np.array([std]), best, xi)[0] - samples.mean()) <= 5 * standard_error + 1e-12

    monte_carlo()


EI_CHECKS = [check_ei_is_exact_where_the_gp_is_certain, check_ei_falls_as_the_mean_rises,
             check_ei_equals_its_monte_carlo_estimate]


@pytest.mark.parametrize("check", EI_CHECKS, ids=lambda check: check.__name__)
def test_expected_improvement(check):
    check(expected_improvement)


@pytest.mark.broken
@pytest.mark.parametrize("check", EI_CHECKS, ids=lambda check: check.__name__)
def test_checks_catch_ei_with_a_flipped_sign(check):
    with pytest.raises(AssertionError):
        check(broken.expected_improvement_with_flipped_sign)


@given(st.lists(st.tuples(finite, st.floats(0, 1e3)), min_size=1, max_size=30), finite, margins)
def test_expected_improvement_is_never_negative(pairs, best, xi):
    """(The flipped-sign EI passes this too: it is the EI of maximisation, also >= 0. Hence the checks above.)"""
    means, std = np.array(pairs).T
    assert np.all(expected_improvement(means, std, best, xi) >= 0)


@given(st.lists(st.tuples(finite, st.floats(0, 1e3)), min_size=1, max_size=30), st.floats(0, 5))
def test_confidence_bounds_bracket_the_mean_and_mirror_each_other(pairs, kappa):
    means, std = np.array(pairs).T
    lower, upper = lower_confidence_bound(means, std, kappa), upper_confidence_bound(means, std, kappa)
    assert np.all(lower <= means) and np.all(means <= upper)
    np.testing.assert_array_equal(lower, -upper_confidence_bound(-means, std, kappa))


# ------------------------------------------------------------------ the optimisation loop
BUDGET = 25


def random_search_regrets(repeats, seed):
    rng = np.random.default_rng(seed)
    return np.array([branin(rng.random((BUDGET, 2))).min() - BRANIN_MINIMUM for _ in range(repeats)])


@pytest.mark.parametrize("seed", [0, 1])
def test_bo_on_branin_beats_the_median_random_search(seed):
    """25 evaluations: BO's simple regret is below random search's median over 21 runs. The margin is wide (on
    these seeds BO lands within ~0.05 of the minimum, random search's median is ~1.4), so only the order is
    asserted."""
    history = bayesian_optimisation(branin, 2, BUDGET, initial_points=5, seed=seed)
    assert len(history.evaluations) == BUDGET
    assert [evaluation.proposed_by for evaluation in history.evaluations] == ["initial"] * 5 + ["ei"] * (BUDGET - 5)
    assert all(np.all((0 <= evaluation.point) & (evaluation.point <= 1)) for evaluation in history.evaluations)
    np.testing.assert_array_equal(history.best_so_far(), np.minimum.accumulate(history.values()))
    assert history.best_evaluation.value == history.best_so_far()[-1]
    assert history.best_so_far()[-1] - BRANIN_MINIMUM < np.median(random_search_regrets(21, seed))


@pytest.mark.broken
def test_bo_driven_by_ei_with_a_flipped_sign_does_no_better_than_random_search(monkeypatch):
    """It seeks points predicted to be worse: its regret was 18 and 25 on seeds 0 and 1, far above random's ~1.4."""
    monkeypatch.setattr(bo_module, "expected_improvement", broken.expected_improvement_with_flipped_sign)
    history = bayesian_optimisation(branin, 2, BUDGET, initial_points=5, seed=0)
    assert history.best_so_far()[-1] - BRANIN_MINIMUM > np.median(random_search_regrets(21, 0))


@pytest.mark.parametrize("seed", [0, 1])
def test_bo_with_lcb_on_a_noisy_objective_finds_the_deeper_minimum(seed):
    """Forrester has a shallow local minimum near x = 0.14 (f ~ -1) and the global one near 0.757 (f ~ -6.02).
    With noise of std 0.5 and 20 evaluations, BO's best observation lies in the global basin (it did for all
    of seeds 0-7 with LCB; EI missed it once in eight, so it is not asserted)."""
    noisy_forrester = with_gaussian_noise(forrester, 0.5, seed=seed + 3)
    history = bayesian_optimisation(noisy_forrester, 1, 20, initial_points=4, acquisition="lcb", seed=seed)
    assert abs(history.best_evaluation.point[0] - 0.757) < 0.1
