"""Chapter 14 experiment (Q36, M57): the accuracy-fairness trade-off of four bias mitigations.

    fairness_mitigations(fast)   a logistic regression trained on planted-bias data plainly, with reweighing,
                                 with resampling, with class weights, and plainly but with per-group thresholds;
                                 held-out accuracy and the three group gaps of each

The held-out labels carry the same planted bias as the training labels, so accuracy against them rewards
reproducing the bias: a mitigation that closes the gaps is expected to lose some of it (the trade-off).
Returns a dict of plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..nn import Linear
from ..nn import functional as F
from ..random import manual_seed
from ..responsible import fairness
from ..tensor import Tensor


def train_logistic_regression(features: np.ndarray, labels: np.ndarray, steps: int, sample_weight=None,
                              class_weight=None, lr: float = 0.1, seed: int = 0) -> Linear:
    """Full-batch Adam on (optionally sample- or class-weighted) cross-entropy; two logits, one per label."""
    manual_seed(seed)
    model = Linear(features.shape[1], 2)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    inputs = Tensor(features.astype(np.float32))
    for _ in range(steps):
        loss = F.cross_entropy(model(inputs), labels, weight=class_weight, sample_weight=sample_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def positive_scores(model: Linear, features: np.ndarray) -> np.ndarray:
    """P(y = 1 | x) under the model."""
    with no_grad():
        return F.softmax(model(Tensor(features.astype(np.float32))), axis=-1).data[:, 1].astype(np.float64)


def fairness_mitigations(fast: bool = True, seed: int = 0) -> dict:
    """Accuracy and the three gaps on held-out data for each training method (see the module docstring)."""
    num_train, num_test, steps = (4000, 4000, 150) if fast else (40000, 40000, 400)
    train = fairness.planted_bias_data(num_train, seed=seed)
    test = fairness.planted_bias_data(num_test, seed=seed + 1)
    reweighing = fairness.reweighing_weights(train.labels, train.group)
    resampled = fairness.resample_indices(reweighing, seed=seed)
    models = {
        "plain": train_logistic_regression(train.features, train.labels, steps, seed=seed),
        "reweighing": train_logistic_regression(train.features, train.labels, steps, sample_weight=reweighing,
                                                seed=seed),
        "resampling": train_logistic_regression(train.features[resampled], train.labels[resampled], steps,
                                                seed=seed),
        "class_weights": train_logistic_regression(
            train.features, train.labels, steps, class_weight=fairness.balanced_class_weights(train.labels),
            seed=seed),
    }
    results = {}
    for name, model in models.items():
        decisions = (positive_scores(model, test.features) > 0.5).astype(np.int64)
        results[name] = fairness.fairness_report(decisions, test.labels, test.group)
    # Post-processing: the plain model, but each group accepted at the plain model's overall training rate.
    plain_rate = float((positive_scores(models["plain"], train.features) > 0.5).mean())
    thresholds = fairness.per_group_thresholds(positive_scores(models["plain"], train.features), train.group,
                                               plain_rate)
    decisions = fairness.apply_group_thresholds(positive_scores(models["plain"], test.features), test.group,
                                                thresholds)
    results["group_thresholds"] = fairness.fairness_report(decisions, test.labels, test.group)
    return {
        "num_train": num_train, "steps": steps,
        "minority_fraction": float(train.group.mean()),
        "train_positive_rate_by_group": fairness.selection_rates(train.labels, train.group),
        "methods": results,
    }
