"""Grid search and random search: every trial gets the full budget, and nothing learns from earlier trials.

With the same number of trials, random search usually wins when only a few hyperparameters matter: a grid of
k points per parameter tries only k distinct values of the one that matters, however many parameters there
are, while n random draws try n distinct values of every parameter.
"""
import numpy as np

from ..random import generator
from .search_space import SearchSpace
from .trial import evaluate


def random_search(objective, space: SearchSpace, trials: int, budget=1, rng: np.random.Generator | None = None,
                  on_trial=None) -> list:
    """`trials` configurations drawn independently from the space, each evaluated with the full budget."""
    if trials < 1:
        raise ValueError(f"random_search: trials must be at least 1, got {trials}")
    rng = generator() if rng is None else rng
    return [evaluate(objective, space.sample(rng), budget, number, on_trial) for number in range(trials)]


def grid_search(objective, space: SearchSpace, points_per_parameter, budget=1, on_trial=None) -> list:
    """Every point of the space's grid (see SearchSpace.grid), each evaluated with the full budget."""
    return [evaluate(objective, config, budget, number, on_trial)
            for number, config in enumerate(space.grid(points_per_parameter))]
