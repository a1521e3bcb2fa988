"""Bayesian optimisation over a SearchSpace: the loop of bayesian_optimisation.py, run on the unit cube that
SearchSpace.from_unit maps onto configurations, and returning Trials like random and grid search.

Three things change when the points are hyperparameters rather than bare coordinates:
- The GP sees each trial at to_unit(config), the point that stands for its configuration. An integer or a
  categorical choice covers a whole cell of the cube, and every point of the cell is the same configuration; so
  candidates are scored where they land, and the acquisition is flat across a cell, as the objective is.
- Every proposal meets the constraints. A candidate whose configuration breaks one scores -inf, and an initial
  point that breaks one is replaced by a draw from the space; nothing is rounded into place (M55).
- A trial may diverge (a NaN or infinite loss). The GP needs finite numbers, so such a trial enters the model as
  the worst finite loss seen so far: bad enough to steer the search away, without stretching the loss scale.

The proposals depend only on the seed and the losses returned so far, so running the search again with the same
seed and an objective that replays logged losses proposes the same configurations: that is how a search is resumed.
"""
import numpy as np

from .bayesian_optimisation import check_acquisition, latin_hypercube, propose, surrogate_model
from .gaussian_process import KERNELS
from .search_space import SearchSpace, Uniform
from .trial import evaluate


def losses_for_the_model(losses) -> np.ndarray:
    """The losses as the GP sees them: a NaN or infinite loss becomes the worst finite loss among them (0 when
    none is finite yet: the model is then flat, and the acquisition explores where it knows least)."""
    losses = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(losses)
    worst = losses[finite].max() if finite.any() else 0.0
    return np.where(finite, losses, worst)


def _allowed(space: SearchSpace, config: dict, rng: np.random.Generator) -> dict:
    """config when it meets every constraint, else a fresh draw from the space (rejection sampling, which
    raises a clear error when the constraints are never met)."""
    return space.sample(rng) if space.violations(config) else config


def _landing(space: SearchSpace):
    """The map from candidate points to (the points standing for their configurations, whether each meets the
    constraints); None for a space of real parameters without constraints, where every point of the cube is a
    configuration of its own and all are allowed, so the map would cost time and change nothing."""
    if not space.constraints and all(isinstance(p, Uniform) for p in space.parameters.values()):
        return None

    def landing(points):
        configs = [space.from_unit(point) for point in points]
        landed = np.array([space.to_unit(config) for config in configs])
        allowed = np.array([not space.violations(config) for config in configs])
        return landed, allowed

    return landing


def _check_arguments(space, trials, initial_points, kernel, acquisition):
    if not isinstance(space, SearchSpace):
        raise ValueError(f"bayesian_search: space must be a SearchSpace, got {type(space).__name__}; wrap the "
                         f"parameters, e.g. SearchSpace({{'lr': LogUniform(1e-5, 1e-2)}})")
    if not 1 <= initial_points <= trials:
        raise ValueError(f"bayesian_search: need 1 <= initial_points <= trials, got initial_points={initial_points}, "
                         f"trials={trials}; the GP needs a few spread-out trials before its proposals mean anything")
    if kernel not in KERNELS:
        raise ValueError(f"bayesian_search: unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    check_acquisition(acquisition, "bayesian_search")


def bayesian_search(objective, space: SearchSpace, trials: int, budget=1, initial_points: int = 5,
                    kernel: str = "matern52", acquisition: str = "ei", seed: int = 0, on_trial=None,
                    xi: float = 0.01, kappa: float = 2.0, candidates: int = 2000) -> list:
    """`trials` evaluations of objective(config, budget), the first `initial_points` from a Latin hypercube
    over the space and each later one where the GP's acquisition ("ei" or "lcb", see bayesian_optimisation) is
    highest among `candidates` random points and local steps around the best of them. Trials are numbered in
    order and each is handed to on_trial as it finishes. Deterministic given the seed and the losses."""
    _check_arguments(space, trials, initial_points, kernel, acquisition)
    rng = np.random.default_rng(seed)
    initial = [_allowed(space, space.from_unit(point), rng)
               for point in latin_hypercube(initial_points, space.dimension, rng)]
    results = [evaluate(objective, config, budget, number, on_trial) for number, config in enumerate(initial)]
    gp, landing = surrogate_model(kernel, seed), _landing(space)
    while len(results) < trials:
        observed = np.array([space.to_unit(trial.config) for trial in results])
        losses = losses_for_the_model([trial.loss for trial in results])
        point = propose(gp, observed, losses, rng, acquisition, xi, kappa, candidates, landing)
        results.append(evaluate(objective, _allowed(space, space.from_unit(point), rng), budget, len(results),
                                on_trial))
    return results
