"""Exercises on hyperparameter search (chapter 13): drawing configurations on the right scale under a constraint, the
Gaussian-process posterior mean, and expected improvement.

Randomness enters as a seeded generator, so every grade is repeatable; the sampler is graded on thousands of draws
with tests whose bars a correct sampler essentially never reaches. Each reference below is the solution a learner
sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .pretraining import grid_arrays, grid_numbers

# ---- sample_constrained_configs --------------------------------------------------------------------------


def sample_constrained_configs(n: int, lr_low: float, lr_high: float, head_choices: list, width_low: int,
                               width_high: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw n configurations (learning rate, number of heads, width) for random search.

    The learning rate is log-uniform on [lr_low, lr_high]: its logarithm is uniform, so every decade gets the same
    share of the draws. The number of heads is uniform over head_choices (positive ints, each with at least one
    multiple in [width_low, width_high]). The width is uniform over the multiples of the drawn number of heads in
    [width_low, width_high], so every width splits evenly into heads. rng (a np.random.Generator) is the only
    source of randomness. Returns (lr float64, heads int, width int), three (n,) arrays.
    """
    lr = np.exp(rng.uniform(np.log(lr_low), np.log(lr_high), n))
    heads = rng.choice(np.asarray(head_choices), n)
    first = -(-width_low // heads) * heads  # the smallest multiple of heads >= width_low
    count = width_high // heads - first // heads + 1
    return lr, heads, first + heads * rng.integers(0, count)


SAMPLES = 2000  # draws per graded example: enough to see a distribution off by a few percent


@st.composite
def sampling_inputs(draw) -> dict:
    """A learning-rate range of 2 to 4 whole decades below 1e-2, 1 to 3 head counts from {1, 2, 3, 4, 6, 8}, a width
    range of 8 to 40 starting between 4 and 40 (so every head count has a multiple in it), and a seed."""
    top = draw(st.integers(-4, -2))
    decades = draw(st.integers(2, 4))
    head_choices = sorted(draw(st.sets(st.sampled_from([1, 2, 3, 4, 6, 8]), min_size=1, max_size=3)))
    width_low = draw(st.integers(4, 40))
    return {"n": SAMPLES, "lr_low": 10.0 ** (top - decades), "lr_high": 10.0 ** top, "head_choices": head_choices,
            "width_low": width_low, "width_high": width_low + draw(st.integers(8, 40)),
            "seed": draw(st.integers(0, 2**16))}


def _arguments(drawn: dict) -> dict:
    arguments = {key: value for key, value in drawn.items() if key != "seed"}
    return {**arguments, "rng": np.random.default_rng(drawn["seed"])}


def _shown(drawn: dict) -> dict:
    """The arguments as a failure message shows them."""
    return {**_arguments(drawn), "rng": f"np.random.default_rng({drawn['seed']})"}


SAMPLING_SHAPES = "returns (lr float64, heads int, width int), three (n,) arrays"
SAMPLING_VALID = ("every draw is valid (M55): lr in [lr_low, lr_high], heads one of head_choices, width in "
                  "[width_low, width_high] AND a multiple of heads")
SAMPLING_LOG_UNIFORM = ("lr is log-uniform: every decade gets the same share and the median is the geometric mean "
                        "sqrt(lr_low * lr_high) (Kolmogorov-Smirnov test of log lr against uniform)")
SAMPLING_UNIFORM_WIDTH = ("heads is uniform over head_choices and width uniform over the allowed multiples (chi-square "
                          "test)")


def _draws(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    received = call_learner(learner, _arguments(drawn), name)
    expected = sample_constrained_configs(**_arguments(drawn))
    expect_close(SAMPLING_SHAPES, _shown(drawn), expected, received, None, None, ("lr", "heads", "width"))
    lr, heads, width = (np.asarray(part) for part in received)
    if heads.dtype.kind not in "iu" or width.dtype.kind not in "iu":
        raise PropertyFailed(SAMPLING_SHAPES, _shown(drawn), "integer heads and width",
                             {"heads dtype": str(heads.dtype), "width dtype": str(width.dtype)},
                             "a number of heads and a width are counts: return integer arrays")
    return lr, heads, width


def _returns_three_arrays(learner, drawn: dict) -> None:
    _draws(learner, drawn, SAMPLING_SHAPES)


def _every_draw_is_valid(learner, drawn: dict) -> None:
    lr, heads, width = _draws(learner, drawn, SAMPLING_VALID)
    valid = ((lr >= drawn["lr_low"]) & (lr <= drawn["lr_high"]) & np.isin(heads, drawn["head_choices"])
             & (width >= drawn["width_low"]) & (width <= drawn["width_high"]) & (width % np.maximum(heads, 1) == 0))
    if not np.all(valid):
        bad = int(np.argmin(valid))
        raise PropertyFailed(SAMPLING_VALID, _shown(drawn), "every draw valid",
                             {f"draw {bad}": {"lr": float(lr[bad]), "heads": int(heads[bad]), "width": int(width[bad])},
                              "invalid draws": int(np.sum(~valid))},
                             "rounding a width to the nearest multiple of heads can leave the range, and clipping it "
                             "back in breaks divisibility (M55). Draw among the allowed values only: the multiples "
                             "of heads from ceil(width_low / heads) * heads to floor(width_high / heads) * heads")


def _lr_is_log_uniform(learner, drawn: dict) -> None:
    lr, _, _ = _draws(learner, drawn, SAMPLING_LOG_UNIFORM)
    low, high = drawn["lr_low"], drawn["lr_high"]
    with np.errstate(all="ignore"):
        position = np.sort(np.log(lr / low) / math.log(high / low))  # uniform on [0, 1] when lr is log-uniform
    n = len(position)
    distance = float(np.max(np.maximum(np.arange(1, n + 1) / n - position, position - np.arange(n) / n)))
    bar = 2.5 / math.sqrt(n)  # a correct sampler exceeds it with probability about 1e-5
    if not distance < bar:
        top_decade = f"fraction above {high / 10:g}"
        raise PropertyFailed(SAMPLING_LOG_UNIFORM, _shown(drawn),
                             {"median": math.sqrt(low * high), top_decade: round(1 / math.log10(high / low), 3)},
                             {"median": float(np.median(lr)), top_decade: float(np.mean(lr > high / 10))},
                             f"the largest gap between the distribution of log(lr) and a uniform one is {distance:.3f} "
                             f"(bar {bar:.3f}). A learning rate drawn uniformly on [{low:g}, {high:g}] lands in the "
                             "top decade 9 times in 10, so the small rates are never tried: draw u uniform between "
                             "log(lr_low) and log(lr_high) and return exp(u) (M55)")


def _width_is_uniform(learner, drawn: dict) -> None:
    _, heads, width = _draws(learner, drawn, SAMPLING_UNIFORM_WIDTH)
    expected, observed = [], []
    for choice in drawn["head_choices"]:
        multiples = np.arange(-(-drawn["width_low"] // choice) * choice, drawn["width_high"] + 1, choice)
        expected += [len(heads) / len(drawn["head_choices"]) / len(multiples)] * len(multiples)
        observed += [int(np.sum((heads == choice) & (width == multiple))) for multiple in multiples]
    expected, observed = np.array(expected), np.array(observed)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    cells = len(expected)
    bar = (cells - 1) + 6 * math.sqrt(2 * (cells - 1)) + 10  # the chi-square mean + 6 standard deviations + 10
    if not statistic < bar:
        counts = "draws per (heads, width)"
        raise PropertyFailed(SAMPLING_UNIFORM_WIDTH, _shown(drawn), {counts: np.round(expected, 1)}, {counts: observed},
                             f"chi-square {statistic:.1f} > {bar:.1f}: draw heads uniformly from head_choices, then "
                             "the width uniformly among the multiples of heads in the range (each equally often)")


# ---- gp_posterior_mean -----------------------------------------------------------------------------------


def gp_posterior_mean(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, lengthscale: float,
                      signal_variance: float, noise_variance: float) -> np.ndarray:
    """The posterior mean of a zero-mean Gaussian process with an RBF kernel, at the test inputs.

    x_train (n, d) and y_train (n,) are the observations, y = f(x) + noise with noise ~ N(0, noise_variance);
    x_test (m, d). The kernel is k(a, b) = signal_variance * exp(-||a - b||^2 / (2 lengthscale^2)). Returns the (m,)
    mean k(X*, X) (K + noise_variance I)^-1 y, where K = k(X, X) and k(X*, X) is (m, n).
    """
    def kernel(a, b):
        squared_distances = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
        return signal_variance * np.exp(-squared_distances / (2 * lengthscale**2))

    covariance = kernel(x_train, x_train) + noise_variance * np.eye(len(x_train))
    return kernel(x_test, x_train) @ np.linalg.solve(covariance, y_train)


@st.composite
def gp_inputs(draw, noiseless: bool = False, test_at_training_points: bool = False) -> dict:
    """1 to 4 distinct training points and 1 to 4 test points in d = 1 or 2 on a grid of 0.5 in +-2, targets on a
    grid of 0.5 in +-3, lengthscale and signal variance from {0.5, 1, 2} and noise variance 0.1 to 1. With
    `noiseless`, the training points are at least 1 apart, the lengthscale is 0.25 or 0.5 and the noise variance
    1e-10 (so K is well conditioned and the GP interpolates). With `test_at_training_points`, x_test = x_train."""
    d, n = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    cells = st.tuples(*[grid_numbers(-2, 2, 1.0 if noiseless else 0.5)] * d)
    x_train = np.array(draw(st.lists(cells, min_size=n, max_size=n, unique=True)), dtype=np.float64)
    x_test = x_train.copy() if test_at_training_points else draw(grid_arrays((draw(st.integers(1, 4)), d), -2, 2))
    return {"x_train": x_train, "y_train": draw(grid_arrays(n, -3, 3)), "x_test": x_test,
            "lengthscale": draw(st.sampled_from([0.25, 0.5] if noiseless else [0.5, 1.0, 2.0])),
            "signal_variance": draw(st.sampled_from([0.5, 1.0, 2.0])),
            "noise_variance": 1e-10 if noiseless else draw(grid_numbers(0.1, 1.0, 0.1))}


GP_SHAPES = "returns the posterior mean at each test input, an (m,) float64 array"
GP_INTERPOLATES = ("interpolates noiseless data: with noise_variance 1e-10 the mean at the training inputs is y_train "
                   "(the data are believed exactly)")
GP_KERNEL = ("between noiseless observations the mean follows the RBF kernel: "
             "signal_variance * exp(-||a - b||^2 / (2 lengthscale^2))")
GP_NOISE = ("with noise, the mean at the training inputs is pulled towards the prior mean 0: it matches "
            "k(X*, X) (K + noise_variance I)^-1 y")


def _interpolates(learner, drawn: dict) -> None:
    mean = call_learner(learner, drawn, GP_INTERPOLATES)
    expect_close(GP_INTERPOLATES, drawn, gp_posterior_mean(**drawn), mean, None, None)
    if not np.allclose(mean, drawn["y_train"], rtol=0, atol=1e-6):
        raise PropertyFailed(GP_INTERPOLATES, drawn, drawn["y_train"], mean,
                             "at a training input k(X*, X) = K, so K (K + tiny I)^-1 y = y. The weights of the "
                             "observations are (K + noise_variance I)^-1 y: solve with that matrix "
                             "(np.linalg.solve), do not multiply by it")


def _noise_on_the_diagonal(learner, drawn: dict) -> None:
    mean, expected = call_learner(learner, drawn, GP_NOISE), gp_posterior_mean(**drawn)
    expect_close(GP_NOISE, drawn, expected, mean, None, None)
    if not np.allclose(mean, expected, rtol=1e-7, atol=1e-9):
        raise PropertyFailed(GP_NOISE, drawn, expected, mean,
                             "noisy observations are not believed exactly, so the mean at a training input lies "
                             "between y and the prior mean 0. The noise variance goes on the diagonal of the "
                             "training covariance, K + noise_variance I, and nowhere else")


# ---- expected_improvement --------------------------------------------------------------------------------


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement over the best value so far, for minimisation, where f ~ N(mean, std^2).

    mean and std (n,) float64 with std > 0: the GP's belief at n candidates; best: the lowest value observed.
    Returns EI (n,) = E[max(best - f, 0)] = I Phi(z) + std phi(z), with I = best - mean and z = I / std, where
    Phi and phi are the standard normal CDF and density.
    """
    from math import erfc  # NumPy has no erfc; math's takes one float at a time, hence np.vectorize

    improvement = best - mean
    z = improvement / std
    cdf = 0.5 * np.vectorize(erfc)(-z / np.sqrt(2))  # erfc, not 1 + erf: it keeps its precision far in the left tail
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return improvement * cdf + std * pdf


@st.composite
def ei_inputs(draw, shift: bool = False) -> dict:
    """1 to 5 candidates with means in +-3, stds from 0.25 to 3 (multiples of 0.25) and best in +-2. With `shift`,
    also a positive amount to raise the means or the stds by."""
    n = draw(st.integers(1, 5))
    drawn = {"mean": draw(grid_arrays(n, -3, 3)), "std": draw(grid_arrays(n, 0.25, 3, step=0.25)),
             "best": draw(grid_numbers(-2, 2, 0.5))}
    if shift:
        drawn["shift"] = draw(grid_numbers(0.25, 2, 0.25))
    return drawn


EI_SHAPES = "returns EI at each candidate, an (n,) float64 array"
EI_NONNEGATIVE = "EI >= 0: an evaluation either improves on best or does not; it cannot count as negative progress"
EI_LOWER_MEAN = "a lower mean is worth more: EI falls as the mean rises (we are minimising)"
EI_MATCHES = "matches I Phi(z) + std phi(z) with I = best - mean, z = I / std"


def _ei_without_shift(drawn: dict) -> dict:
    return {key: value for key, value in drawn.items() if key != "shift"}


def _nonnegative(learner, drawn: dict) -> None:
    ei = call_learner(learner, drawn, EI_NONNEGATIVE)
    expect_close(EI_NONNEGATIVE, drawn, expected_improvement(**drawn), ei, None, None)
    if not np.all(ei >= 0):
        raise PropertyFailed(EI_NONNEGATIVE, drawn, "EI >= 0 everywhere", {"EI": ei},
                             "max(best - f, 0) is never negative, so neither is its expectation. I Phi(z) is "
                             "negative when the mean is above best; the second term, std times phi(z), is the value "
                             "of the chance that f still lands below best, and exactly makes up for it")


def _falls_as_the_mean_rises(learner, drawn: dict) -> None:
    arguments = _ei_without_shift(drawn)
    raised = {**arguments, "mean": arguments["mean"] + drawn["shift"]}
    before, after = (call_learner(learner, inputs, EI_LOWER_MEAN) for inputs in (arguments, raised))
    for output in (before, after):
        expect_close(EI_LOWER_MEAN, drawn, expected_improvement(**arguments), output, None, None)
    if not np.all(after <= before * (1 + 1e-9) + 1e-12):
        raise PropertyFailed(EI_LOWER_MEAN, drawn, {"EI at mean + shift": f"at most {before.tolist()}"},
                             {"EI at mean": before, "EI at mean + shift": after},
                             "the improvement of a minimisation is best - f: it is large when f is LOW. With "
                             "f - best the acquisition chases the highest losses")


# ---- the exercises ---------------------------------------------------------------------------------------

SAMPLE_CONSTRAINED_CONFIGS = Exercise(
    name="sample_constrained_configs",
    title="Random search on the right scale: log-uniform learning rates and widths divisible by heads (Q34, M55)",
    statement=(
        "A random search over (learning rate, heads, width) draws configurations; two habits spoil it (M55). A\n"
        "learning rate drawn uniformly on [1e-5, 1e-2] is above 1e-3 nine times in ten, so the small rates are\n"
        "hardly ever tried: draw it log-uniform (each decade equally often; the median is sqrt(low * high)). And a\n"
        "width must split evenly into heads: rounding a drawn width to a multiple of heads can leave the range,\n"
        "and clipping it back breaks divisibility. Draw heads uniformly from head_choices, then the width\n"
        "uniformly among the multiples of heads in [width_low, width_high]. Return (lr, heads, width), (n,) arrays."
    ),
    reference=sample_constrained_configs,
    hints=(
        "rng.uniform(a, b, n) is uniform on [a, b]. Apply it to the logarithms of the bounds and exponentiate: "
        "log(lr) uniform is what log-uniform means.",
        "For one head count h the allowed widths are first, first + h, ..., last with first = ceil(width_low / h) * h "
        "and last = floor(width_high / h) * h; pick an index among them with rng.integers. Integer ceil: "
        "-(-a // h). It all works on arrays of h at once.",
        "lr is exp of a uniform draw between the logs of the bounds. heads comes from rng.choice over head_choices. "
        "For each drawn head count, the allowed widths are the multiples of it between the bounds (first one by "
        "integer ceil division); pick one of them uniformly with rng.integers.",
    ),
    checks=(
        Check(SAMPLING_SHAPES, sampling_inputs(), _returns_three_arrays, max_examples=5),
        Check(SAMPLING_VALID, sampling_inputs(), _every_draw_is_valid, max_examples=15),
        Check(SAMPLING_LOG_UNIFORM, sampling_inputs(), _lr_is_log_uniform, max_examples=10),
        Check(SAMPLING_UNIFORM_WIDTH, sampling_inputs(), _width_is_uniform, max_examples=10),
    ),
)

GP_POSTERIOR_MEAN = Exercise(
    name="gp_posterior_mean",
    title="The Gaussian-process posterior mean: a kernel-weighted fit through noisy observations (Q34)",
    statement=(
        "Bayesian optimisation fits a Gaussian process to the trials so far. A zero-mean GP with kernel k believes\n"
        "the values f(X) at any inputs are jointly Gaussian with covariance K = k(X, X); observations add noise of\n"
        "variance s2. Conditioning on y at X gives the mean at new inputs X*:\n"
        "  m(X*) = k(X*, X) (K + s2 I)^-1 y\n"
        "Use the RBF kernel k(a, b) = signal_variance * exp(-||a - b||^2 / (2 lengthscale^2)). x_train (n, d),\n"
        "y_train (n,), x_test (m, d), float64. Return the (m,) posterior mean. Tolerance: rtol = 1e-7."
    ),
    reference=gp_posterior_mean,
    hints=(
        "Write the kernel once for two sets of points: the (n_a, n_b) matrix of squared distances comes from "
        "broadcasting a[:, None, :] - b[None, :, :] and summing over the last axis.",
        "The noise goes on the diagonal of the training covariance only: K + s2 I. Then solve (K + s2 I) w = y for "
        "the weights w (np.linalg.solve, better than forming an inverse) and take k(X*, X) @ w.",
        "Add noise_variance times the identity to the kernel of the training points with each other; solve that "
        "system for y_train (np.linalg.solve); multiply the kernel between test and training points by the solution.",
    ),
    checks=(
        has_reference_shapes(gp_posterior_mean, gp_inputs(), GP_SHAPES),
        Check(GP_INTERPOLATES, gp_inputs(noiseless=True, test_at_training_points=True), _interpolates),
        matches_reference(gp_posterior_mean, gp_inputs(noiseless=True), rtol=1e-7, atol=1e-9, name=GP_KERNEL),
        Check(GP_NOISE, gp_inputs(test_at_training_points=True), _noise_on_the_diagonal),
        matches_reference(gp_posterior_mean, gp_inputs(), rtol=1e-7, atol=1e-9),
    ),
)

EXPECTED_IMPROVEMENT = Exercise(
    name="expected_improvement",
    title="Expected improvement for minimisation: exploit a low mean, explore a large std (Q34)",
    statement=(
        "Bayesian optimisation evaluates next where an acquisition function is highest. Expected improvement asks:\n"
        "if f ~ N(mean, std^2) at a candidate, how far below the best loss so far do we expect to land, counting a\n"
        "miss as 0? For minimisation\n"
        "  EI = E[max(best - f, 0)] = I Phi(z) + std phi(z),   I = best - mean,  z = I / std\n"
        "with Phi and phi the standard normal CDF and density. Given mean and std (n,) float64 (std > 0) and the\n"
        "float best, return EI (n,). Tolerance: rtol = 1e-9, atol = 1e-12."
    ),
    reference=expected_improvement,
    hints=(
        "Check the two regimes: far below best (z large) EI is about best - mean, a sure improvement; far above "
        "best EI is tiny but positive, because f might still land low. Which term gives each?",
        "phi(z) = exp(-z^2 / 2) / sqrt(2 pi) and Phi(z) = (1 + erf(z / sqrt 2)) / 2 = erfc(-z / sqrt 2) / 2 "
        "(math.erf and math.erfc work on one float: np.vectorize them). The erfc form keeps its precision deep in "
        "the left tail.",
        "Let I be best minus the mean and z be I over std. EI is I times Phi(z) plus std times phi(z), with Phi "
        "computed through erfc as in the previous hint.",
    ),
    checks=(
        has_reference_shapes(expected_improvement, ei_inputs(), EI_SHAPES),
        Check(EI_NONNEGATIVE, ei_inputs(), _nonnegative),
        Check(EI_LOWER_MEAN, ei_inputs(shift=True), _falls_as_the_mean_rises),
        matches_reference(expected_improvement, ei_inputs(), rtol=1e-9, atol=1e-12, name=EI_MATCHES),
    ),
)

EXERCISES = (SAMPLE_CONSTRAINED_CONFIGS, GP_POSTERIOR_MEAN, EXPECTED_IMPROVEMENT)
