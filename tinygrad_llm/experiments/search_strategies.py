"""Two facts behind the non-Bayesian searchers, measured (no training needed, so the full size runs in seconds).

1. Random search beats grid search when only some hyperparameters matter: a 3 x 3 grid tries three values of
   the one that matters, nine random draws try nine.
2. The scale of a draw (M55): on [1e-5, 1e-2] a uniform draw exceeds 1e-3 with probability
   (1e-2 - 1e-3) / (1e-2 - 1e-5) = 0.9009, a log-uniform draw with probability 1/3.
"""
import numpy as np

from ..tuning.search_space import LogUniform, SearchSpace, Uniform
from ..tuning.searchers import grid_search, random_search
from ..tuning.trial import best_trial


def random_versus_grid(fast: bool = True, seed: int = 0) -> dict:
    """Median simple regret (best loss found minus the optimum, 0) of a 3 x 3 grid and of 9 random draws on
    (x - x*)^2 + 0.001 (y - 0.5)^2, where only x matters and x* is drawn afresh for every repeat."""
    repeats = 20 if fast else 500
    rng = np.random.default_rng(seed)
    space = SearchSpace({"x": Uniform(0.0, 1.0), "y": Uniform(0.0, 1.0)})
    regrets = {"grid": [], "random": []}
    distinct_x = {"grid": [], "random": []}
    for _ in range(repeats):
        optimum = rng.random()

        def objective(config, budget):
            return (config["x"] - optimum) ** 2 + 0.001 * (config["y"] - 0.5) ** 2

        runs = {"grid": grid_search(objective, space, 3), "random": random_search(objective, space, 9, rng=rng)}
        for method, trials in runs.items():
            regrets[method].append(best_trial(trials).loss)
            distinct_x[method].append(len({t.config["x"] for t in trials}))
    return {"repeats": repeats, "trials": 9,
            **{f"{method}_median_regret": float(np.median(values)) for method, values in regrets.items()},
            **{f"{method}_distinct_x": float(np.median(values)) for method, values in distinct_x.items()}}


def learning_rate_above_1e_3(fast: bool = True, seed: int = 0) -> dict:
    """The share of learning rates drawn on [1e-5, 1e-2] that exceed 1e-3, uniformly and log-uniformly,
    measured on draws and computed exactly."""
    draws = 10_000 if fast else 200_000
    rng = np.random.default_rng(seed)
    result = {"draws": draws}
    for name, parameter in {"uniform": Uniform(1e-5, 1e-2), "log_uniform": LogUniform(1e-5, 1e-2)}.items():
        space = SearchSpace({"lr": parameter})
        samples = np.array([space.sample(rng)["lr"] for _ in range(draws)])
        result[f"{name}_share_above"] = float(np.mean(samples > 1e-3))
        result[f"{name}_exact_share_above"] = 1 - parameter.cdf(1e-3)
        result[f"{name}_median"] = float(np.median(samples))
    return result
