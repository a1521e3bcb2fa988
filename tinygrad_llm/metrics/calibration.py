"""Calibration: does a model that says "90% sure" turn out right 90% of the time?

Group predictions into bins of confidence (the probability given to the predicted class). In each bin compare
the accuracy with the mean confidence; the reliability diagram plots one against the other (a calibrated model
lies on the diagonal), and the expected calibration error (ECE, Naeini et al., 2015) is their gap averaged over
bins, weighted by how many predictions fall in each:

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|        in [0, 1]; 0 for a perfectly calibrated model

Accuracy can be high while ECE is large (an over-confident model), and the reverse: they measure different things.
Bins are equal-width: bin b holds confidences in [b/B, (b+1)/B), the last bin also holds 1.0.
"""
from __future__ import annotations

import numbers

import numpy as np


def confidences_and_correct(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    """(max probability per row, whether its argmax equals the label) from probabilities (N, C) and labels (N,)."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(f"confidences_and_correct: need probabilities (N, C) and labels (N,), got "
                         f"{probabilities.shape} and {labels.shape}")
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == labels


def reliability_bins(confidences, correct, num_bins: int = 10) -> dict:
    """Per equal-width confidence bin: edges (B + 1,), counts, accuracy and mean confidence (nan in empty bins)."""
    confidences, correct = _check(confidences, correct, num_bins, "reliability_bins")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidences, side="right") - 1, 0, num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=num_bins) / counts
        confidence = np.bincount(bins, weights=confidences, minlength=num_bins) / counts
    return {"edges": edges, "counts": counts, "accuracy": accuracy, "confidence": confidence}


def expected_calibration_error(confidences, correct, num_bins: int = 10) -> float:
    """ECE: the count-weighted mean over bins of |accuracy - mean confidence| (module docstring)."""
    bins = reliability_bins(confidences, correct, num_bins)
    filled = bins["counts"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["counts"][filled] * gaps) / np.sum(bins["counts"]))


def _check(confidences, correct, num_bins, caller: str) -> tuple[np.ndarray, np.ndarray]:
    confidences, correct = np.asarray(confidences, dtype=np.float64), np.asarray(correct)
    if confidences.ndim != 1 or correct.shape != confidences.shape or len(confidences) == 0:
        raise ValueError(f"{caller}: confidences and correct must be 1-D of the same non-zero length, got shapes "
                         f"{confidences.shape} and {correct.shape}; from probabilities use confidences_and_correct")
    if not np.all((confidences >= 0) & (confidences <= 1)):
        raise ValueError(f"{caller}: confidences must be probabilities in [0, 1], got values from "
                         f"{np.nanmin(confidences)} to {np.nanmax(confidences)}; apply softmax to logits first")
    if not np.all((correct == 0) | (correct == 1)):
        raise ValueError(f"{caller}: correct must be booleans (or 0/1): was each prediction right?")
    if isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral) or num_bins < 1:
        raise ValueError(f"{caller}: num_bins must be an integer >= 1, got {num_bins!r}")
    return confidences, correct.astype(np.float64)
