"""Bayesian optimisation (BO): minimise an expensive black-box objective on the unit cube [0, 1]^d in few calls.

    1. evaluate a few points spread over the cube (a Latin hypercube);
    2. fit a GP to every (point, value) so far: a cheap model of the objective with error bars;
    3. propose the point where the acquisition function (EI or LCB) of the GP's posterior is best;
    4. evaluate it, add it to the data, and go back to 2 until the budget is spent.

Each proposal costs a GP fit and thousands of GP predictions, which is worth it only when an evaluation is
expensive (training a model). Noisy objectives need nothing special: the GP learns a noise variance, so it does
not chase one lucky value, and the incumbent that EI tries to beat is the lowest posterior mean at an observed
point, not the lowest (perhaps lucky) observation. bayesian_search.py runs this loop over a SearchSpace.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .acquisition import expected_improvement, lower_confidence_bound
from .gaussian_process import GaussianProcess

ACQUISITIONS = ("ei", "lcb")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: where (in the unit cube), what the objective returned, and what proposed the point."""

    point: np.ndarray
    value: float
    proposed_by: str  # "initial" for the initial design, else the acquisition's name


@dataclass(frozen=True)
class SearchHistory:
    """Every evaluation in evaluation order."""

    evaluations: tuple[Evaluation, ...]

    def values(self) -> np.ndarray:
        return np.array([evaluation.value for evaluation in self.evaluations])

    def best_so_far(self) -> np.ndarray:
        """The lowest value seen after each evaluation; minus the true minimum, the simple-regret curve."""
        return np.minimum.accumulate(self.values())

    @property
    def best_evaluation(self) -> Evaluation:
        return self.evaluations[int(np.argmin(self.values()))]


def latin_hypercube(count: int, dimension: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points in [0, 1]^dimension, one in each of `count` equal slices of every axis.

    Plain random first points can bunch up (four uniform draws on one axis all fall within 0.2 of each other with
    probability 4 r^3 - 3 r^4 = 0.027 at r = 0.2), and a GP fitted to a bunch learns nothing about the rest of
    the domain; the slices forbid it.
    """
    slices = np.stack([rng.permutation(count) for _ in range(dimension)], axis=1)
    return (slices + rng.random((count, dimension))) / count


def acquisition_scores(gp: GaussianProcess, points: np.ndarray, acquisition: str, incumbent: float,
                       xi: float, kappa: float) -> np.ndarray:
    """The acquisition at each point, signed so that higher is better (EI as is, LCB negated)."""
    mean, variance = gp.predict(points)
    std = np.sqrt(variance)
    if acquisition == "ei":
        return expected_improvement(mean, std, incumbent, xi)
    return -lower_confidence_bound(mean, std, kappa)


def maximise_acquisition(score, dimension: int, rng: np.random.Generator, incumbent_point: np.ndarray,
                         candidates: int = 2000, top: int = 5, radii=(0.1, 0.03, 0.01)) -> np.ndarray:
    """The best point found for `score` (a vectorised function of (m, d) points): uniform random candidates plus
    the incumbent, then Gaussian steps of shrinking radius around the `top` best so far.

    The random candidates find the acquisition's separate peaks (it is multimodal: one peak per promising gap
    between observations); the local steps sharpen the best few, which random sampling alone does slowly.
    """
    points = np.vstack([rng.random((candidates, dimension)), incumbent_point[None]])
    scores = score(points)
    steps_per_centre = max(candidates // (top * len(radii)), 1)
    for radius in radii:
        centres = points[np.argsort(scores)[-top:]]
        steps = radius * rng.standard_normal((len(centres), steps_per_centre, dimension))
        local = np.clip(centres[:, None, :] + steps, 0.0, 1.0).reshape(-1, dimension)
        points, scores = np.vstack([points, local]), np.concatenate([scores, score(local)])
    return points[int(np.argmax(scores))]


def check_acquisition(acquisition: str, caller: str) -> None:
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"{caller}: acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")


def surrogate_model(kernel: str, seed: int) -> GaussianProcess:
    """The GP that BO refits after every evaluation: lengthscales relative to the whole cube, and each refit also
    starts its likelihood search from the previous optimum (so one random restart is enough)."""
    return GaussianProcess(kernel, restarts=1, seed=seed, input_bounds=(0.0, 1.0))


def propose(gp: GaussianProcess, observed: np.ndarray, values: np.ndarray, rng: np.random.Generator,
            acquisition: str = "ei", xi: float = 0.01, kappa: float = 2.0, candidates: int = 2000,
            landing=None) -> np.ndarray:
    """One step of BO: fit the GP to the evaluations so far and return the point of the cube where the
    acquisition is highest. EI's incumbent is the lowest posterior mean at an observed point.

    landing(points) -> (landed, allowed), optional: where each candidate really lands and whether it may be
    evaluated. A search space needs it: an integer or a choice covers a whole cell of the cube, so a candidate
    is scored at the point that stands for its configuration, and a configuration that breaks a constraint
    scores -inf (it is never proposed while an allowed candidate exists).
    """
    gp.fit(observed, values)
    observed_means = gp.predict(observed)[0]
    incumbent = int(np.argmin(observed_means))

    def score(points):
        landed, allowed = (points, True) if landing is None else landing(points)
        return np.where(allowed, acquisition_scores(gp, landed, acquisition, observed_means[incumbent], xi, kappa),
                        -np.inf)

    return maximise_acquisition(score, observed.shape[1], rng, observed[incumbent], candidates)


def _evaluate(objective, point: np.ndarray, proposed_by: str) -> Evaluation:
    value = float(objective(point))
    if not math.isfinite(value):
        raise ValueError(f"bayesian_optimisation: the objective returned {value} at {point}; return a finite value "
                         f"(for a diverged run, a large finite loss) so the GP can use it")
    return Evaluation(point, value, proposed_by)


def bayesian_optimisation(objective, dimension: int, budget: int, initial_points: int = 5, kernel: str = "matern52",
                          acquisition: str = "ei", xi: float = 0.01, kappa: float = 2.0, candidates: int = 2000,
                          seed: int = 0) -> SearchHistory:
    """Minimise objective(point) over [0, 1]^dimension with `budget` evaluations, the first `initial_points`
    from a Latin hypercube.

    acquisition: "ei" (expected improvement over the incumbent, margin xi) or "lcb" (mean - kappa std).
    """
    check_acquisition(acquisition, "bayesian_optimisation")
    if not 1 <= initial_points <= budget or dimension < 1:
        raise ValueError(f"bayesian_optimisation: need dimension >= 1 and 1 <= initial_points <= budget, got "
                         f"dimension={dimension}, initial_points={initial_points}, budget={budget}; the GP needs a "
                         f"few random points before its proposals mean anything")
    rng = np.random.default_rng(seed)
    evaluations = [_evaluate(objective, point, "initial") for point in latin_hypercube(initial_points, dimension, rng)]
    gp = surrogate_model(kernel, seed)
    while len(evaluations) < budget:
        observed = np.array([evaluation.point for evaluation in evaluations])
        values = np.array([evaluation.value for evaluation in evaluations])
        proposal = propose(gp, observed, values, rng, acquisition, xi, kappa, candidates)
        evaluations.append(_evaluate(objective, proposal, acquisition))
    return SearchHistory(tuple(evaluations))
