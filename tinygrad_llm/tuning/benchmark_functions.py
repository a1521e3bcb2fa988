"""Benchmark objectives with known minima, so a search method's simple regret (best value found minus the true
minimum) can be measured exactly. Each takes points in the unit cube, as BO proposes them, shape (..., d)."""
from __future__ import annotations

import math

import numpy as np

BRANIN_DOMAIN = ((-5.0, 10.0), (0.0, 15.0))
BRANIN_MINIMUM = 0.397887  # reached at three points: (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475)

FORRESTER_MINIMUM = -6.020740  # one-dimensional, near x = 0.7572 (a second, shallower minimum near 0.14)


def _last_axis(point, dimension: int, caller: str) -> np.ndarray:
    point = np.asarray(point, dtype=np.float64)
    if point.shape[-1:] != (dimension,) or np.any(point < 0) or np.any(point > 1):
        raise ValueError(f"{caller}: expected points in the unit cube with last axis {dimension}, got shape "
                         f"{point.shape}, range [{point.min()}, {point.max()}]")
    return point


def branin(point) -> np.ndarray:
    """The Branin-Hoo function, its square [-5, 10] x [0, 15] mapped from the unit square.

    Three global minima of equal value BRANIN_MINIMUM in a long curved valley: a 2-D test that rewards a model of
    the function over blind sampling, and is cheap enough to repeat a search many times.
    """
    point = _last_axis(point, 2, "branin")
    (low1, high1), (low2, high2) = BRANIN_DOMAIN
    x1 = low1 + (high1 - low1) * point[..., 0]
    x2 = low2 + (high2 - low2) * point[..., 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


def forrester(point) -> np.ndarray:
    """(6x - 2)^2 sin(12x - 4) on [0, 1]: a 1-D function with a local minimum that can trap a greedy search."""
    x = _last_axis(point, 1, "forrester")[..., 0]
    return (6 * x - 2) ** 2 * np.sin(12 * x - 4)


def with_gaussian_noise(objective, noise_std: float, seed: int = 0):
    """`objective` plus fresh N(0, noise_std^2) noise on every call: repeated evaluations of one point disagree,
    as validation losses of one configuration do across training seeds."""
    if not noise_std >= 0:
        raise ValueError(f"with_gaussian_noise: noise_std must be >= 0, got {noise_std}")
    rng = np.random.default_rng(seed)

    def noisy_objective(point):
        value = objective(point)
        return value + noise_std * rng.standard_normal(np.shape(value))

    return noisy_objective
