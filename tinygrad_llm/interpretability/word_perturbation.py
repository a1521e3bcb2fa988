"""Turning words on and off: the one way LIME and Shapley values talk to a model (M52).

A perturbation explainer never touches a model's weights, token ids or raw logits. It only needs

    predict(list of n sentences) -> (n, classes) array of probabilities

so it works on any classifier, and the wrapper that tokenizes, batches and applies the softmax belongs to the
model, not to the explainer. A coalition is a boolean mask over the sentence's words (True = the word is
present); an absent word is removed, or replaced by a baseline token (such as "[MASK]" or "<unk>") where
removing words would shift the positions a model relies on. Every explainer evaluates

    v(mask) = predict([the sentence with that mask])[0, target]

and this module builds those sentences and checks what predict returns, so that a predict that hands back
logits, one column, or the wrong number of rows fails loudly instead of producing a plausible explanation.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Predict = Callable[[list[str]], np.ndarray]


def check_words(words: Sequence[str], caller: str) -> list[str]:
    """The sentence as a list of words: a plain string is refused, because explaining its characters (or
    splitting it in a way the caller did not choose) is never what was meant."""
    if isinstance(words, str):
        raise TypeError(f"{caller}: words must be a list of words, got the string {words!r}; split it first, "
                        f"e.g. {words!r}.split()")
    words = list(words)
    if not words or not all(isinstance(word, str) and word for word in words):
        raise ValueError(f"{caller}: words must be a non-empty list of non-empty strings, got {words!r}")
    return words


def sentences_from_masks(words: Sequence[str], masks: np.ndarray, baseline_token: str | None = None) -> list[str]:
    """One sentence per row of `masks` (n, len(words)): present words in their order, joined by spaces; an
    absent word is dropped, or replaced by `baseline_token` when one is given."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != len(words):
        raise ValueError(f"sentences_from_masks: masks must have shape (n, {len(words)}) for {len(words)} words, "
                         f"got {masks.shape}")
    if baseline_token is None:
        return [" ".join(word for word, present in zip(words, row) if present) for row in masks]
    return [" ".join(word if present else baseline_token for word, present in zip(words, row)) for row in masks]


def class_probabilities(predict: Predict, sentences: list[str], target: int, caller: str) -> np.ndarray:
    """predict(sentences)[:, target] as float64, after checking that predict kept its contract: a 2-D array,
    one row per sentence, every row a probability distribution over the classes."""
    probabilities = np.asarray(predict(list(sentences)), dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(sentences):
        raise ValueError(f"{caller}: predict must return an (n, classes) array for n = {len(sentences)} sentences, "
                         f"got shape {probabilities.shape}; wrap a model that returns one score per sentence as "
                         f"[1 - p, p]")
    if not (np.all(np.isfinite(probabilities)) and np.all(probabilities >= 0) and np.all(probabilities <= 1)
            and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)):
        raise ValueError(f"{caller}: predict must return probabilities (each row in [0, 1], summing to 1), got rows "
                         f"summing to {probabilities.sum(axis=1)[:3]}...; were logits returned? apply a softmax")
    if not (isinstance(target, (int, np.integer)) and 0 <= target < probabilities.shape[1]):
        raise ValueError(f"{caller}: target must be a class index in [0, {probabilities.shape[1]}), got {target!r}")
    return probabilities[:, target]


def coalition_value_function(predict: Predict, words: Sequence[str], target: int,
                             baseline_token: str | None, caller: str) -> Callable[[np.ndarray], np.ndarray]:
    """v(masks) -> (n,) probabilities of `target` for the sentences those masks keep: the set function that
    LIME fits a line to and that Shapley values share out among the words."""
    def value_of(masks: np.ndarray) -> np.ndarray:
        return class_probabilities(predict, sentences_from_masks(words, masks, baseline_token), target, caller)
    return value_of
