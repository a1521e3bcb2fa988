"""Linear probes (Q32): is a feature written, as a direction, in a layer's hidden states?

Collect the residual stream of one layer for many tokens, label each token with a binary feature (e.g. "is
the previous character a space?"), and fit a LINEAR classifier from the hidden state to the label. High
accuracy on held-out sequences means the feature can be read off with one dot product: it is linearly
present there. The probe is kept deliberately weak (linear) so that it reads what the model computed
rather than computing the feature itself.

The fit is ridge regression onto +-1 targets, each class weighted to half the total: a least-squares linear
classifier, one linear solve with no learning rate and no randomness, so a probe's accuracy depends on the
features only.

A probe's accuracy means little alone; compare it with controls:
- the same probe on a randomly initialised model of the same shape: what the architecture and the input
  tokens already give for free (a token's own identity is in every layer, trained or not);
- the same probe on shuffled labels: what a probe can fit to noise (about 0.5 on held-out data).
Accuracy here is balanced (the mean of the accuracies on each class), so chance is 0.5 however rare the
feature: plain accuracy would reward a probe that always answers "no" to a feature 13% of tokens have.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics.classification import recall
from .logit_lens import residual_stream


@dataclass
class ProbeResult:
    """A fitted probe: label = weights . h + bias > 0, and its balanced accuracy on the fit and held-out data."""
    weights: np.ndarray
    bias: float
    train_accuracy: float
    test_accuracy: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return _predict(self.weights, self.bias, features)


def _predict(weights: np.ndarray, bias: float, features: np.ndarray) -> np.ndarray:
    return np.asarray(features, dtype=np.float64) @ weights + bias > 0


def _check_binary(labels: np.ndarray, features: np.ndarray, role: str) -> np.ndarray:
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"train_linear_probe: {role} features must be (N, d) and labels (N,), got "
                         f"{features.shape} and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"train_linear_probe: {role} labels must be 0/1 or booleans, got values "
                         f"{np.unique(labels)[:10]}")
    return labels.astype(bool)


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The mean of the accuracy on the positives and on the negatives: 0.5 for any guess that ignores the
    input (always "no" included), however rare the feature, so a probe for a rare feature cannot look good
    by predicting the majority class."""
    return recall(np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int), average="macro", labels=[0, 1])


def train_linear_probe(train_features, train_labels, test_features, test_labels, ridge: float = 1e-2) -> ProbeResult:
    """Fit a ridge-regression probe on (N, d) features with binary labels; score it (balanced accuracy) on
    the training and the test set.

    Features are standardised with the training set's mean and spread (layers differ in scale). Each class
    carries half the total weight in the fit, so a rare feature is not drowned by the common class. `ridge`
    is the penalty per training example on the standardised weights (the bias is not penalised).
    """
    train_features = np.asarray(train_features, dtype=np.float64)
    test_features = np.asarray(test_features, dtype=np.float64)
    train_labels = _check_binary(train_labels, train_features, "train")
    test_labels = _check_binary(test_labels, test_features, "test")
    for role, labels in (("training", train_labels), ("test", test_labels)):
        if labels.all() or not labels.any():
            raise ValueError(f"train_linear_probe: the {role} labels are all one class; a probe needs both")
    mean, spread = train_features.mean(axis=0), train_features.std(axis=0) + 1e-8
    count, width = train_features.shape
    design = np.hstack([(train_features - mean) / spread, np.ones((count, 1))])
    targets = np.where(train_labels, 1.0, -1.0)
    sample_weights = np.where(train_labels, 0.5 / train_labels.mean(), 0.5 / (1 - train_labels.mean()))
    penalty = ridge * count * np.eye(width + 1)
    penalty[-1, -1] = 0.0
    solution = np.linalg.solve(design.T @ (design * sample_weights[:, None]) + penalty,
                               design.T @ (sample_weights * targets))
    weights = solution[:-1] / spread  # the same probe on the raw features
    bias = float(solution[-1] - mean @ weights)
    return ProbeResult(weights, bias,
                       train_accuracy=balanced_accuracy(_predict(weights, bias, train_features), train_labels),
                       test_accuracy=balanced_accuracy(_predict(weights, bias, test_features), test_labels))


def previous_token_labels(ids, token: int) -> np.ndarray:
    """(B, T) ids -> (B, T) booleans: is the token just before this one `token`? (False at position 0.) A
    feature a GPT can only hold at a position if attention brought it there from the one before."""
    ids = np.asarray(ids)
    labels = np.zeros(ids.shape, dtype=bool)
    labels[:, 1:] = ids[:, :-1] == token
    return labels


def probe_layer(model, ids, labels, layer: int, test_fraction: float = 0.25, ridge: float = 1e-2) -> ProbeResult:
    """Probe the residual stream after block `layer` (0: after the embeddings) of a GPT for per-token binary
    labels (B, T). The last test_fraction of the SEQUENCES is held out, so no test token shares a sequence
    (and its context) with a training token."""
    hidden = residual_stream(model, ids)
    if not 0 <= layer < len(hidden):
        raise ValueError(f"probe_layer: layer must be in [0, {len(hidden) - 1}] (0 = after the embeddings), "
                         f"got {layer}")
    labels = np.asarray(labels)
    batch, time, width = hidden[layer].shape
    if labels.shape != (batch, time):
        raise ValueError(f"probe_layer: labels must have the shape of ids {(batch, time)}, got {labels.shape}")
    test_rows = int(round(batch * test_fraction))
    if not 1 <= test_rows < batch:
        raise ValueError(f"probe_layer: test_fraction {test_fraction} of {batch} sequences leaves no train or "
                         f"no test sequence; use more sequences")
    split = batch - test_rows
    features = hidden[layer]
    return train_linear_probe(features[:split].reshape(-1, width), labels[:split].reshape(-1),
                              features[split:].reshape(-1, width), labels[split:].reshape(-1), ridge=ridge)


def probe_with_controls(model, untrained_model, ids, labels, layer: int, seed: int = 0, **probe_options) -> dict:
    """Test balanced accuracy of the probe on `model`, on `untrained_model` (a freshly initialised model of the
    same configuration) and on `model` with the labels shuffled across all tokens (chance: 0.5)."""
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(labels.reshape(-1)).reshape(labels.shape)
    return {
        "model": probe_layer(model, ids, labels, layer, **probe_options).test_accuracy,
        "untrained_model": probe_layer(untrained_model, ids, labels, layer, **probe_options).test_accuracy,
        "shuffled_labels": probe_layer(model, ids, shuffled, layer, **probe_options).test_accuracy,
    }
