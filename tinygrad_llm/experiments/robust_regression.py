"""Chapter 14 experiment (Q35, M56): fitting a line through 10% outliers, and finding the outliers.

    robust_regression(fast)   y = 10x + 5 and y = 2x + 1, each with 10% of the points pushed up by 30 to 60, fitted
                              by MSE, Huber and the truncated quadratic from the same start (0, 0); then the
                              outliers flagged from the MSE fit's residuals by z-score and by MAD, and MSE refitted
                              on the points MAD kept

MSE's line is dragged up by the outliers' mean offset (about 4.5). Huber lands near the truth: an outlier's pull is
capped at delta, though not removed, so its intercept still sits about 0.1 high. The truncated quadratic caps the
pull at 0, so from (0, 0) on y = 10x + 5, where almost every point is further than delta from the start, it barely
moves; on y = 2x + 1 most points start within delta and the same loss happens to work. The z-score misses many of
the outliers (they inflate the standard deviation that should expose them); MAD finds them all.

Returns a dict of plain numbers; fast=True is the CI size.
"""
from __future__ import annotations

import time

import numpy as np

from ..metrics.classification import precision_recall_f1
from ..nn import functional as F
from ..nn.layers import Linear
from ..optim import SGD
from ..responsible.outliers import mad_outliers, truncated_quadratic_loss, zscore_outliers
from ..tensor import Tensor

LOSSES = {"mse": F.mse_loss, "huber": F.huber_loss, "truncated_quadratic": truncated_quadratic_loss}
LINES = {"y=10x+5": (10.0, 5.0), "y=2x+1": (2.0, 1.0)}


def line_with_outliers(slope: float, intercept: float, num_points: int, outlier_fraction: float = 0.1,
                       noise: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x uniform in [-1, 1], y = slope * x + intercept + N(0, noise^2), and a random `outlier_fraction` of the
    points moved up by U(30, 60). Returns (x, y, is_outlier)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, num_points)
    y = slope * x + intercept + rng.normal(0, noise, num_points)
    is_outlier = np.zeros(num_points, dtype=bool)
    is_outlier[rng.choice(num_points, round(outlier_fraction * num_points), replace=False)] = True
    y[is_outlier] += rng.uniform(30, 60, is_outlier.sum())
    return x, y, is_outlier


def fit_line(x: np.ndarray, y: np.ndarray, loss, steps: int, lr: float = 0.1, momentum: float = 0.9) -> dict:
    """Full-batch gradient descent on loss(w * x + b, y) from w = b = 0; returns the fitted slope and intercept."""
    model = Linear(1, 1)
    model.weight.data[...] = 0
    model.bias.data[...] = 0
    optimizer = SGD(model.parameters(), lr=lr, momentum=momentum)
    inputs, targets = Tensor(x[:, None].astype(model.weight.dtype)), y[:, None].astype(model.weight.dtype)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(model(inputs), targets).backward()
        optimizer.step()
    return {"slope": float(model.weight.data[0, 0]), "intercept": float(model.bias.data[0])}


def _with_errors(fit: dict, slope: float, intercept: float) -> dict:
    return {**fit, "slope_error": abs(fit["slope"] - slope), "intercept_error": abs(fit["intercept"] - intercept)}


def detection_scores(flagged: np.ndarray, is_outlier: np.ndarray) -> dict:
    """Precision (flagged points that are outliers) and recall (outliers that were flagged)."""
    precision, recall, _ = precision_recall_f1(is_outlier.astype(int), flagged.astype(int), labels=[1])
    return {"flagged": int(flagged.sum()), "precision": precision, "recall": recall}


def robust_regression(fast: bool = True, seed: int = 0) -> dict:
    """The three losses on both lines from the same start, and z-score against MAD on the MSE fit's residuals."""
    num_points, steps = (200, 150) if fast else (2000, 400)
    start = time.perf_counter()
    data = {name: line_with_outliers(*line, num_points, seed=seed) for name, line in LINES.items()}
    fits = {name: {loss_name: _with_errors(fit_line(x, y, loss, steps), *LINES[name])
                   for loss_name, loss in LOSSES.items()}
            for name, (x, y, _) in data.items()}
    x, y, is_outlier = data["y=10x+5"]
    mse_fit = fits["y=10x+5"]["mse"]
    residuals = y - (mse_fit["slope"] * x + mse_fit["intercept"])
    flagged_by_mad = mad_outliers(residuals)
    refit = fit_line(x[~flagged_by_mad], y[~flagged_by_mad], F.mse_loss, steps)
    return {"num_points": num_points, "steps": steps, "outliers": int(is_outlier.sum()), "fits": fits,
            "detection": {"zscore": detection_scores(zscore_outliers(residuals), is_outlier),
                          "mad": detection_scores(flagged_by_mad, is_outlier)},
            "mse_without_mad_outliers": _with_errors(refit, *LINES["y=10x+5"]),
            "seconds": time.perf_counter() - start}
