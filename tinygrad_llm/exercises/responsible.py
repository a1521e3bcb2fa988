"""Exercises on robustness, fairness, privacy and safety (chapter 14): Huber's loss and gradient, one FGSM step, the
two fairness gaps, DP-SGD's clipping and noise, the RDP of one sampled-Gaussian step, and a banned-n-gram logits
processor.

Each grader checks its properties on inputs drawn across scales and slices (deltas over four decades, groups with
any ids, orders up to 256, rows with and without the banned prefix), so a wrong answer cannot pass by being right on
the one slice a property happened to look at. Randomness enters as a seeded generator and the noise is graded by
its distribution over thousands of coordinates, with bars a correct answer essentially never reaches. Each
reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, matches_reference
from .pretraining import grid_arrays, grid_numbers

# ---- huber_loss_and_gradient -----------------------------------------------------------------------------


def huber_loss_and_gradient(errors: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber's loss of each error e = prediction - target, and its derivative dL/de.

    errors (n,) float64; delta > 0. The loss is e^2 / 2 where |e| <= delta and delta * (|e| - delta / 2) beyond:
    quadratic near 0, linear for outliers, and joined smoothly at |e| = delta. Returns (loss, gradient), two (n,)
    float64 arrays.
    """
    absolute = np.abs(errors)
    loss = np.where(absolute <= delta, 0.5 * errors**2, delta * (absolute - 0.5 * delta))
    gradient = np.clip(errors, -delta, delta)  # e inside, delta * sign(e) outside: an outlier pulls, but boundedly
    return loss, gradient


def arrays_from(n: int, values: list) -> st.SearchStrategy[np.ndarray]:
    """(n,) float64 arrays whose entries are drawn from `values`."""
    return st.lists(st.sampled_from(values), min_size=n, max_size=n).map(lambda chosen: np.array(chosen, np.float64))


DELTAS = [0.01, 0.1, 0.25, 0.5, 1.0, 1.5, 3.0, 10.0, 100.0]  # four decades: a constant delta equals delta^2 / 2 at 2


@st.composite
def huber_inputs(draw, region: str = "anywhere") -> dict:
    """A delta from 0.01 to 100 and 1 to 6 errors that are delta times a multiple of 1/4: inside |e| <= delta,
    outside (delta < |e| <= 4 delta), at the edge (|e| = delta, or a millionth of delta beyond it) or anywhere."""
    delta = draw(st.sampled_from(DELTAS))
    n = draw(st.integers(1, 6))
    if region == "edge":
        beyond = draw(arrays_from(n, [1.0, 1.0 + 1e-6]))
        multiples = beyond * draw(arrays_from(n, [-1.0, 1.0]))
    else:
        low, high = {"inside": (-1, 1), "outside": (1.25, 4), "anywhere": (-4, 4)}[region]
        multiples = draw(grid_arrays(n, low, high, step=0.25))
        if region == "outside":
            multiples = multiples * draw(arrays_from(n, [-1.0, 1.0]))
    return {"errors": delta * multiples, "delta": delta}


HUBER_SHAPES = "returns (loss, gradient), two float64 arrays shaped like errors"
HUBER_QUADRATIC = ("inside |e| <= delta the loss is e^2 / 2 and the gradient e: the squared error, which is also what "
                   "Huber tends to as delta grows")
HUBER_CONTINUOUS = ("continuous at |e| = delta: just beyond delta the loss is still about delta^2 / 2, the value "
                    "from inside (M56)")
HUBER_LINEAR = ("beyond delta the loss grows linearly, delta * (|e| - delta / 2), so an outlier still pulls on the "
                "fit (M56)")
HUBER_GRADIENT = "the gradient is clip(e, -delta, delta): e inside, delta * sign(e) outside"
HUBER_MATCHES = "matches Huber's loss and gradient everywhere"


def _huber_part(learner, drawn: dict, name: str, part: int) -> tuple[np.ndarray, np.ndarray]:
    """The learner's loss or gradient (part 0 or 1) and the reference's, after checking the shapes."""
    received, expected = call_learner(learner, drawn, name), huber_loss_and_gradient(**drawn)
    expect_close(name, drawn, expected, received, None, None, ("loss", "gradient"))
    return np.asarray(received[part]), expected[part]


def _quadratic_inside(learner, drawn: dict) -> None:
    received = call_learner(learner, drawn, HUBER_QUADRATIC)
    expected = (0.5 * drawn["errors"] ** 2, drawn["errors"].copy())
    expect_close(HUBER_QUADRATIC, drawn, expected, received, 1e-12, 1e-300, ("loss", "gradient"))


def _continuous_at_delta(learner, drawn: dict) -> None:
    loss, expected = _huber_part(learner, drawn, HUBER_CONTINUOUS, 0)
    if not np.allclose(loss, expected, rtol=1e-5, atol=0):
        delta = drawn["delta"]
        raise PropertyFailed(HUBER_CONTINUOUS, drawn, {"loss": expected}, {"loss": loss},
                             f"the two pieces must meet at |e| = delta: e^2 / 2 = {0.5 * delta**2:g} there, so the "
                             "outer piece must start at delta^2 / 2 too. A constant delta outside jumps, and "
                             "delta * |e| starts delta^2 / 2 too high: subtract delta^2 / 2")


def _linear_beyond_delta(learner, drawn: dict) -> None:
    loss, expected = _huber_part(learner, drawn, HUBER_LINEAR, 0)
    if not np.allclose(loss, expected, rtol=1e-12, atol=0):
        raise PropertyFailed(HUBER_LINEAR, drawn, {"loss": expected}, {"loss": loss},
                             "outside delta the loss must keep rising with slope delta. A flat loss there (a constant, "
                             "or min(e^2, delta^2) / 2) gives outliers zero gradient, so the fit ignores them and "
                             "also any point it starts far from; e^2 / 2 everywhere lets them dominate")


def _gradient_is_clipped_error(learner, drawn: dict) -> None:
    gradient, expected = _huber_part(learner, drawn, HUBER_GRADIENT, 1)
    if not np.allclose(gradient, expected, rtol=1e-12, atol=0):
        raise PropertyFailed(HUBER_GRADIENT, drawn, {"gradient": expected}, {"gradient": gradient},
                             "d/de of delta * (|e| - delta / 2) is delta * sign(e): bounded, with the sign of the "
                             "error. A gradient e outside is the squared error's, which lets one outlier dominate "
                             "the update")


# ---- fgsm_step -------------------------------------------------------------------------------------------


def fgsm_step(x: np.ndarray, gradient: np.ndarray, epsilon: float, low: float, high: float) -> np.ndarray:
    """One fast-gradient-sign step: the input within L-infinity distance epsilon of x that raises the loss most, to
    first order, kept inside the valid input range [low, high].

    x (n, d) float64 with every entry in [low, high]; gradient (n, d) float64, dLoss/dx at x; epsilon > 0. Every
    coordinate moves by epsilon in the direction its gradient points (a zero gradient means no move, since
    sign(0) = 0), then the result is clipped to [low, high]. Returns the attacked inputs (n, d) float64.
    """
    return np.clip(x + epsilon * np.sign(gradient), low, high)


GRADIENT_MAGNITUDES = [1e-3, 0.1, 0.5, 1.0, 3.0, 50.0]  # a step epsilon * gradient is epsilon only where |g| = 1


@st.composite
def fgsm_inputs(draw, where: str = "anywhere") -> dict:
    """1 to 3 inputs of 1 to 4 coordinates on a grid of 1/8, a range [low, high] of width 1 or 2 from 0 or -1, an
    epsilon that is a multiple of 1/64 up to 1/2, and gradients of either sign (or 0) with magnitudes from 1e-3 to
    50. `where` puts x "inside" (at least epsilon from the range's ends, so clipping never binds), at the "edge"
    (within 1/8 of an end) or "anywhere" in the range."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    low = draw(st.sampled_from([0.0, -1.0]))
    high = low + draw(st.sampled_from([1.0, 2.0]))
    epsilon = draw(st.integers(1, 32)) / 64
    if where == "inside":
        x = draw(grid_arrays(shape, low + 0.5, high - 0.5, step=0.125))
    elif where == "edge":
        x = draw(arrays_from(shape[0] * shape[1], [low, low + 0.125, high - 0.125, high])).reshape(shape)
    else:
        x = draw(grid_arrays(shape, low, high, step=0.125))
    size = shape[0] * shape[1]
    signs = draw(arrays_from(size, [-1.0, 0.0, 1.0]) if where == "anywhere" else arrays_from(size, [-1.0, 1.0]))
    gradient = (signs * draw(arrays_from(size, GRADIENT_MAGNITUDES))).reshape(shape)
    return {"x": x, "gradient": gradient, "epsilon": epsilon, "low": low, "high": high}


FGSM_SHAPES = "returns the attacked inputs, a float64 array shaped like x"
FGSM_BUDGET = ("every coordinate moves by exactly epsilon where the range does not bind: ||x_adv - x||_inf = epsilon "
               "and no coordinate moves less")
FGSM_ASCENT = "ascent, not descent: each coordinate moves the way its gradient points, so the loss goes UP"
FGSM_RANGE = "the attacked inputs stay in the valid range [low, high]"
FGSM_MATCHES = "matches clip(x + epsilon * sign(gradient), low, high), with no move where the gradient is 0"


def _fgsm_move(learner, drawn: dict, name: str) -> np.ndarray:
    attacked = call_learner(learner, drawn, name)
    expect_close(name, drawn, fgsm_step(**drawn), attacked, None, None)
    return np.asarray(attacked) - drawn["x"]


def _moves_by_exactly_epsilon(learner, drawn: dict) -> None:
    move = _fgsm_move(learner, drawn, FGSM_BUDGET)
    if not np.allclose(np.abs(move), drawn["epsilon"], rtol=1e-12, atol=0):
        raise PropertyFailed(FGSM_BUDGET, drawn, {"|x_adv - x|": f"{drawn['epsilon']} everywhere"},
                             {"|x_adv - x|": np.abs(move)},
                             "the L-infinity ball lets EVERY coordinate move by epsilon, and to first order the loss "
                             "rises most at its corner: epsilon * sign(gradient). A step epsilon * gradient moves "
                             "each coordinate by an amount set by its gradient's size, not by the budget")


def _moves_up_the_gradient(learner, drawn: dict) -> None:
    move = _fgsm_move(learner, drawn, FGSM_ASCENT)
    if not np.all(np.sign(move) == np.sign(drawn["gradient"])):
        raise PropertyFailed(FGSM_ASCENT, drawn, {"sign of x_adv - x": np.sign(drawn["gradient"])},
                             {"sign of x_adv - x": np.sign(move)},
                             "training steps DOWN the gradient to lower the loss; an attacker steps UP it to raise "
                             "the loss: x + epsilon * sign(gradient), not x - ...")


def _stays_in_range(learner, drawn: dict) -> None:
    attacked = drawn["x"] + _fgsm_move(learner, drawn, FGSM_RANGE)
    if not np.all((attacked >= drawn["low"]) & (attacked <= drawn["high"])):
        raise PropertyFailed(FGSM_RANGE, drawn, f"every entry in [{drawn['low']}, {drawn['high']}]", attacked,
                             "an input outside its valid range (a pixel above 1) is not an input the model can be "
                             "given: clip x + epsilon * sign(gradient) to [low, high] after the step")


# ---- fairness_gaps ---------------------------------------------------------------------------------------


def fairness_gaps(predictions: np.ndarray, labels: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """The demographic-parity difference and the equal-opportunity difference of a binary classifier.

    predictions and labels (n,) int arrays of 0/1; group (n,) int ids of a protected attribute (any ids, two or
    more groups, each with at least one positive label). Demographic parity compares P(yhat = 1 | group), equal
    opportunity the true-positive rate P(yhat = 1 | y = 1, group); each difference is the largest rate over the
    groups minus the smallest. Returns (dp_difference, eo_difference), two floats.
    """
    selection_rates, true_positive_rates = [], []
    for g in np.unique(group):
        members = group == g
        selection_rates.append(predictions[members].mean())
        true_positive_rates.append(predictions[members & (labels == 1)].mean())
    dp_difference = max(selection_rates) - min(selection_rates)
    return float(dp_difference), float(max(true_positive_rates) - min(true_positive_rates))


@st.composite
def fairness_inputs(draw, change: str = "") -> dict:
    """2 to 4 groups with distinct ids from 0 to 9; up to 12 examples in drawn groups with 0/1 predictions and
    labels, then one example with label 1 in each group, so that every true-positive rate is defined. `change` adds
    what a metamorphic check needs: "relabel" a new id for each group, "copy" a group to copy and how many times,
    "negatives" extra examples with label 0."""
    ids = np.array(draw(st.lists(st.integers(0, 9), min_size=2, max_size=4, unique=True)))
    n = draw(st.integers(0, 12))

    def binary(size: int) -> np.ndarray:
        return draw(hnp.arrays(np.int64, size, elements=st.integers(0, 1)))

    drawn = {"predictions": np.concatenate([binary(n), binary(len(ids))]),
             "labels": np.concatenate([binary(n), np.ones(len(ids), dtype=np.int64)]),
             "group": np.concatenate([ids[draw(hnp.arrays(np.int64, n, elements=st.integers(0, len(ids) - 1)))], ids])}
    if change == "relabel":  # g -> (shift - g) mod 10: distinct new ids, mostly in another order
        shift = draw(st.integers(0, 9))
        drawn["new_ids"] = {g: (shift - g) % 10 for g in ids.tolist()}
    elif change == "copy":
        drawn["copied_group"], drawn["copies"] = draw(st.sampled_from(ids.tolist())), draw(st.integers(1, 3))
    elif change == "negatives":
        count = draw(st.integers(1, 6))
        drawn["negative_predictions"] = binary(count)
        drawn["negative_groups"] = ids[draw(hnp.arrays(np.int64, count, elements=st.integers(0, len(ids) - 1)))]
    return drawn


FAIRNESS_KEYS = ("predictions", "labels", "group")
FAIRNESS_SHAPES = "returns (dp_difference, eo_difference), two floats"
FAIRNESS_SYMMETRIC = ("each gap is >= 0 and the same however the groups are numbered: the largest rate minus the "
                      "smallest, over every group")
FAIRNESS_RATES = ("rates, not counts: copying every example of one group changes neither gap, because each group's "
                  "rate is its own mean")
FAIRNESS_POSITIVES = ("equal opportunity looks at the truly positive only: adding examples with label 0 leaves the "
                      "equal-opportunity difference unchanged")
FAIRNESS_MATCHES = "matches the two gaps: P(yhat = 1 | group) and P(yhat = 1 | y = 1, group), largest minus smallest"


def _gaps(learner, arguments: dict, drawn: dict, name: str) -> np.ndarray:
    received = call_learner(learner, arguments, name)
    expect_close(name, drawn, fairness_gaps(**arguments), received, None, None, ("dp_difference", "eo_difference"))
    return np.array(received, dtype=np.float64)


def _same_under_relabelling(learner, drawn: dict) -> None:
    arguments = {key: drawn[key] for key in FAIRNESS_KEYS}
    relabelled = {**arguments, "group": np.array([drawn["new_ids"][g] for g in drawn["group"]], dtype=np.int64)}
    before, after = (_gaps(learner, inputs, drawn, FAIRNESS_SYMMETRIC) for inputs in (arguments, relabelled))
    if not (np.all(before >= 0) and np.allclose(before, after, rtol=1e-12, atol=1e-12)):
        raise PropertyFailed(FAIRNESS_SYMMETRIC, drawn, {"gaps": np.array(fairness_gaps(**arguments))},
                             {"gaps": before, "gaps with the groups renumbered": after},
                             "a gap is a distance between groups, so it cannot be negative or depend on which group is "
                             "called 0: take max(rates) - min(rates) over np.unique(group), not rate[0] - rate[1] "
                             "(and not only groups 0 and 1: the ids can be any ints)")


def _rates_not_counts(learner, drawn: dict) -> None:
    arguments = {key: drawn[key] for key in FAIRNESS_KEYS}
    extra = np.repeat(np.flatnonzero(drawn["group"] == drawn["copied_group"]), drawn["copies"])
    copied = {key: np.concatenate([value, value[extra]]) for key, value in arguments.items()}
    before, after = (_gaps(learner, inputs, drawn, FAIRNESS_RATES) for inputs in (arguments, copied))
    if not np.allclose(before, after, rtol=1e-12, atol=1e-12):
        raise PropertyFailed(FAIRNESS_RATES, drawn, {"gaps after copying": before}, {"gaps after copying": after},
                             "a group's selection rate is the share of ITS OWN members selected, the mean over the "
                             "group; counting its selected members over all n makes a small group look rarely "
                             "selected just because it is small")


def _eo_ignores_negatives(learner, drawn: dict) -> None:
    arguments = {key: drawn[key] for key in FAIRNESS_KEYS}
    count = len(drawn["negative_groups"])
    extended = {"predictions": np.concatenate([drawn["predictions"], drawn["negative_predictions"]]),
                "labels": np.concatenate([drawn["labels"], np.zeros(count, dtype=np.int64)]),
                "group": np.concatenate([drawn["group"], drawn["negative_groups"]])}
    before, after = (_gaps(learner, inputs, drawn, FAIRNESS_POSITIVES)[1] for inputs in (arguments, extended))
    if not np.isclose(before, after, rtol=1e-12, atol=1e-12):
        raise PropertyFailed(FAIRNESS_POSITIVES, drawn, {"eo_difference after adding negatives": before},
                             {"eo_difference after adding negatives": after},
                             "the true-positive rate asks: of the examples whose label is 1, what share does the model "
                             "accept? Average the predictions over group members with labels == 1 only; over all "
                             "members it is the selection rate again")


# ---- clip_and_noise --------------------------------------------------------------------------------------


def clip_and_noise(per_example_gradients: np.ndarray, max_norm: float, noise_multiplier: float,
                   expected_batch_size: float, rng: np.random.Generator) -> np.ndarray:
    """DP-SGD's private gradient: clip each example's gradient, sum, add Gaussian noise, average.

    per_example_gradients (B, d) float64, one row per example in this step's batch; max_norm C > 0;
    noise_multiplier sigma >= 0; expected_batch_size > 0 (the sample rate times the dataset size); rng the only
    source of randomness. Each row is scaled by min(1, C / ||row||) so no example's norm exceeds C; the rows are
    summed, N(0, sigma^2 C^2) noise is added to each of the d coordinates, and the result is divided by the
    EXPECTED batch size (the actual B would itself reveal who is in the batch). Returns (d,) float64.
    """
    norms = np.linalg.norm(per_example_gradients, axis=1, keepdims=True)
    clipped = per_example_gradients * np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    noise = rng.normal(0.0, noise_multiplier * max_norm, per_example_gradients.shape[1])
    return (clipped.sum(axis=0) + noise) / expected_batch_size


NOISE_COORDINATES = 4000  # noise draws per graded example: the sample std is then within about 1.1% of the truth
BATCH_FACTORS = [0.5, 0.75, 1.5, 2.0, 3.0]  # expected / actual batch size: never 1, so dividing by B shows
SIGMAS = [0.5, 1.5, 2.0, 3.0]  # never 1, so noise without sigma shows


@st.composite
def dp_inputs(draw, noise: bool = False, actual_batch: bool = False) -> dict:
    """B = 1 to 5 examples of d = 1 to 4 coordinates (tiled to 4000 coordinates when `noise`), entries multiples of
    C / 2 within +-3C so that some norms are above C and some below, C from 0.1 to 10, sigma 0 (or, with `noise`,
    from {0.5, 1.5, 2, 3}), an expected batch size of B times 0.5 to 3 (B itself with `actual_batch`), and a seed."""
    batch, width = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    max_norm = draw(st.sampled_from([0.1, 0.5, 1.0, 2.0, 10.0]))
    gradients = draw(grid_arrays((batch, width), -3, 3)) * max_norm
    if noise:
        gradients = np.tile(gradients, (1, NOISE_COORDINATES // width))
    factor = 1.0 if actual_batch else draw(st.sampled_from(BATCH_FACTORS))
    return {"per_example_gradients": gradients, "max_norm": max_norm,
            "noise_multiplier": draw(st.sampled_from(SIGMAS)) if noise else 0.0,
            "expected_batch_size": batch * factor, "seed": draw(st.integers(0, 2**16))}


def _dp_arguments(drawn: dict) -> dict:
    arguments = {key: value for key, value in drawn.items() if key != "seed"}
    return {**arguments, "rng": np.random.default_rng(drawn["seed"])}


def _dp_shown(drawn: dict) -> dict:
    """The arguments as a failure message shows them."""
    return {**_dp_arguments(drawn), "rng": f"np.random.default_rng({drawn['seed']})"}


def _clipped_mean(drawn: dict) -> np.ndarray:
    """The private gradient without its noise: the reference at sigma = 0."""
    return clip_and_noise(**_dp_arguments({**drawn, "noise_multiplier": 0.0}))


DP_SHAPES = "returns the private gradient, a (d,) float64 array"
DP_NO_NOISE = ("sigma = 0 adds no noise: the output is the same whatever the seed (the noise's std is sigma * C, "
               "zero with sigma)")
DP_CLIPS_EACH = ("with sigma = 0 and the expected batch equal to B it is the mean of the clipped rows: each example "
                 "scaled by min(1, C / ||g_i||) on its own, so each example's influence is at most C")
DP_EXPECTED_BATCH = ("it divides by the EXPECTED batch size, not by the number of rows B (with sigma = 0: the sum of "
                     "the clipped rows / expected_batch_size)")
DP_SEEDED = "all randomness comes from rng: the same seed gives the same output"
DP_NOISE = ("the noise is N(0, (sigma C / expected_batch_size)^2) in each coordinate: output minus the clipped mean "
            "has that standard deviation and mean 0, and is Gaussian (Kolmogorov-Smirnov test)")


def _private_gradient(learner, drawn: dict, name: str) -> np.ndarray:
    received = call_learner(learner, _dp_arguments(drawn), name)
    expect_close(name, _dp_shown(drawn), clip_and_noise(**_dp_arguments(drawn)), received, None, None)
    return np.asarray(received)


def _returns_a_gradient(learner, drawn: dict) -> None:
    _private_gradient(learner, drawn, DP_SHAPES)


def _no_noise_without_sigma(learner, drawn: dict) -> None:
    first = _private_gradient(learner, drawn, DP_NO_NOISE)
    second = _private_gradient(learner, {**drawn, "seed": drawn["seed"] + 1}, DP_NO_NOISE)
    if not np.array_equal(first, second):
        raise PropertyFailed(DP_NO_NOISE, _dp_shown(drawn), {"with the next seed": first},
                             {"with the next seed": second},
                             "the noise's standard deviation is noise_multiplier * max_norm: sigma scales the noise to "
                             "the most one example can move the sum (C). Noise of std C alone ignores sigma, so the "
                             "privacy the accountant reports for sigma is not what the step gives")


def _clips_each_example(learner, drawn: dict) -> None:
    received, expected = _private_gradient(learner, drawn, DP_CLIPS_EACH), _clipped_mean(drawn)
    if not np.allclose(received, expected, rtol=1e-9, atol=1e-12):
        norms = np.linalg.norm(drawn["per_example_gradients"], axis=1)
        raise PropertyFailed(DP_CLIPS_EACH, _dp_shown(drawn), expected, received,
                             f"the rows' norms are {np.round(norms, 4).tolist()} against C = {drawn['max_norm']}. Clip "
                             "each ROW to norm C (rows already within C stay as they are), then sum: clipping the "
                             "summed gradient bounds the batch, not any one example, and clipping each coordinate "
                             "is not a bound on the norm")


def _divides_by_the_expected_batch(learner, drawn: dict) -> None:
    received, expected = _private_gradient(learner, drawn, DP_EXPECTED_BATCH), _clipped_mean(drawn)
    if not np.allclose(received, expected, rtol=1e-9, atol=1e-12):
        rows = len(drawn["per_example_gradients"])
        raise PropertyFailed(DP_EXPECTED_BATCH, _dp_shown(drawn), expected, received,
                             f"divide by expected_batch_size = {drawn['expected_batch_size']}, not by the {rows} rows: "
                             "with Poisson sampling the batch size itself depends on who was drawn, so dividing by "
                             "it would leak information the noise does not cover")


def _seeded(learner, drawn: dict) -> None:
    first, second = (_private_gradient(learner, drawn, DP_SEEDED) for _ in range(2))
    if not np.array_equal(first, second):
        raise PropertyFailed(DP_SEEDED, _dp_shown(drawn), {"second call": first}, {"second call": second},
                             "draw the noise from the rng argument (rng.normal(...)), not from np.random: a grader, "
                             "a test or a privacy audit must be able to replay a step")


def _noise_is_gaussian_with_std_sigma_c_over_b(learner, drawn: dict) -> None:
    residual = _private_gradient(learner, drawn, DP_NOISE) - _clipped_mean(drawn)
    n = len(residual)
    std = drawn["noise_multiplier"] * drawn["max_norm"] / drawn["expected_batch_size"]
    measured = {"mean": float(residual.mean()), "std": float(residual.std())}
    wanted = {"mean": 0.0, "std": std}
    if not (abs(measured["std"] / std - 1) < 0.08 and abs(measured["mean"]) < 6 * std / math.sqrt(n)):
        raise PropertyFailed(DP_NOISE, _dp_shown(drawn), wanted, measured,
                             f"over {n} coordinates the noise should have std sigma * C / expected_batch_size = "
                             f"{std:.4g}, within 8%. The noise on the SUM has std sigma * C (sigma times the most one "
                             "example can move it); one draw per coordinate, added once to the sum, before the "
                             "division (M58)")
    position = np.sort(residual / std)
    cdf = 0.5 * np.vectorize(math.erfc)(-position / math.sqrt(2))
    distance = float(np.max(np.maximum(np.arange(1, n + 1) / n - cdf, cdf - np.arange(n) / n)))
    if not distance < 2.5 / math.sqrt(n):  # a correct answer exceeds it with probability about 1e-5
        raise PropertyFailed(DP_NOISE, _dp_shown(drawn), "Gaussian noise", f"distance to the normal CDF {distance:.3f}",
                             "the Gaussian mechanism needs normal noise (rng.normal); the privacy accounting "
                             "for sigma is derived for it and does not hold for uniform or other noise")


# ---- gaussian_rdp_one_step -------------------------------------------------------------------------------


def gaussian_rdp_one_step(sample_rate: float, noise_multiplier: float, order: int) -> float:
    """The Renyi-DP at integer order alpha of ONE step of the sampled Gaussian mechanism (DP-SGD's step).

    sample_rate q in (0, 1] (each example joins the batch with probability q); noise_multiplier sigma > 0 (noise
    std over the clipping norm); order alpha an integer >= 2. Returns the float
        RDP = log(A) / (alpha - 1)
        A = sum over k = 0..alpha of C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))
    At q = 1 only k = alpha is left and RDP = alpha / (2 sigma^2), the plain Gaussian mechanism.
    """
    from math import lgamma  # log Gamma(n + 1) = log n!, without ever forming n!

    if sample_rate == 1:
        return order / (2 * noise_multiplier**2)
    k = np.arange(order + 1)
    log_binomial = np.array([lgamma(order + 1) - lgamma(j + 1) - lgamma(order - j + 1) for j in k])
    log_terms = (log_binomial + (order - k) * np.log1p(-sample_rate) + k * np.log(sample_rate)
                 + (k * k - k) / (2 * noise_multiplier**2))
    largest = log_terms.max()  # log-sum-exp: the terms reach exp(alpha^2 / (2 sigma^2)), far beyond float range
    return float((largest + np.log(np.exp(log_terms - largest).sum())) / (order - 1))


SMALL_SIGMAS = [0.5, 0.7, 1.0, 2.0, 3.0, 5.0]
ALL_SIGMAS = SMALL_SIGMAS + [10.0, 30.0]


@st.composite
def rdp_inputs(draw, scale: str = "any") -> dict:
    """q a multiple of 0.01 in (0, 1], sigma from 0.5 to 30 and an integer order from 2 to 256. `scale` narrows
    it: "plain" takes q = 1 with orders up to 16, "order_two" order 2 with q < 1, "large" orders from 128 to 256
    with sigma <= 5 (where exp of the largest term overflows)."""
    q = 1.0 if scale == "plain" else draw(grid_numbers(0.01, 0.99 if scale == "order_two" else 1.0, 0.01))
    sigma = draw(st.sampled_from(SMALL_SIGMAS if scale == "large" else ALL_SIGMAS))
    order = {"plain": st.integers(2, 16), "order_two": st.just(2), "large": st.integers(128, 256),
             "any": st.integers(2, 256)}[scale]
    return {"sample_rate": q, "noise_multiplier": sigma, "order": draw(order)}


RDP_SHAPES = "returns one float"
RDP_PLAIN = "q = 1 is the plain Gaussian mechanism: RDP = alpha / (2 sigma^2)"
RDP_ORDER_TWO = "at order 2 the sum has three terms: RDP = log(1 + q^2 (exp(1 / sigma^2) - 1))"
RDP_LARGE = ("stays finite and exact at orders 128 to 256 with sigma <= 5, where the terms reach "
             "exp(alpha^2 / (2 sigma^2)): sum them in log space")
RDP_MATCHES = "matches the binomial sum at every q, sigma and order (rtol 1e-6)"


def _rdp_close(name: str, expected_value: Callable, detail: str):
    def verify(learner, drawn: dict) -> None:
        received = call_learner(learner, drawn, name)
        expected = expected_value(**drawn)
        expect_close(name, drawn, expected, received, None, None)
        if not (np.isfinite(received) and math.isclose(float(received), expected, rel_tol=1e-6, abs_tol=1e-10)):
            raise PropertyFailed(name, drawn, expected, received, detail)
    return verify


_plain_gaussian = _rdp_close(
    RDP_PLAIN, lambda sample_rate, noise_multiplier, order: order / (2 * noise_multiplier**2),
    "with q = 1 only the k = alpha term is left: log A = (alpha^2 - alpha) / (2 sigma^2), and dividing by "
    "alpha - 1 gives alpha / (2 sigma^2). The noise's VARIANCE sigma^2 sets the divergence (not sigma), and RDP of "
    "order alpha is log(A) / (alpha - 1), not log(A). At q = 1, log(1 - q) is -inf: treat that case on its own")
_order_two = _rdp_close(
    RDP_ORDER_TWO,
    lambda sample_rate, noise_multiplier, order: math.log1p(sample_rate**2 * math.expm1(1 / noise_multiplier**2)),
    "at alpha = 2 the terms are (1 - q)^2, 2q(1 - q) and q^2 exp(1 / sigma^2), which sum to "
    "1 + q^2 (exp(1 / sigma^2) - 1). The exponent is (k^2 - k) / (2 sigma^2): sigma SQUARED")
_large_orders = _rdp_close(
    RDP_LARGE, gaussian_rdp_one_step,
    "the largest term is about exp(alpha^2 / (2 sigma^2)), past float64's limit near exp(709). Work with the logs "
    "of the terms (math.lgamma for the binomial) and use log-sum-exp: log A = m + log(sum(exp(t_k - m))) with "
    "m = max t_k")


# ---- banned_ngram_processor ------------------------------------------------------------------------------


def banned_ngram_processor(ids: np.ndarray, logits: np.ndarray, banned_ngrams: list) -> np.ndarray:
    """Stop each banned n-gram from being completed at this decoding step.

    ids (B, t) int64, the text so far of each row (t may be 0); logits (B, V) float64, the model's next-token
    logits; banned_ngrams a list of n-grams, each a non-empty list of token ids < V. For an n-gram (a_1, ..., a_n),
    set the logit of a_n to -inf in every row whose text ends with its prefix (a_1, ..., a_{n-1}); a 1-gram has an
    empty prefix, so its token is banned in every row. Everything else is unchanged. Returns new (B, V) float64
    logits; after a softmax the banned tokens get probability exactly 0.
    """
    logits = logits.copy()
    for *prefix, last in banned_ngrams:
        if len(prefix) > ids.shape[1]:
            continue  # the text is shorter than the prefix, so it cannot end with it
        ends_with_prefix = np.all(ids[:, ids.shape[1] - len(prefix):] == np.array(prefix, dtype=ids.dtype), axis=1)
        logits[ends_with_prefix, last] = -np.inf
    return logits


@st.composite
def ngram_inputs(draw, lengths: tuple[int, int] = (1, 3)) -> dict:
    """A vocabulary of 2 to 5 tokens, 1 to 4 rows of 0 to 5 tokens, logits on a grid of 0.5 in +-3, and 1 or 2
    banned n-grams of `lengths` tokens. Each row long enough is made to end with the prefix of a drawn banned
    n-gram, to start with one (so it appears, but not at the end) or is left as drawn: the bans fire in some rows
    and not in others."""
    vocabulary, rows, length = draw(st.integers(2, 5)), draw(st.integers(1, 4)), draw(st.integers(0, 5))
    tokens = st.integers(0, vocabulary - 1)
    banned = draw(st.lists(st.lists(tokens, min_size=lengths[0], max_size=lengths[1]), min_size=1, max_size=2))
    ids = draw(hnp.arrays(np.int64, (rows, length), elements=tokens))
    for row in range(rows):
        prefix, where = draw(st.sampled_from(banned))[:-1], draw(st.sampled_from(["end", "start", "none"]))
        if prefix and len(prefix) <= length and where != "none":
            start = length - len(prefix) if where == "end" else 0
            ids[row, start:start + len(prefix)] = prefix
    return {"ids": ids, "logits": draw(grid_arrays((rows, vocabulary), -3, 3)), "banned_ngrams": banned}


NGRAM_SHAPES = "returns new logits, a (B, V) float64 array"
NGRAM_FIRES = ("the completing token gets -inf in every row whose text ends with the n-gram's prefix (its first "
               "n - 1 tokens), for every banned n-gram")
NGRAM_ONLY_AFTER_PREFIX = "the ban fires only after its prefix: every other logit is unchanged"
NGRAM_UNIGRAM = "a 1-gram has an empty prefix: its token is banned in every row, whatever the text (even none)"
NGRAM_MATCHES = "matches the banned-n-gram processor exactly"


def _learner_and_reference_logits(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    received, expected = call_learner(learner, drawn, name), banned_ngram_processor(**drawn)
    expect_close(name, drawn, expected, received, None, None)
    return np.asarray(received), expected


def _fires_after_the_prefix(learner, drawn: dict) -> None:
    received, expected = _learner_and_reference_logits(learner, drawn, NGRAM_FIRES)
    missed = np.isneginf(expected) & ~np.isneginf(received)
    if missed.any():
        rows, tokens = np.nonzero(missed)
        raise PropertyFailed(NGRAM_FIRES, drawn, expected, received,
                             f"(row, token) {list(zip(rows.tolist(), tokens.tolist()))} should be -inf. When a row's "
                             "text ends with (a_1, ..., a_{n-1}), the next token a_n would complete the n-gram: ban "
                             "a_n there (the LAST token of the n-gram), with -inf so its probability after the "
                             "softmax is exactly 0")


def _fires_only_after_the_prefix(learner, drawn: dict) -> None:
    received, expected = _learner_and_reference_logits(learner, drawn, NGRAM_ONLY_AFTER_PREFIX)
    kept = ~np.isneginf(expected)
    if not np.array_equal(received[kept], expected[kept]):
        raise PropertyFailed(NGRAM_ONLY_AFTER_PREFIX, drawn, expected, received,
                             "a_n on its own is an ordinary token (the 'e' of 'the'); banning it everywhere, or "
                             "wherever the prefix appears somewhere in the text, forbids harmless text. Compare the "
                             "LAST n - 1 tokens of each row with the prefix")


def _unigram_everywhere(learner, drawn: dict) -> None:
    received, expected = _learner_and_reference_logits(learner, drawn, NGRAM_UNIGRAM)
    if not np.array_equal(received, expected):
        raise PropertyFailed(NGRAM_UNIGRAM, drawn, expected, received,
                             "with an empty prefix every row 'ends with' it. Beware ids[:, -0:]: minus zero is zero, "
                             "so that slice is the WHOLE text, not an empty one; slice from t - len(prefix)")


# ---- the exercises ---------------------------------------------------------------------------------------

HUBER_LOSS_AND_GRADIENT = Exercise(
    name="huber_loss_and_gradient",
    title="Huber's loss and its gradient: quadratic near 0, linear for outliers, smooth at delta (Q35, M56)",
    statement=(
        "The squared error lets one outlier dominate a fit: its gradient grows with the error. Huber's loss keeps the\n"
        "square for small errors and switches to a straight line beyond delta:\n"
        "  L(e) = e^2 / 2                   if |e| <= delta\n"
        "  L(e) = delta * (|e| - delta / 2)  otherwise\n"
        "The line is chosen so that value and slope match at |e| = delta. A common slip (M56) is a constant outside\n"
        "delta: it jumps at delta and gives outliers zero gradient. Given errors (n,) float64 and delta > 0, return\n"
        "(loss, gradient), the loss of each error and dL/de, two (n,) float64 arrays. Tolerance: rtol = 1e-12."
    ),
    reference=huber_loss_and_gradient,
    hints=(
        "Work out the outer piece's derivative: d/de of delta * (|e| - delta / 2) is delta * sign(e). At e = delta "
        "both pieces have value delta^2 / 2 and slope delta: the - delta / 2 is what makes the values meet.",
        "np.where(np.abs(errors) <= delta, inner, outer) picks a piece per element. The gradient, e inside and "
        "delta * sign(e) outside, is one np.clip.",
        "Per element, the loss is e^2 / 2 where |e| <= delta and delta (|e| - delta / 2) elsewhere. The gradient is "
        "e itself limited to the interval [-delta, delta].",
    ),
    checks=(
        matches_reference(huber_loss_and_gradient, huber_inputs(), None, None, HUBER_SHAPES, ("loss", "gradient"),
                          max_examples=10),
        Check(HUBER_QUADRATIC, huber_inputs("inside"), _quadratic_inside, max_examples=20),
        Check(HUBER_CONTINUOUS, huber_inputs("edge"), _continuous_at_delta, max_examples=20),
        Check(HUBER_LINEAR, huber_inputs("outside"), _linear_beyond_delta, max_examples=20),
        Check(HUBER_GRADIENT, huber_inputs(), _gradient_is_clipped_error, max_examples=20),
        matches_reference(huber_loss_and_gradient, huber_inputs(), rtol=1e-12, atol=0, name=HUBER_MATCHES,
                          names=("loss", "gradient")),
    ),
)

FGSM_STEP = Exercise(
    name="fgsm_step",
    title="One FGSM step: spend the whole L-infinity budget along the gradient's sign (Q35)",
    statement=(
        "An attacker looks for the input within distance epsilon of x that raises the loss the most. In the\n"
        "L-infinity ball every coordinate may move by epsilon, and to first order the loss rises most at the corner\n"
        "that follows the gradient's sign: the fast gradient sign method. Given x (n, d) float64 inside [low, high],\n"
        "gradient (n, d), the gradient of the loss with respect to x (not the weights), and epsilon > 0, return the\n"
        "attacked inputs: x moved by epsilon * sign(gradient), then clipped to [low, high]. Tolerance: rtol = 1e-12."
    ),
    reference=fgsm_step,
    hints=(
        "Training steps against the gradient to lower the loss; the attacker steps with it to raise the loss. "
        "Which function of the gradient moves every coordinate by the same amount?",
        "np.sign(gradient) is +1, -1 or 0 per coordinate, so epsilon * np.sign(gradient) has L-infinity norm "
        "exactly epsilon. Then keep the result in the valid range.",
        "Move x by epsilon times the sign of the gradient, coordinate by coordinate, then clip the result to [low, "
        "high] so no coordinate leaves the valid range.",
    ),
    checks=(
        matches_reference(fgsm_step, fgsm_inputs(), None, None, FGSM_SHAPES, max_examples=10),
        Check(FGSM_BUDGET, fgsm_inputs("inside"), _moves_by_exactly_epsilon, max_examples=20),
        Check(FGSM_ASCENT, fgsm_inputs("inside"), _moves_up_the_gradient, max_examples=20),
        Check(FGSM_RANGE, fgsm_inputs("edge"), _stays_in_range, max_examples=20),
        matches_reference(fgsm_step, fgsm_inputs(), rtol=1e-12, atol=0, name=FGSM_MATCHES),
    ),
)

FAIRNESS_GAPS = Exercise(
    name="fairness_gaps",
    title="Demographic parity and equal opportunity: compare rates per group, not counts (Q36, M57)",
    statement=(
        "Fairness is measured per group of a protected attribute. Demographic parity asks whether each group gets\n"
        "positive decisions equally often: P(yhat = 1 | group). Equal opportunity asks whether the truly qualified\n"
        "are accepted equally often: the true-positive rate P(yhat = 1 | y = 1, group). Each difference is the\n"
        "largest rate over the groups minus the smallest (0 is fair). predictions and labels are (n,) 0/1 ints;\n"
        "group holds any int ids, two or more groups. Return (dp_difference, eo_difference). Tolerance: 1e-12."
    ),
    reference=fairness_gaps,
    hints=(
        "Loop over np.unique(group): the ids can be any ints, and there can be more than two groups.",
        "A group's selection rate is the mean of its predictions; its true-positive rate is the mean of the "
        "predictions of its members whose label is 1. Combine the masks with &.",
        "For every group id from np.unique: its selection rate is the mean prediction over its members, its "
        "true-positive rate the mean prediction over its members with label 1. Each gap is the largest rate minus the "
        "smallest.",
    ),
    checks=(
        matches_reference(fairness_gaps, fairness_inputs(), None, None, FAIRNESS_SHAPES,
                          ("dp_difference", "eo_difference"), max_examples=10),
        Check(FAIRNESS_SYMMETRIC, fairness_inputs("relabel"), _same_under_relabelling, max_examples=20),
        Check(FAIRNESS_RATES, fairness_inputs("copy"), _rates_not_counts, max_examples=20),
        Check(FAIRNESS_POSITIVES, fairness_inputs("negatives"), _eo_ignores_negatives, max_examples=20),
        matches_reference(fairness_gaps, fairness_inputs(), rtol=1e-12, atol=1e-12, name=FAIRNESS_MATCHES,
                          names=("dp_difference", "eo_difference")),
    ),
)

CLIP_AND_NOISE = Exercise(
    name="clip_and_noise",
    title="DP-SGD's private gradient: clip each example to C, add N(0, sigma^2 C^2), divide by the expected batch "
          "(Q37, M58)",
    statement=(
        "DP-SGD hides any one example by bounding its influence and covering it with noise. Clip EACH example's\n"
        "gradient to L2 norm C (scale row i by min(1, C / ||g_i||)); sum the rows; add Gaussian noise of std\n"
        "sigma * C to each coordinate; divide by the expected batch size (sample rate times dataset size, not the\n"
        "rows you got). Averaging without clipping and noise is not private (M58). per_example_gradients (B, d)\n"
        "float64; draw the noise from rng only. Return (d,) float64. The noise is graded by its distribution."
    ),
    reference=clip_and_noise,
    hints=(
        "np.linalg.norm(per_example_gradients, axis=1, keepdims=True) gives one norm per row, shaped to broadcast "
        "back over the row. Guard the division for a zero row (np.maximum(norms, 1e-12)).",
        "Only the sum gets noise, and only once: rng.normal(0, sigma * C, d). Divide the noisy sum by "
        "expected_batch_size, so the noise on the result has std sigma * C / expected_batch_size.",
        "Scale each row by the smaller of 1 and C over its guarded norm; sum the clipped rows over the batch axis; "
        "add one Gaussian draw per coordinate with std sigma times C; divide by expected_batch_size, never by the "
        "actual B.",
    ),
    checks=(
        Check(DP_SHAPES, dp_inputs(), _returns_a_gradient, max_examples=5),
        Check(DP_NO_NOISE, dp_inputs(), _no_noise_without_sigma, max_examples=10),
        Check(DP_CLIPS_EACH, dp_inputs(actual_batch=True), _clips_each_example, max_examples=20),
        Check(DP_EXPECTED_BATCH, dp_inputs(), _divides_by_the_expected_batch, max_examples=20),
        Check(DP_SEEDED, dp_inputs(noise=True), _seeded, max_examples=5),
        Check(DP_NOISE, dp_inputs(noise=True), _noise_is_gaussian_with_std_sigma_c_over_b, max_examples=15),
    ),
)

GAUSSIAN_RDP_ONE_STEP = Exercise(
    name="gaussian_rdp_one_step",
    title="The privacy one DP-SGD step spends: Renyi DP of the sampled Gaussian, summed in log space (Q37)",
    statement=(
        "A privacy accountant adds up, step by step, the Renyi divergence of order alpha between DP-SGD's outputs\n"
        "with and without one example. For one step with sample rate q and noise multiplier sigma, at integer\n"
        "alpha >= 2:\n"
        "  RDP = log(A) / (alpha - 1),  A = sum_k C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))\n"
        "for k = 0..alpha. Accountants use orders up to 256 or more, where the terms overflow float64: compute in\n"
        "log space. q in (0, 1], sigma > 0. Return a float. Tolerance: rtol = 1e-6."
    ),
    reference=gaussian_rdp_one_step,
    hints=(
        "Check the case q = 1 by hand first: only k = alpha survives, so RDP = alpha / (2 sigma^2). Handle it on "
        "its own, since log(1 - q) is -inf there.",
        "Write the log of each term: log C(alpha, k) = lgamma(alpha + 1) - lgamma(k + 1) - lgamma(alpha - k + 1), "
        "plus (alpha - k) log(1 - q) + k log q + (k^2 - k) / (2 sigma^2). Then log A = m + log(sum(exp(t - m))) "
        "with m the largest log term.",
        "Use the k = 0..alpha log terms of the previous hint (np.log1p for log(1 - q)), combine them with a "
        "log-sum-exp around their maximum, and divide log A by alpha - 1.",
    ),
    checks=(
        matches_reference(gaussian_rdp_one_step, rdp_inputs(), None, None, RDP_SHAPES, max_examples=10),
        Check(RDP_PLAIN, rdp_inputs("plain"), _plain_gaussian, max_examples=20),
        Check(RDP_ORDER_TWO, rdp_inputs("order_two"), _order_two, max_examples=20),
        Check(RDP_LARGE, rdp_inputs("large"), _large_orders, max_examples=15),
        matches_reference(gaussian_rdp_one_step, rdp_inputs(), rtol=1e-6, atol=1e-10, name=RDP_MATCHES),
    ),
)

BANNED_NGRAM_PROCESSOR = Exercise(
    name="banned_ngram_processor",
    title="A banned-n-gram logits processor: -inf on the completing token, only after the prefix (Q38)",
    statement=(
        "Constrained decoding edits each step's logits before sampling. To stop an n-gram (a_1, ..., a_n) from ever\n"
        "appearing, give a_n the logit -inf in every row whose text so far ends with (a_1, ..., a_{n-1}): its\n"
        "probability is then exactly 0 and the softmax shares the mass among the rest. Elsewhere a_n is a harmless\n"
        "token and keeps its logit; a 1-gram has an empty prefix and is banned everywhere. ids (B, t) int64 (t may\n"
        "be 0), logits (B, V) float64, banned_ngrams a list of lists of ids. Return new (B, V) logits. Exact."
    ),
    reference=banned_ngram_processor,
    hints=(
        "Handle one n-gram at a time: split it into prefix = ngram[:-1] and last = ngram[-1]. Which rows end with "
        "the prefix? A text shorter than the prefix cannot.",
        "Compare the last len(prefix) columns of ids with the prefix and take np.all over axis 1: a boolean per "
        "row. Slice with ids[:, t - len(prefix):], since ids[:, -0:] is the whole text. Work on a copy of logits.",
        "Copy the logits. For each n-gram, split off its last token; skip a prefix longer than the text; the rows "
        "whose last len(prefix) ids equal the prefix (np.all over axis 1) get -inf at that last token.",
    ),
    checks=(
        matches_reference(banned_ngram_processor, ngram_inputs((2, 3)), None, None, NGRAM_SHAPES, max_examples=10),
        Check(NGRAM_FIRES, ngram_inputs((2, 3)), _fires_after_the_prefix, max_examples=20),
        Check(NGRAM_ONLY_AFTER_PREFIX, ngram_inputs((2, 3)), _fires_only_after_the_prefix, max_examples=20),
        Check(NGRAM_UNIGRAM, ngram_inputs((1, 1)), _unigram_everywhere, max_examples=20),
        matches_reference(banned_ngram_processor, ngram_inputs(), rtol=0, atol=0, name=NGRAM_MATCHES),
    ),
)

EXERCISES = (HUBER_LOSS_AND_GRADIENT, FGSM_STEP, FAIRNESS_GAPS, CLIP_AND_NOISE, GAUSSIAN_RDP_ONE_STEP,
             BANNED_NGRAM_PROCESSOR)
