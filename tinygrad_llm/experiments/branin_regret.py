"""Simple regret against the number of evaluations on Branin, for Bayesian optimisation, random search and grid
search with the same budget (Q34).

Simple regret after n evaluations is the best value found so far minus the true minimum (0.397887): how much
worse than perfect the search would be if it stopped there. Each searcher is repeated with fresh seeds and the
curves are summarised by their median and quartiles, because one run of a randomised search says little. The grid
has no randomness: its repeats are identical, and its order of evaluation (row by row) makes its curve
meaningful only at the end, once the whole grid is spent.
"""
import numpy as np

from ..tuning.bayesian_search import bayesian_search
from ..tuning.benchmark_functions import BRANIN_MINIMUM, branin
from ..tuning.search_space import SearchSpace, Uniform
from ..tuning.searchers import grid_search, random_search

# Branin's square as the unit square: the coordinates that benchmark_functions.branin takes.
BRANIN_SPACE = SearchSpace({"u1": Uniform(0.0, 1.0), "u2": Uniform(0.0, 1.0)})
METHODS = ("bo", "random", "grid")


def branin_objective(config: dict, budget) -> float:
    return float(branin(np.array([config["u1"], config["u2"]])))


def regret_curve(trials: list) -> np.ndarray:
    """The simple regret after each evaluation, in the order the trials ran."""
    return np.minimum.accumulate([trial.loss for trial in trials]) - BRANIN_MINIMUM


def branin_regret(fast: bool = True, seed: int = 0) -> dict:
    """Regret curves of BO (5 initial Latin-hypercube points, then expected improvement on a Matern-5/2 GP), random
    search and a k x k grid, each given k^2 evaluations: k = 6 and 20 repeats in full, k = 3 and 3 repeats fast.

    Returns, for each method, the median and the lower and upper quartiles of the regret after 1..k^2
    evaluations (arrays), and the median final regret.
    """
    repeats, grid_points = (3, 3) if fast else (20, 6)
    evaluations = grid_points**2
    grid_curve = regret_curve(grid_search(branin_objective, BRANIN_SPACE, grid_points))
    curves = {method: [] for method in METHODS}
    for repeat in range(repeats):
        curves["bo"].append(regret_curve(bayesian_search(branin_objective, BRANIN_SPACE, evaluations,
                                                         seed=1000 * seed + repeat)))
        rng = np.random.default_rng([seed, repeat])
        curves["random"].append(regret_curve(random_search(branin_objective, BRANIN_SPACE, evaluations, rng=rng)))
        curves["grid"].append(grid_curve)
    result = {"repeats": repeats, "evaluations": evaluations, "evaluation": np.arange(1, evaluations + 1)}
    for method, method_curves in curves.items():
        lower, median, upper = np.percentile(np.array(method_curves), [25, 50, 75], axis=0)
        result.update({f"{method}_median": median, f"{method}_lower_quartile": lower,
                       f"{method}_upper_quartile": upper, f"{method}_final_median_regret": float(median[-1])})
    return result
