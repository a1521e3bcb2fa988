"""Empirical scaling laws (Q25) and Amdahl's law (Q24): fitting the curves that say how far more scale goes.

    loss      L(N) = a * N^-alpha + c        bigger models help, with diminishing returns, down to a floor c
    compute   C    = 6 N D                   FLOPs to train N parameters on D tokens
    speedup   S(K) = 1 / (s + (1 - s) / K)   K workers, of which a serial fraction s cannot use more than one

All three are fitted trends, not laws of nature: they hold over the range they were measured on, they bend
when something else (data, context, bandwidth, a fixed overhead) becomes the bottleneck, and extrapolating
one far past its data is a guess. The fitters are written from scratch on NumPy, in a few lines each.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GOLDEN = (math.sqrt(5) - 1) / 2  # 0.618...: each step of a golden-section search keeps this share of the bracket
ALPHA_RANGE = (1e-3, 3.0)        # exponents searched; language-model fits land between about 0.05 and 1


@dataclass(frozen=True)
class PowerLaw:
    """L(N) = a * N^-alpha + c, fitted by fit_power_law; residual is the root-mean-square error in loss units."""
    a: float
    alpha: float
    c: float
    residual: float

    def predict(self, N) -> np.ndarray:
        return self.a * np.asarray(N, dtype=np.float64) ** -self.alpha + self.c


def _checked_pairs(function: str, x, y, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D float64 arrays of the same length, all positive and finite, or a ValueError that says which."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"{function}: {x_name} and {y_name} must be 1-D and of the same length, got shapes "
                         f"{x.shape} and {y.shape}")
    for name, values in ((x_name, x), (y_name, y)):
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"{function}: every {name} must be positive and finite, got {values.tolist()}")
    return x, y


def _amplitude_and_floor(x: np.ndarray, L: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, c) of L = a x + c with c >= 0 (a loss floor cannot be negative): for a fixed exponent
    the power law is a straight line in x = N^-alpha. When the unconstrained floor is negative the best
    admissible one is c = 0, and then a is the slope of a line through the origin."""
    a, c = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), L, rcond=None)[0]
    if c < 0:
        a, c = x @ L / (x @ x), 0.0
    return float(a), float(c)


def golden_section_minimum(f, lo: float, hi: float, tol: float = 1e-7) -> float:
    """The x in [lo, hi] minimising f, for f with one minimum there: shrink the bracket around the lower of two
    interior points until it is narrower than tol (each step reuses one point, so costs one evaluation)."""
    x1, x2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    f1, f2 = f(x1), f(x2)
    while hi - lo > tol:
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - GOLDEN * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + GOLDEN * (hi - lo)
            f2 = f(x2)
    return (lo + hi) / 2


def fit_power_law(N, L, grid_points: int = 200) -> PowerLaw:
    """Least-squares fit of L(N) = a * N^-alpha + c, in the units of L.

    How: for a fixed exponent alpha the model is linear in a and c (a straight line in x = N^-alpha), so
    the best (a, c) is ordinary least squares and only alpha needs searching. A grid over alpha finds the
    valley of the squared error, and a golden-section search refines alpha inside it.

    Why c matters: c is the irreducible loss (the entropy of the text itself, plus whatever the model
    family can never capture); only the part above it shrinks as a power of N. Leave it out and fit a
    straight line to log L against log N: the points bend towards c, the line cannot, so its slope (the
    exponent) comes out too small, and extrapolated it keeps falling at that slope while the real curve
    levels off: forecasts for larger N come out too optimistic, and in the end below c, which no model
    can reach.

    How the fit fails: three parameters need more than three points, and the points must span enough of
    the curve to show it bend. Over a narrow range of N (or with a small alpha), a N^-alpha is almost a
    straight line in log N, and a larger a with a smaller alpha and a lower c fits the same points: the
    parameters trade off and noise decides between them. The measured losses must fall by several times
    their noise, and the reducible part must shrink by a clear factor (say 3x) across the range. A fitted
    a <= 0 says the losses do not fall with N at all: there is no law to fit (look at the training recipe).
    """
    N, L = _checked_pairs("fit_power_law", N, L, "N", "L")
    if len(N) < 4 or np.unique(N).size < 4:
        raise ValueError(f"fit_power_law: a, alpha and c need at least 4 distinct model sizes, got N = {N.tolist()}")

    def squared_error(alpha: float) -> float:
        x = N ** -alpha
        a, c = _amplitude_and_floor(x, L)
        return float(np.sum((a * x + c - L) ** 2))

    # Search log(alpha): equal steps are equal ratios, so small and large exponents get the same resolution.
    grid = np.geomspace(*ALPHA_RANGE, grid_points)
    best = int(np.argmin([squared_error(alpha) for alpha in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid_points - 1)]
    alpha = math.exp(golden_section_minimum(lambda log_alpha: squared_error(math.exp(log_alpha)),
                                            math.log(lo), math.log(hi)))
    a, c = _amplitude_and_floor(N ** -alpha, L)
    return PowerLaw(a=a, alpha=alpha, c=c, residual=math.sqrt(squared_error(alpha) / len(N)))


def training_flops(N, D):
    """C = 6 N D: the FLOPs to train N parameters on D tokens.

    Each parameter is one multiply-add (2 FLOPs) per token in the forward pass, and two more in the backward
    pass (one product for the gradient of the layer's input, one for the gradient of the weight itself):
    2 + 4 = 6 FLOPs per parameter per token. Left out: attention's scores and weighted sums, which have no
    parameters (about 12 L T d FLOPs per token more over a full window of T tokens, small while d is large
    against T), and what is not a matrix product: layer norm, softmax and GELU are O(d) per token, the
    optimizer O(N) per step rather than per token.
    """
    return 6 * np.asarray(N, dtype=np.float64) * np.asarray(D, dtype=np.float64)


def amdahl_speedup(workers, serial_fraction: float):
    """Amdahl's law: the serial part of the work takes the same time on K workers, the rest runs K times faster."""
    workers = np.asarray(workers, dtype=np.float64)
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / workers)


def fit_amdahl(workers, speedups) -> float:
    """The serial fraction s of Amdahl's law, S(K) = 1 / (s + (1 - s) / K), fitted to measured speedups.

    s is the share of one worker's time that more workers cannot shorten (in data-parallel training: the
    gradient all-reduce, the optimizer step every rank repeats, start-up, logging). It caps the speedup at
    1/s however many workers join: s = 0.1 means never more than 10x.

    Fitting: 1/S = s + (1 - s)/K rearranges to 1/S - 1/K = s (1 - 1/K), a line through the origin in
    u = 1 - 1/K, so the least-squares s is sum(u v) / sum(u u) with v = 1/S - 1/K (in time per unit of work,
    where Amdahl's law is linear). K = 1 carries no information (u = 0) and at least one K > 1 is needed.
    The result is clipped to [0, 1]: speedups above K (superlinear, e.g. from caches) would give s < 0, and
    a slowdown (more processes than cores, each one waiting for a core) would give s > 1; neither is a
    serial fraction, and s = 1 reads as "more workers bought nothing".
    """
    workers, speedups = _checked_pairs("fit_amdahl", workers, speedups, "workers", "speedups")
    u, v = 1.0 - 1.0 / workers, 1.0 / speedups - 1.0 / workers
    if not np.any(u > 0):
        raise ValueError(f"fit_amdahl: needs a speedup measured at more than one worker, got workers = "
                         f"{workers.tolist()}")
    return float(np.clip(u @ v / (u @ u), 0.0, 1.0))
