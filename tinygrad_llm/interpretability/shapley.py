"""Shapley values for the words of a sentence: exact by enumeration, and KernelSHAP when there are too many (Q32).

Treat the d words as players and v(S) = the probability of the explained class when only the words in S are
present (word_perturbation.py). Word i's Shapley value is its marginal contribution averaged over every order
in which the words could arrive:

    phi_i = sum over S not containing i of  |S|! (d - |S| - 1)! / d!  *  (v(S + i) - v(S))

The weight is the fraction of the d! orders in which exactly the words of S come before i. It is the only
sharing rule with these four properties, which the tests check:
    efficiency  sum_i phi_i = v(all words) - v(no words)
    symmetry    two words that v treats the same get the same value
    dummy       a word that never changes v gets 0
    linearity   the values of a v1 + b v2 are a phi(v1) + b phi(v2)

Exact enumeration costs 2^d model calls (4096 sentences at 12 words). KernelSHAP instead samples coalitions
and fits the linear model v(S) ~ v(none) + sum_{i in S} phi_i by weighted least squares with the Shapley kernel

    pi(S) = (d - 1) / (C(d, |S|) |S| (d - |S|))

whose exact solution over all coalitions is the Shapley values themselves; the efficiency property is imposed
as a constraint, so it holds exactly however few samples are drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb, factorial
from typing import Callable, Sequence

import numpy as np

from .word_perturbation import Predict, check_words, coalition_value_function

MAX_EXACT_WORDS = 12

ValueFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ShapleyExplanation:
    """Per-word Shapley values for one class; values.sum() == full_value - empty_value."""
    words: tuple[str, ...]
    target: int
    values: np.ndarray
    empty_value: float  # v(no words): the prediction with every word absent
    full_value: float   # v(all words): the prediction being explained


def all_coalitions(num_words: int) -> np.ndarray:
    """(2^d, d) boolean masks; row c has word i present where bit i of c is set, so the row of S + {i} is
    row(S) | (1 << i) and the first and last rows are no words and all words."""
    return ((np.arange(2 ** num_words)[:, None] >> np.arange(num_words)) & 1).astype(bool)


def evaluate(value_of: ValueFunction, masks: np.ndarray, caller: str) -> np.ndarray:
    """value_of(masks) as a checked (n,) float64 vector."""
    values = np.asarray(value_of(masks), dtype=np.float64)
    if values.shape != (len(masks),):
        raise ValueError(f"{caller}: the value function must return one number per coalition, shape "
                         f"({len(masks)},), got {values.shape}")
    return values


def shapley_weight(coalition_size: np.ndarray, num_words: int) -> np.ndarray:
    """|S|! (d - |S| - 1)! / d!: the share of the d! arrival orders in which exactly S precedes the word."""
    per_size = np.array([factorial(s) * factorial(num_words - 1 - s) for s in range(num_words)]) / factorial(num_words)
    return per_size[coalition_size]


def shapley_values(value_of: ValueFunction, num_words: int) -> np.ndarray:
    """Exact Shapley values (d,) of the set function value_of over all 2^d coalitions (one call to value_of)."""
    if not isinstance(num_words, (int, np.integer)) or num_words < 1:
        raise ValueError(f"shapley_values: num_words must be a positive integer, got {num_words!r}")
    if num_words > MAX_EXACT_WORDS:
        raise ValueError(f"shapley_values: exact Shapley values enumerate 2^{num_words} = {2 ** num_words} coalitions; "
                         f"the limit is {MAX_EXACT_WORDS} words. Use kernel_shap (sampled coalitions) instead")
    masks = all_coalitions(num_words)
    values = evaluate(value_of, masks, "shapley_values")
    coalition = np.arange(2 ** num_words)
    sizes = masks.sum(axis=1)
    phi = np.empty(num_words)
    for word in range(num_words):
        without = coalition[~masks[:, word]]
        marginal = values[without | (1 << word)] - values[without]
        phi[word] = np.sum(shapley_weight(sizes[without], num_words) * marginal)
    return phi


def explanation(words: list[str], target: int, value_of: ValueFunction, values: np.ndarray) -> ShapleyExplanation:
    """Bundle the values with v(no words) and v(all words), which the efficiency property relates them to."""
    empty_value, full_value = evaluate(value_of, np.array([[False] * len(words), [True] * len(words)]), "explanation")
    return ShapleyExplanation(tuple(words), target, values, float(empty_value), float(full_value))


def exact_shapley(predict: Predict, words: Sequence[str], target: int,
                  baseline_token: str | None = None) -> ShapleyExplanation:
    """Exact Shapley values of each word for class `target` of predict(list of sentences) -> (n, classes)
    probabilities; an absent word is removed (or replaced by baseline_token)."""
    words = check_words(words, "exact_shapley")
    if len(words) > MAX_EXACT_WORDS:
        raise ValueError(f"exact_shapley: {len(words)} words need 2^{len(words)} = {2 ** len(words)} sentences; the "
                         f"limit is {MAX_EXACT_WORDS} words. Use kernel_shap (sampled coalitions) for longer sentences")
    value_of = coalition_value_function(predict, words, target, baseline_token, "exact_shapley")
    return explanation(words, target, value_of, shapley_values(value_of, len(words)))


def shapley_kernel_weight(coalition_size: np.ndarray, num_words: int) -> np.ndarray:
    """pi(S) = (d - 1) / (C(d, |S|) |S| (d - |S|)) for 0 < |S| < d. It is infinite for no words and all words:
    those two coalitions enter as the exact constraint instead."""
    size = np.asarray(coalition_size)
    if np.any(size <= 0) or np.any(size >= num_words):
        raise ValueError(f"shapley_kernel_weight: sizes must lie in 1..{num_words - 1} for {num_words} words, got "
                         f"{size}; no words and all words take no weight, they are the constraint")
    coalitions_of_size = np.array([comb(num_words, s) for s in range(num_words + 1)])
    return (num_words - 1) / (coalitions_of_size[size] * size * (num_words - size))


def sample_kernel_coalitions(num_words: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(num_samples, d) masks drawn from the Shapley kernel: a size s in 1..d-1 with probability proportional
    to C(d, s) pi(s) ~ 1 / (s (d - s)), then s words uniformly. Drawn in pairs, each mask with its complement
    (the kernel gives S and not-S the same weight): the pairs cancel much of the sampling noise."""
    sizes = np.arange(1, num_words)
    size_probability = 1.0 / (sizes * (num_words - sizes))
    half = (num_samples + 1) // 2
    drawn_sizes = rng.choice(sizes, size=half, p=size_probability / size_probability.sum())
    ranks = rng.random((half, num_words)).argsort(axis=1).argsort(axis=1)  # a uniform random order of the words
    masks = ranks < drawn_sizes[:, None]
    return np.concatenate([masks, ~masks])[:num_samples]


def efficient_weighted_least_squares(masks: np.ndarray, values: np.ndarray, weights: np.ndarray,
                                     empty_value: float, full_value: float) -> np.ndarray:
    """phi minimising sum_k w_k (values_k - empty_value - masks_k . phi)^2 subject to sum(phi) =
    full_value - empty_value. The constraint is substituted, not penalised: phi_last = total - sum(the others),
    which leaves an ordinary weighted least squares in d - 1 unknowns."""
    masks = np.asarray(masks, dtype=np.float64)
    total = full_value - empty_value
    design = masks[:, :-1] - masks[:, -1:]
    response = values - empty_value - masks[:, -1] * total
    root_weights = np.sqrt(weights)[:, None]
    free, *_ = np.linalg.lstsq(root_weights * design, root_weights[:, 0] * response, rcond=None)
    return np.append(free, total - free.sum())


def kernel_shap_values(value_of: ValueFunction, num_words: int, num_samples: int, seed: int) -> np.ndarray:
    """KernelSHAP estimate (d,) of the Shapley values from num_samples kernel-sampled coalitions (plus no words
    and all words). The kernel is in the sampling, so every drawn coalition counts once in the regression."""
    if not isinstance(num_words, (int, np.integer)) or num_words < 1:
        raise ValueError(f"kernel_shap_values: num_words must be a positive integer, got {num_words!r}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"kernel_shap_values: num_samples must be an integer >= 2, got {num_samples!r}")
    ends = np.array([[False] * num_words, [True] * num_words])
    if num_words == 1:  # no coalition lies strictly between none and all: efficiency alone decides
        empty_value, full_value = evaluate(value_of, ends, "kernel_shap_values")
        return np.array([full_value - empty_value])
    masks = np.concatenate([ends, sample_kernel_coalitions(num_words, num_samples, np.random.default_rng(seed))])
    values = evaluate(value_of, masks, "kernel_shap_values")
    return efficient_weighted_least_squares(masks[2:], values[2:], np.ones(num_samples), values[0], values[1])


def kernel_shap(predict: Predict, words: Sequence[str], target: int, num_samples: int = 2048, seed: int = 0,
                baseline_token: str | None = None) -> ShapleyExplanation:
    """KernelSHAP values of each word for class `target`: exact_shapley's estimate for any sentence length,
    from num_samples + 4 sentences; values.sum() == full_value - empty_value exactly."""
    words = check_words(words, "kernel_shap")
    value_of = coalition_value_function(predict, words, target, baseline_token, "kernel_shap")
    return explanation(words, target, value_of, kernel_shap_values(value_of, len(words), num_samples, seed))
