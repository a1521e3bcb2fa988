"""Fairness of a binary classifier across groups (Q36, M57): data with a planted bias, the three standard gap
metrics, and four mitigations.

A model trained on biased labels learns the bias. Metrics compare a classifier's behaviour between the groups of a
protected attribute (the gap is the largest rate minus the smallest):
    demographic parity   P(yhat = 1 | group): does each group get positive decisions equally often?
    equal opportunity    the true-positive rate per group: are the qualified treated alike?
    equalized odds       the true-positive AND the false-positive rate per group.
Mitigations act on the data (reweighing, resampling), or on the decisions (per-group thresholds). Class weights
are the contrast: they balance the labels, not the groups, so they leave the group gap in place (M57).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GroupedData:
    """Features (N, D), 0/1 labels (N,) and a protected group id (N,) for each example."""

    features: np.ndarray
    labels: np.ndarray
    group: np.ndarray


def planted_bias_data(num_examples: int, minority_fraction: float = 0.1, label_bias: float = 1.0,
                      seed: int = 0) -> GroupedData:
    """Two groups with the SAME distribution of true merit, but historical labels biased against the minority.

    Merit m ~ N(0, 1) in both groups; the recorded label is 1[m + noise - label_bias * group > 0]. The features are a
    noisy view of m and the group id itself, so a classifier can (and will) learn to use the group. Group 1 is
    the minority (about minority_fraction of the examples).
    """
    if not 0 < minority_fraction < 1:
        raise ValueError(f"planted_bias_data: minority_fraction must be in (0, 1), got {minority_fraction}")
    rng = np.random.default_rng(seed)
    group = (rng.random(num_examples) < minority_fraction).astype(np.int64)
    merit = rng.standard_normal(num_examples)
    labels = (merit + 0.5 * rng.standard_normal(num_examples) - label_bias * group > 0).astype(np.int64)
    observed_merit = merit + 0.5 * rng.standard_normal(num_examples)
    features = np.stack([observed_merit, group.astype(np.float64)], axis=1)
    return GroupedData(features, labels, group)


# ---------------------------------------------------------------------------- metrics
def _check_binary(name: str, **arrays: np.ndarray) -> list[np.ndarray]:
    """Flat int arrays of one length; predictions and labels must be 0/1."""
    flat = {key: np.asarray(value).reshape(-1) for key, value in arrays.items()}
    lengths = {key: value.shape[0] for key, value in flat.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name}: the arrays must have one entry per example, got lengths {lengths}")
    for key in ("predictions", "labels"):
        if key in flat and not np.isin(flat[key], (0, 1)).all():
            raise ValueError(f"{name}: {key} must be 0/1 decisions (threshold the scores first), got "
                             f"values {np.unique(flat[key])[:5]}")
    return list(flat.values())


def _rate_per_group(name: str, outcome: np.ndarray, group: np.ndarray, among: np.ndarray, what: str) -> dict:
    """Mean of `outcome` over the examples in `among`, for each group; an empty cell is an error, not a 0."""
    rates = {}
    for g in np.unique(group):
        cell = (group == g) & among
        if not cell.any():
            raise ValueError(f"{name}: group {g} has no {what}, so its rate is undefined; use more data")
        rates[g.item()] = float(outcome[cell].mean())
    return rates


def selection_rates(predictions, group) -> dict:
    """P(yhat = 1 | group) for each group."""
    predictions, group = _check_binary("selection_rates", predictions=predictions, group=group)
    return _rate_per_group("selection_rates", predictions, group, np.ones_like(group, dtype=bool), "examples")


def true_positive_rates(predictions, labels, group) -> dict:
    """P(yhat = 1 | y = 1, group) for each group: the share of the truly positive that the model accepts."""
    predictions, labels, group = _check_binary("true_positive_rates", predictions=predictions, labels=labels,
                                               group=group)
    return _rate_per_group("true_positive_rates", predictions, group, labels == 1, "positive labels")


def false_positive_rates(predictions, labels, group) -> dict:
    """P(yhat = 1 | y = 0, group) for each group: the share of the truly negative that the model accepts."""
    predictions, labels, group = _check_binary("false_positive_rates", predictions=predictions, labels=labels,
                                               group=group)
    return _rate_per_group("false_positive_rates", predictions, group, labels == 0, "negative labels")


def _gap(rates: dict) -> float:
    return max(rates.values()) - min(rates.values())


def demographic_parity_difference(predictions, group) -> float:
    """Largest minus smallest selection rate across groups (0 = every group is selected equally often)."""
    return _gap(selection_rates(predictions, group))


def equal_opportunity_difference(predictions, labels, group) -> float:
    """Largest minus smallest true-positive rate across groups."""
    return _gap(true_positive_rates(predictions, labels, group))


def equalized_odds_difference(predictions, labels, group) -> float:
    """The larger of the TPR gap and the FPR gap: zero only when both error profiles match across groups."""
    return max(_gap(true_positive_rates(predictions, labels, group)),
               _gap(false_positive_rates(predictions, labels, group)))


def fairness_report(predictions, labels, group) -> dict:
    """Accuracy and the three gaps, as plain floats."""
    predictions, labels, group = _check_binary("fairness_report", predictions=predictions, labels=labels,
                                               group=group)
    return {
        "accuracy": float((predictions == labels).mean()),
        "demographic_parity_difference": demographic_parity_difference(predictions, group),
        "equal_opportunity_difference": equal_opportunity_difference(predictions, labels, group),
        "equalized_odds_difference": equalized_odds_difference(predictions, labels, group),
    }


# ---------------------------------------------------------------------------- mitigations
def reweighing_weights(labels, group) -> np.ndarray:
    """Kamiran-Calders weights w = P(group) P(y) / P(group, y), one per example.

    Under these weights the joint distribution of (group, y) becomes the product of its marginals: the group
    no longer predicts the label, while each group keeps its share and each label its share.
    """
    labels, group = _check_binary("reweighing_weights", labels=labels, group=group)
    weights = np.empty(labels.shape[0])
    for g in np.unique(group):
        for y in (0, 1):
            cell = (group == g) & (labels == y)
            if not cell.any():
                raise ValueError(f"reweighing_weights: no example has group {g} and label {y}; the weight "
                                 f"P(group) P(y) / P(group, y) is undefined")
            weights[cell] = (group == g).mean() * (labels == y).mean() / cell.mean()
    return weights


def weighted_positive_rates(labels, group, weights) -> dict:
    """P_w(y = 1 | group) in the data weighted by `weights`: the check that reweighing did its job."""
    labels, group, weights = _check_binary("weighted_positive_rates", labels=labels, group=group, weights=weights)
    rates = {}
    for g in np.unique(group):
        in_group = group == g
        rates[g.item()] = float(weights[in_group] @ labels[in_group] / weights[in_group].sum())
    return rates


def resample_indices(weights, num_samples: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices drawn WITH replacement, each example with probability proportional to its weight.

    The resampled data matches the weighted data only in expectation (and repeats examples), whereas weighting the
    loss is exact: the two are different estimators of the same objective (M57).
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("resample_indices: weights must be non-negative and not all zero")
    rng = np.random.default_rng(seed)
    return rng.choice(weights.shape[0], size=num_samples or weights.shape[0], replace=True,
                      p=weights / weights.sum())


def balanced_class_weights(labels, num_classes: int = 2) -> np.ndarray:
    """Per-CLASS weights N / (K * count_k), for cross_entropy's weight=: they rebalance the labels only, so two
    examples with the same label always get the same weight, whatever their group (the contrast, M57)."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"balanced_class_weights: every class needs an example, got counts {counts.tolist()}")
    return counts.sum() / (num_classes * counts)


def per_group_thresholds(scores, group, selection_rate: float) -> dict:
    """A score threshold for each group that accepts `selection_rate` of that group (post-processing for
    demographic parity: the model is unchanged, only its decision rule differs by group)."""
    scores, group = (np.asarray(a).reshape(-1) for a in (scores, group))
    if not 0 < selection_rate < 1:
        raise ValueError(f"per_group_thresholds: selection_rate must be in (0, 1), got {selection_rate}")
    return {g.item(): float(np.quantile(scores[group == g], 1 - selection_rate)) for g in np.unique(group)}


def apply_group_thresholds(scores, group, thresholds: dict) -> np.ndarray:
    """0/1 decisions: score > the threshold of the example's own group."""
    scores, group = (np.asarray(a).reshape(-1) for a in (scores, group))
    missing = set(np.unique(group).tolist()) - set(thresholds)
    if missing:
        raise ValueError(f"apply_group_thresholds: no threshold for groups {sorted(missing)}")
    cutoffs = np.array([thresholds[g] for g in group.tolist()])
    return (scores > cutoffs).astype(np.int64)
