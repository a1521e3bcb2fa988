"""Distinct-n: how varied generated text is (Li et al., 2016), the diversity side of the decoding trade-off.

Greedy decoding tends to repeat itself; higher temperature, top-k and top-p add variety (Q19).
Distinct-n counts it: the fraction of a set of samples' n-grams that are different from each other.
"""
from __future__ import annotations

import numbers

import numpy as np


def distinct_n(sequences, n: int) -> float:
    """Distinct n-grams / total n-grams, pooled over all sequences (corpus-level distinct-n), in [0, 1].

    sequences: an iterable of token sequences (lists or 1-D arrays of ids, or strings for characters); a
    2-D array counts as one sequence per row. An n-gram never spans two sequences, and a sequence shorter
    than n contributes none. 1.0 means no n-gram repeats; a text that loops over the same phrase tends to 0.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"distinct_n: n must be an integer >= 1 (the n-gram length), got {n!r}")
    distinct, total = set(), 0
    for sequence in sequences:
        tokens = sequence if isinstance(sequence, str) else np.asarray(sequence)
        if not isinstance(tokens, str):
            if tokens.ndim != 1:
                raise ValueError(f"distinct_n: each sequence must be 1-D (token ids, or a string), got one of shape "
                                 f"{tokens.shape}; pass a list of sequences ([ids] for a single one)")
            tokens = tokens.tolist()
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        distinct.update(grams)
        total += len(grams)
    if total == 0:
        raise ValueError(f"distinct_n: the sequences hold no {n}-gram (all shorter than {n} tokens), so the "
                         "fraction is undefined; generate longer samples or use a smaller n")
    return len(distinct) / total
