"""LIME for text: explain one prediction by a linear model that is only asked to be right near the sentence (Q32).

    1. perturb   draw masks z in {0, 1}^d over the d words (word i kept where z_i = 1); the first mask keeps
                 every word, each other one drops a uniformly drawn number of words, 1 to d, chosen at random
    2. query     y = predict(the perturbed sentences)[:, target], the class probability (word_perturbation.py)
    3. weight    w = exp(-D(z, all ones)^2 / kernel_width^2): sentences that lost few words count most
                 (D is the cosine distance 1 - sqrt(|z| / d), or the Hamming distance: the fraction dropped)
    4. select    greedily add the word whose inclusion most raises the weighted R^2, up to num_features words
    5. fit       weighted ridge regression y ~ intercept + sum over selected words of weight_i z_i

The surrogate's coefficients are the explanation: how much the class probability moves, near this sentence,
when word i is present rather than dropped. Its weighted R^2 says how far to trust it: a low R^2 means the model
is not close to linear in word presence here (negators, interactions), and the coefficients are then an
average effect, not the model's reason. LIME is random: the same seed gives the same explanation, and
comparing seeds measures its stability.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .word_perturbation import Predict, check_words, coalition_value_function

DISTANCES = ("cosine", "hamming")


@dataclass(frozen=True)
class LimeExplanation:
    """The surrogate y ~ intercept + weights . z; words outside `selected` have weight 0."""
    words: tuple[str, ...]
    target: int
    weights: np.ndarray
    intercept: float
    r2: float  # weighted R^2 of the surrogate on the perturbed sentences
    selected: tuple[int, ...]


def sample_word_dropping_masks(num_words: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(num_samples, d) boolean masks: row 0 keeps every word (the sentence being explained); row k drops a
    number of words drawn uniformly from 1..d, the words themselves uniformly."""
    num_dropped = rng.integers(1, num_words + 1, size=num_samples - 1)
    ranks = rng.random((num_samples - 1, num_words)).argsort(axis=1).argsort(axis=1)  # a random order of words
    return np.concatenate([np.ones((1, num_words), dtype=bool), ranks >= num_dropped[:, None]])


def proximity_weights(masks: np.ndarray, kernel_width: float, distance: str = "cosine") -> np.ndarray:
    """exp(-D^2 / kernel_width^2) with D the distance of each mask from the full sentence, in [0, 1]."""
    kept_fraction = np.asarray(masks, dtype=bool).mean(axis=1)
    if distance == "cosine":
        gap = 1.0 - np.sqrt(kept_fraction)  # cosine(z, ones) = |z| / sqrt(|z| d); no words left gives 1
    elif distance == "hamming":
        gap = 1.0 - kept_fraction
    else:
        raise ValueError(f"proximity_weights: distance must be one of {DISTANCES}, got {distance!r}")
    return np.exp(-gap ** 2 / kernel_width ** 2)


def weighted_ridge(features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                   ridge: float) -> tuple[np.ndarray, float]:
    """(coefficients, intercept) minimising sum_k w_k (y_k - b - x_k . c)^2 + ridge |c|^2. The intercept is not
    shrunk: centring x and y on their weighted means removes it from the penalised problem."""
    features = np.asarray(features, dtype=np.float64)
    mean_x = weights @ features / weights.sum()
    mean_y = weights @ targets / weights.sum()
    centred = features - mean_x
    gram = centred.T @ (weights[:, None] * centred) + ridge * np.eye(features.shape[1])
    coefficients = np.linalg.solve(gram, centred.T @ (weights * (targets - mean_y)))
    return coefficients, float(mean_y - mean_x @ coefficients)


def weighted_r_squared(features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                       coefficients: np.ndarray, intercept: float) -> float:
    """1 - weighted residual sum of squares / weighted total sum of squares (about the weighted mean); 1.0
    when the targets do not vary, since a constant then fits them exactly."""
    residual = targets - intercept - np.asarray(features, dtype=np.float64) @ coefficients
    spread = targets - weights @ targets / weights.sum()
    total = weights @ spread ** 2
    return 1.0 if total <= 1e-300 else float(1.0 - weights @ residual ** 2 / total)


def forward_selection(masks: np.ndarray, targets: np.ndarray, weights: np.ndarray, num_features: int,
                      ridge: float) -> list[int]:
    """Greedy: start from no words, and num_features times add the word whose ridge fit has the highest
    weighted R^2 together with those already chosen."""
    chosen: list[int] = []
    for _ in range(num_features):
        def fit_quality(word: int) -> float:
            columns = masks[:, chosen + [word]]
            return weighted_r_squared(columns, targets, weights, *weighted_ridge(columns, targets, weights, ridge))
        candidates = [word for word in range(masks.shape[1]) if word not in chosen]
        chosen.append(max(candidates, key=fit_quality))
    return sorted(chosen)


def lime_explain(predict: Predict, words: Sequence[str], target: int, num_samples: int = 1000,
                 num_features: int | None = None, kernel_width: float = 0.25, distance: str = "cosine",
                 ridge: float = 1.0, seed: int = 0, baseline_token: str | None = None) -> LimeExplanation:
    """LIME weights of the words for class `target` of predict(list of sentences) -> (n, classes) probabilities,
    from num_samples perturbed sentences; num_features=None keeps every word in the surrogate."""
    words = check_words(words, "lime_explain")
    num_features = len(words) if num_features is None else num_features
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"lime_explain: num_samples must be an integer >= 2, got {num_samples!r}")
    if not isinstance(num_features, (int, np.integer)) or not 1 <= num_features <= len(words):
        raise ValueError(f"lime_explain: num_features must be an integer in 1..{len(words)} (the number of words), "
                         f"got {num_features!r}")
    if not kernel_width > 0 or not ridge >= 0:
        raise ValueError(f"lime_explain: kernel_width must be > 0 and ridge >= 0, got {kernel_width!r} and {ridge!r}")
    masks = sample_word_dropping_masks(len(words), num_samples, np.random.default_rng(seed))
    weights = proximity_weights(masks, kernel_width, distance)
    targets = coalition_value_function(predict, words, target, baseline_token, "lime_explain")(masks)
    selected = (list(range(len(words))) if num_features == len(words)
                else forward_selection(masks, targets, weights, num_features, ridge))
    coefficients, intercept = weighted_ridge(masks[:, selected], targets, weights, ridge)
    word_weights = np.zeros(len(words))
    word_weights[selected] = coefficients
    r2 = weighted_r_squared(masks[:, selected], targets, weights, coefficients, intercept)
    return LimeExplanation(tuple(words), target, word_weights, intercept, r2, tuple(selected))
