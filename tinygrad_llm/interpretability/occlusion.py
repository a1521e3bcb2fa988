"""Occlusion: take one word away and see how far the target class's probability falls.

    a_i = p(target | all words) - p(target | all words but word i)

The simplest black-box explanation: like LIME and Shapley values it only calls predict(list of sentences) ->
probabilities (M52, word_perturbation.py), here on the sentence and on one copy per word with that word off,
all in one batch. A word the model ignores gets exactly 0; a positive score means the word supported the
target. It looks at one word at a time, so two words that are each enough on their own ("great ... superb")
both score about 0 (each covers for the other): the redundancy that Shapley values, which average over all
coalitions, share out.

baseline_token=None drops the word (the sentence gets shorter); a token such as "<unk>" takes its place
instead, which keeps every other word at its position.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .word_perturbation import Predict, check_words, coalition_value_function


def occlusion(predict: Predict, words: Sequence[str], target: int, baseline_token: str | None = None) -> np.ndarray:
    """One score per word: p(target | sentence) - p(target | sentence with that word dropped or replaced)."""
    words = check_words(words, "occlusion")
    masks = np.vstack([np.ones(len(words), dtype=bool), ~np.eye(len(words), dtype=bool)])
    values = coalition_value_function(predict, words, target, baseline_token, "occlusion")(masks)
    return values[0] - values[1:]
