"""The chapter 13 exercises (log-uniform sampling under a divisibility constraint, the GP posterior mean, expected
improvement): the references agree with the library's own implementations, other correct styles pass, and classic
wrong answers are rejected by the property that names their bug, with a message that says why. The wrong answers are
real functions, named after the bug (spot-the-bug material).
"""

import math

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.tuning import SAMPLES

pytestmark = [pytest.mark.hpo, pytest.mark.exercises]

TUNING_EXERCISES = ["sample_constrained_configs", "gp_posterior_mean", "expected_improvement"]

# ---- sample_constrained_configs --------------------------------------------------------------------------


def _log_uniform(rng, low, high, n):
    return np.exp(rng.uniform(np.log(low), np.log(high), n))


def sample_lr_uniformly(n, lr_low, lr_high, head_choices, width_low, width_high, rng):
    _, heads, width = ex.get_exercise("sample_constrained_configs").reference(
        n, lr_low, lr_high, head_choices, width_low, width_high, rng)
    return rng.uniform(lr_low, lr_high, n), heads, width


def sample_width_rounded_to_a_multiple(n, lr_low, lr_high, head_choices, width_low, width_high, rng):
    lr, heads = _log_uniform(rng, lr_low, lr_high, n), rng.choice(np.asarray(head_choices), n)
    width = np.round(rng.integers(width_low, width_high + 1, n) / heads).astype(np.int64) * heads
    return lr, heads, width


def sample_width_rounded_then_clipped(n, lr_low, lr_high, head_choices, width_low, width_high, rng):
    lr, heads, width = sample_width_rounded_to_a_multiple(n, lr_low, lr_high, head_choices, width_low, width_high, rng)
    return lr, heads, np.clip(width, width_low, width_high)


def sample_width_always_the_smallest_multiple(n, lr_low, lr_high, head_choices, width_low, width_high, rng):
    lr, heads = _log_uniform(rng, lr_low, lr_high, n), rng.choice(np.asarray(head_choices), n)
    return lr, heads, -(-width_low // heads) * heads


# ---- gp_posterior_mean -----------------------------------------------------------------------------------

def _rbf(a, b, lengthscale, signal_variance, half=True):
    squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return signal_variance * np.exp(-squared / ((2 if half else 1) * lengthscale**2))


def gp_mean_without_the_noise(x_train, y_train, x_test, lengthscale, signal_variance, noise_variance):
    K = _rbf(x_train, x_train, lengthscale, signal_variance)
    return _rbf(x_test, x_train, lengthscale, signal_variance) @ np.linalg.solve(K + 1e-12 * np.eye(len(K)), y_train)


def gp_mean_with_K_not_its_inverse(x_train, y_train, x_test, lengthscale, signal_variance, noise_variance):
    K = _rbf(x_train, x_train, lengthscale, signal_variance) + noise_variance * np.eye(len(x_train))
    return _rbf(x_test, x_train, lengthscale, signal_variance) @ K @ y_train


def gp_mean_kernel_without_the_half(x_train, y_train, x_test, lengthscale, signal_variance, noise_variance):
    K = _rbf(x_train, x_train, lengthscale, signal_variance, half=False) + noise_variance * np.eye(len(x_train))
    return _rbf(x_test, x_train, lengthscale, signal_variance, half=False) @ np.linalg.solve(K, y_train)


# ---- expected_improvement --------------------------------------------------------------------------------

def _normal_cdf(z):
    return 0.5 * np.vectorize(math.erfc)(-z / math.sqrt(2))


def _normal_pdf(z):
    return np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


def ei_improvement_sign_flipped(mean, std, best):
    improvement = mean - best
    return improvement * _normal_cdf(improvement / std) + std * _normal_pdf(improvement / std)


def ei_without_the_pdf_term(mean, std, best):
    return (best - mean) * _normal_cdf((best - mean) / std)


def ei_pdf_term_without_the_std(mean, std, best):
    z = (best - mean) / std
    return (best - mean) * _normal_cdf(z) + _normal_pdf(z)


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("sample_constrained_configs", sample_lr_uniformly, "lr is log-uniform"),
    ("sample_constrained_configs", sample_width_rounded_to_a_multiple, "every draw is valid"),
    ("sample_constrained_configs", sample_width_rounded_then_clipped, "every draw is valid"),
    ("sample_constrained_configs", sample_width_always_the_smallest_multiple, "width uniform"),
    ("gp_posterior_mean", gp_mean_without_the_noise, "with noise"),
    ("gp_posterior_mean", gp_mean_with_K_not_its_inverse, "interpolates noiseless data"),
    ("gp_posterior_mean", gp_mean_kernel_without_the_half, "follows the RBF kernel"),
    ("expected_improvement", ei_improvement_sign_flipped, "falls as the mean rises"),
    ("expected_improvement", ei_without_the_pdf_term, "EI >= 0"),
    ("expected_improvement", ei_pdf_term_without_the_std, "EI >= 0"),
]


def test_the_tuning_exercises_are_registered_in_teaching_order():
    names = [name for name, _ in ex.list_exercises()]
    assert [name for name in names if name in TUNING_EXERCISES] == TUNING_EXERCISES
    assert names.index("logit_lens_readout") < names.index("sample_constrained_configs")  # after chapter 12
    assert names.index("expected_improvement") < names.index("online_softmax")  # before chapter 15


def test_every_tuning_exercise_has_at_least_two_wrong_answers():
    for name in TUNING_EXERCISES:
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# The reference, starter and wrong-answer checks run in tests/test_exercises.py over every registered exercise.


def test_failure_messages_teach_the_fix():
    expectations = [("sample_constrained_configs", sample_lr_uniformly, "9 times in 10"),
                    ("sample_constrained_configs", sample_width_rounded_then_clipped, "breaks divisibility"),
                    ("gp_posterior_mean", gp_mean_with_K_not_its_inverse, "do not multiply by it"),
                    ("expected_improvement", ei_improvement_sign_flipped, "best - f")]
    for name, wrong, phrase in expectations:
        assert phrase in str(ex.get_exercise(name).grade(wrong)), name


# ---- the references agree with the library ---------------------------------------------------------------

def test_the_library_search_space_passes_the_sampling_grader():
    """LogUniform, Categorical and MultipleOf, drawn through SearchSpace.sample, in the exercise's signature: the
    library's sampler has the distribution the grader asks for, and never breaks the constraint."""
    from tinygrad_llm.tuning.search_space import Categorical, LogUniform, MultipleOf, SearchSpace

    def library_sampler(n, lr_low, lr_high, head_choices, width_low, width_high, rng):
        space = SearchSpace({"lr": LogUniform(lr_low, lr_high), "heads": Categorical(head_choices),
                             "width": MultipleOf("heads", width_low, width_high)})
        configs = [space.sample(rng) for _ in range(n)]
        return tuple(np.array([config[name] for config in configs]) for name in ("lr", "heads", "width"))

    for drawn in ({"n": SAMPLES, "lr_low": 1e-5, "lr_high": 1e-2, "head_choices": [2, 3, 4], "width_low": 10,
                   "width_high": 40, "seed": 0},
                  {"n": SAMPLES, "lr_low": 1e-6, "lr_high": 1e-4, "head_choices": [6], "width_low": 7, "width_high": 50,
                   "seed": 1}):
        for check in ex.get_exercise("sample_constrained_configs").checks:  # each raises PropertyFailed if it fails
            check.verify(library_sampler, drawn)


def test_log_uniform_reference_puts_a_third_above_1e_minus_3_where_uniform_puts_0_9009():
    reference = ex.get_exercise("sample_constrained_configs").reference
    lr, heads, width = reference(20000, 1e-5, 1e-2, [2, 4, 6], 16, 128, np.random.default_rng(0))
    assert np.mean(lr > 1e-3) == pytest.approx(1 / 3, abs=0.02)
    assert np.median(lr) == pytest.approx(math.sqrt(1e-5 * 1e-2), rel=0.05)
    assert np.all(width % heads == 0) and width.min() >= 16 and width.max() <= 128
    assert (1e-2 - 1e-3) / (1e-2 - 1e-5) == pytest.approx(0.9009, abs=1e-4)  # the uniform draw's share, exactly


def test_gp_mean_reference_equals_the_library_gaussian_process_with_fixed_hyperparameters():
    """With inputs in the unit cube (input_bounds = [0, 1]) and standardised targets the library's normalisation is
    the identity, so its posterior mean is the exercise's formula."""
    from tinygrad_llm.tuning.gaussian_process import GaussianProcess, Hyperparameters
    reference = ex.get_exercise("gp_posterior_mean").reference
    rng = np.random.default_rng(0)
    settings = [(1, 0.3, 1.0, 1e-3), (2, 0.5, 2.0, 0.1), (3, 1.0, 0.5, 0.5)]  # (d, lengthscale, signal, noise)
    for d, lengthscale, signal_variance, noise_variance in settings:
        x, x_test = rng.random((8, d)), rng.random((5, d))
        y = rng.normal(size=8)
        y = (y - y.mean()) / y.std()
        hyperparameters = Hyperparameters(np.full(d, lengthscale), signal_variance, noise_variance)
        gp = GaussianProcess("rbf", hyperparameters, input_bounds=(np.zeros(d), np.ones(d))).fit(x, y, optimise=False)
        library_mean, _ = gp.predict(x_test)
        np.testing.assert_allclose(reference(x, y, x_test, lengthscale, signal_variance, noise_variance),
                                   library_mean, rtol=1e-8, atol=1e-10)


def test_ei_reference_equals_the_library_and_is_never_negative():
    from tinygrad_llm.tuning.acquisition import expected_improvement
    reference = ex.get_exercise("expected_improvement").reference
    rng = np.random.default_rng(0)
    mean, std = rng.normal(0, 5, 200), rng.uniform(0.01, 2, 200)
    ei = reference(mean, std, 0.5)
    np.testing.assert_allclose(ei, expected_improvement(mean, std, 0.5), rtol=1e-12, atol=1e-300)
    assert np.all(ei >= 0)


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """Widths by rejection (redraw until divisible), the GP through a Cholesky factor, EI through 1 + erf."""
    def sample_by_rejection(n, lr_low, lr_high, head_choices, width_low, width_high, rng):
        lr = 10 ** rng.uniform(math.log10(lr_low), math.log10(lr_high), n)
        heads = rng.choice(head_choices, n)
        width = rng.integers(width_low, width_high + 1, n)
        rejected = width % heads != 0
        while rejected.any():
            width[rejected] = rng.integers(width_low, width_high + 1, rejected.sum())
            rejected = width % heads != 0
        return lr, heads, width

    def gp_by_cholesky(x_train, y_train, x_test, lengthscale, signal_variance, noise_variance):
        def k(a, b):
            return signal_variance * np.exp(-0.5 * ((a[:, None] - b[None]) ** 2).sum(-1) / lengthscale**2)
        L = np.linalg.cholesky(k(x_train, x_train) + noise_variance * np.eye(len(y_train)))
        return k(x_test, x_train) @ np.linalg.solve(L.T, np.linalg.solve(L, y_train))

    def ei_with_erf(mean, std, best):
        z = (best - mean) / std
        cdf = np.array([(1 + math.erf(value / math.sqrt(2))) / 2 for value in z])
        return std * (z * cdf + np.exp(-z**2 / 2) / math.sqrt(2 * math.pi))

    for name, function in (("sample_constrained_configs", sample_by_rejection), ("gp_posterior_mean", gp_by_cholesky),
                           ("expected_improvement", ei_with_erf)):
        result = ex.get_exercise(name).grade(function)
        assert result, f"{function.__name__}: {result}"
