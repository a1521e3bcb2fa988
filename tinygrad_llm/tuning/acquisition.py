"""Acquisition functions: how much a new evaluation at x is worth, given the GP's belief N(mean(x), std(x)^2).

BO minimises an objective (a validation loss). An acquisition function turns the posterior into a score and BO
evaluates wherever the score is highest. A good score rewards both a low predicted mean (exploitation) and a large
uncertainty (exploration); all of them here work on whole arrays of candidates at once.
"""
from __future__ import annotations

import math

import numpy as np

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def standard_normal_cdf(z: np.ndarray) -> np.ndarray:
    """Phi(z) = erfc(-z / sqrt 2) / 2. Written with erfc, not 1 + erf, so that deep in the left tail (z << 0),
    where EI lives far from the incumbent, it keeps its relative precision instead of rounding to 0."""
    return 0.5 * _erfc(-np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


def standard_normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.asarray(z, dtype=np.float64) ** 2) / math.sqrt(2.0 * math.pi)


def _check_std(std: np.ndarray, caller: str) -> None:
    if np.any(std < 0) or not np.all(np.isfinite(std)):
        raise ValueError(f"{caller}: std must be finite and >= 0 (a standard deviation, not a variance: pass "
                         f"np.sqrt(variance)), got min {np.min(std)}")


def expected_improvement(mean, std, best: float, xi: float = 0.0) -> np.ndarray:
    """E[max(best - xi - f, 0)] for f ~ N(mean, std^2): how far below the best value so far (less a margin xi)
    a new evaluation is expected to land, counting a miss as 0. For minimisation.

    With improvement I = best - xi - mean and z = I / std:   EI = I Phi(z) + std phi(z)   (and max(I, 0) where
    std = 0). It grows as the mean falls (exploitation) and as std grows (exploration); xi > 0 asks for a real
    improvement, pushing towards exploration.
    """
    mean, std = np.broadcast_arrays(np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))
    _check_std(std, "expected_improvement")
    improvement = best - xi - mean
    certain = std == 0
    # A subnormal std overflows z to +-inf, where Phi and phi take their correct limits (0 or 1, and 0).
    with np.errstate(over="ignore"):
        z = improvement / np.where(certain, 1.0, std)
        uncertain_ei = improvement * standard_normal_cdf(z) + std * standard_normal_pdf(z)
    # EI >= 0 exactly; where both terms underflow towards 0 rounding can leave a value a hair below it.
    return np.where(certain, np.maximum(improvement, 0.0), np.maximum(uncertain_ei, 0.0))


def upper_confidence_bound(mean, std, kappa: float = 2.0) -> np.ndarray:
    """mean + kappa std: an optimistic guess of f, the score to maximise when maximising f. kappa sets how many
    standard deviations of optimism buy exploration."""
    std = np.asarray(std, dtype=np.float64)
    _check_std(std, "upper_confidence_bound")
    return np.asarray(mean, dtype=np.float64) + kappa * std


def lower_confidence_bound(mean, std, kappa: float = 2.0) -> np.ndarray:
    """mean - kappa std: the optimistic guess when minimising f, where BO evaluates the point of LOWEST bound.
    The mirror of upper_confidence_bound: LCB(mean, std) = -UCB(-mean, std)."""
    return -upper_confidence_bound(-np.asarray(mean, dtype=np.float64), std, kappa)
