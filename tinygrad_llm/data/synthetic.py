"""Seeded 2-D classification problems: XOR, two moons and N-arm spirals.

Each generator returns (X, y): X float32 of shape (n, 2), y int64 of shape (n,) with classes 0..k-1 in
equal numbers (as equal as n allows) and shuffled order. The same seed gives the same data. They are the
smallest problems on which a linear classifier provably fails and a one-hidden-layer MLP succeeds:

- XOR: the label is the sign of x0 * x1; no line separates the quadrants (best linear accuracy ~50%).
- two moons: two interleaved half circles; a line gets ~85%, the rest needs a curved boundary.
- spirals: k arms winding around the origin; a line gets little better than chance (1/k).

`decision_grid` builds the grid of points on which a trained classifier is evaluated to draw its
decision regions.
"""
from __future__ import annotations

import numpy as np


def _rng(rng) -> np.random.Generator:
    """A Generator from a seed (int or None) or an existing Generator."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _class_sizes(n: int, num_classes: int) -> list[int]:
    if n < num_classes:
        raise ValueError(f"need at least one point per class: n={n} < num_classes={num_classes}")
    return [n // num_classes + (1 if c < n % num_classes else 0) for c in range(num_classes)]


def _finish(points: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-class point arrays, label them 0..k-1 and shuffle."""
    X = np.concatenate(points).astype(np.float32)
    y = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in enumerate(points)])
    order = rng.permutation(len(y))
    return X[order], y[order]


def make_xor(n: int = 1000, noise: float = 0.0, rng=0, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Points uniform in [-1, 1]^2 (minus a band of width `margin` around the axes); class 1 where x0*x1 > 0.

    `noise` is the std of Gaussian jitter added after labelling, so noisy points can cross the axes.
    """
    rng = _rng(rng)
    points = []
    for label, size in enumerate(_class_sizes(n, 2)):
        magnitude = rng.uniform(margin, 1.0, size=(size, 2))
        signs = rng.choice([-1.0, 1.0], size=size)
        # class 1: same signs (quadrants 1 and 3); class 0: opposite signs (quadrants 2 and 4)
        sign = np.stack([signs, signs if label == 1 else -signs], axis=1)
        points.append(magnitude * sign + noise * rng.standard_normal((size, 2)))
    return _finish(points, rng)


def make_moons(n: int = 1000, noise: float = 0.1, rng=0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's layout): class 0 the upper arc, class 1 the lower,
    shifted by (1, -0.5); then Gaussian noise of std `noise`."""
    rng = _rng(rng)
    upper, lower = _class_sizes(n, 2)
    t0, t1 = rng.uniform(0, np.pi, upper), rng.uniform(0, np.pi, lower)
    points = [
        np.stack([np.cos(t0), np.sin(t0)], axis=1),
        np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1),
    ]
    points = [p + noise * rng.standard_normal(p.shape) for p in points]
    return _finish(points, rng)


def make_spirals(n: int = 1000, num_classes: int = 3, noise: float = 0.2, turns: float = 1.0,
                 rng=0) -> tuple[np.ndarray, np.ndarray]:
    """`num_classes` spiral arms (the CS231n spiral): radius r in [0, 1], angle growing with r by `turns`
    full turns, arms offset by 2*pi/num_classes; `noise` is the std (radians) of Gaussian jitter of the angle."""
    if num_classes < 2:
        raise ValueError(f"make_spirals: num_classes must be at least 2, got {num_classes}")
    rng = _rng(rng)
    points = []
    for c, size in enumerate(_class_sizes(n, num_classes)):
        r = np.sqrt(rng.uniform(0, 1, size))  # sqrt: uniform density along the arm, not bunched at the centre
        theta = 2 * np.pi * (turns * r + c / num_classes) + noise * rng.standard_normal(size)
        points.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
    return _finish(points, rng)


DATASETS = {"xor": make_xor, "moons": make_moons, "spirals": make_spirals}


def make_dataset(name: str, n: int = 1000, rng=0, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """One of DATASETS by name: make_dataset("spirals", 1000, rng=0, num_classes=3)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](n, rng=rng, **kwargs)


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.25, rng=0):
    """A seeded random split into (X_train, y_train, X_test, y_test)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = _rng(rng).permutation(len(y))
    cut = len(y) - int(round(len(y) * test_fraction))
    train, test = order[:cut], order[cut:]
    return X[train], y[train], X[test], y[test]


def decision_grid(X: np.ndarray, resolution: int = 200, padding: float = 0.25):
    """A (resolution x resolution) grid covering X plus `padding` on every side.

    Returns (xx, yy, points): xx and yy of shape (resolution, resolution) for `plt.contourf(xx, yy, z)`,
    and points float32 of shape (resolution**2, 2) to feed the model; reshape its predictions to xx.shape.
    """
    X = np.asarray(X)
    low, high = X.min(axis=0) - padding, X.max(axis=0) + padding
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    points = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    return xx, yy, points
