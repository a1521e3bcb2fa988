"""The chapter 4 exercises (BPE pair counts, a BPE merge step, a padded batch with mask and targets): each reference
agrees with the library, other correct styles pass, and classic wrong answers are rejected by the property that
names their bug. The wrong answers are real functions, named after the bug (spot-the-bug material); the shared
bank test (test_exercises.py) grades the references, the starters and WRONG_ANSWERS below with every other
exercise.
"""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm.exercises as ex
from tinygrad_llm.data import lm_inputs_and_targets, pad_batch
from tinygrad_llm.data.byte_bpe_tokenizer import learn_merges, merge_pair
from tinygrad_llm.exercises.tokenization import bpe_merge_step, bpe_pair_counts, padding_mask_and_targets

pytestmark = [pytest.mark.exercises, pytest.mark.tokenization]

TOKENIZATION_EXERCISES = ["bpe_pair_counts", "bpe_merge_step", "padding_mask_and_targets"]

# ---- bpe_pair_counts -------------------------------------------------------------------------------------

def pair_counts_step_by_two(ids):
    return dict(Counter(zip(ids[::2], ids[1::2])))


def pair_counts_stop_one_early(ids):
    counts = {}
    for i in range(len(ids) - 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def pair_counts_ignore_order(ids):
    return dict(Counter(tuple(sorted(pair)) for pair in zip(ids, ids[1:])))


def pair_counts_keyed_by_strings(ids):
    return dict(Counter(f"{a},{b}" for a, b in zip(ids, ids[1:])))


# ---- bpe_merge_step --------------------------------------------------------------------------------------

def merge_step_overlapping(ids, pair, new_id):
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            merged.append(new_id)
            i += 1  # the second token of the match is read again
        else:
            merged.append(ids[i])
            i += 1
    return merged


def merge_step_drops_last_token(ids, pair, new_id):
    merged, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def merge_step_first_occurrence_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return list(ids[:i]) + [new_id] + list(ids[i + 2:])
    return list(ids)


def merge_step_right_to_left(ids, pair, new_id):
    merged, i = [], len(ids) - 1
    while i >= 0:
        if i >= 1 and (ids[i - 1], ids[i]) == tuple(pair):
            merged.append(new_id)
            i -= 2
        else:
            merged.append(ids[i])
            i -= 1
    return merged[::-1]


# ---- padding_mask_and_targets ----------------------------------------------------------------------------

def targets_include_padding(sequences, pad_id, ignore_index):
    inputs, mask, _ = padding_mask_and_targets(sequences, pad_id, ignore_index)
    longest = max(map(len, sequences))
    ids = np.array([list(s) + [pad_id] * (longest - len(s)) for s in sequences], dtype=np.int64)
    return inputs, mask, ids[:, 1:]


def mask_from_pad_id_equality(sequences, pad_id, ignore_index):
    longest = max(map(len, sequences))
    ids = np.array([list(s) + [pad_id] * (longest - len(s)) for s in sequences], dtype=np.int64)
    is_padding = ids == pad_id
    targets = np.where(is_padding[:, 1:], ignore_index, ids[:, 1:])
    return ids[:, :-1], is_padding[:, :-1], targets


def targets_not_shifted(sequences, pad_id, ignore_index):
    inputs, mask, targets = padding_mask_and_targets(sequences, pad_id, ignore_index)
    return inputs, mask, np.where(targets == ignore_index, ignore_index, inputs)


def padding_mask_as_integers(sequences, pad_id, ignore_index):
    inputs, mask, targets = padding_mask_and_targets(sequences, pad_id, ignore_index)
    return inputs, mask.astype(np.int64), targets


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("bpe_pair_counts", pair_counts_step_by_two, "every adjacent position"),
    ("bpe_pair_counts", pair_counts_stop_one_early, "every adjacent position"),
    ("bpe_pair_counts", pair_counts_ignore_order, "different pairs"),
    ("bpe_pair_counts", pair_counts_keyed_by_strings, "keys are pairs of ints"),
    ("bpe_merge_step", merge_step_overlapping, "no token is lost"),
    ("bpe_merge_step", merge_step_drops_last_token, "no token is lost"),
    ("bpe_merge_step", merge_step_first_occurrence_only, "no longer occurs"),
    ("bpe_merge_step", merge_step_right_to_left, "left to right"),
    ("padding_mask_and_targets", targets_include_padding, "never a target"),
    ("padding_mask_and_targets", mask_from_pad_id_equality, "a row has run out"),
    ("padding_mask_and_targets", targets_not_shifted, "shifted by one"),
    ("padding_mask_and_targets", padding_mask_as_integers, "bool array"),
]


def test_the_tokenization_exercises_are_registered():
    """Their reference solutions, starter code and WRONG_ANSWERS above are graded in test_exercises.py, with
    every other exercise of the bank."""
    names = [name for name, _ in ex.list_exercises()]
    assert all(name in names for name in TOKENIZATION_EXERCISES)


@given(st.lists(st.integers(0, 3), max_size=20), st.integers(0, 3), st.integers(0, 3))
def test_merge_step_reference_equals_the_librarys_merge_pair(ids, left, right):
    assert bpe_merge_step(ids, (left, right), 256) == merge_pair(ids, (left, right), 256)


@given(st.lists(st.integers(0, 3), min_size=2, max_size=20))
def test_bpe_training_merges_the_most_frequent_counted_pair_first(ids):
    counts = bpe_pair_counts(ids)
    best = max(counts.values())
    merges = learn_merges({bytes(ids): 1}, num_merges=1, min_pair_count=1)
    assert merges[0].count == best
    assert merges[0].pair == min(pair for pair, count in counts.items() if count == best)  # ties: smallest pair


@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=4)
       .filter(lambda rows: max(map(len, rows)) >= 2), st.integers(0, 5))
def test_padding_reference_equals_the_librarys_pad_batch_and_lm_targets(sequences, pad_id):
    inputs, mask, targets = padding_mask_and_targets(sequences, pad_id, -100)
    library_inputs, library_targets, library_mask = lm_inputs_and_targets(pad_batch(sequences, pad_id), -100)
    np.testing.assert_array_equal(inputs, library_inputs)
    np.testing.assert_array_equal(mask, library_mask)
    np.testing.assert_array_equal(targets, library_targets)


def test_the_statement_example_holds():
    inputs, mask, targets = padding_mask_and_targets([[5, 6, 7], [8, 9]], 0, -100)
    assert inputs.tolist() == [[5, 6], [8, 9]] and mask.tolist() == [[False, False], [False, False]]
    assert targets.tolist() == [[6, 7], [9, -100]]
    assert bpe_pair_counts([7, 7, 7]) == {(7, 7): 2} and bpe_merge_step([7, 7, 7], (7, 7), 9) == [9, 7]


def test_other_correct_styles_pass():
    """A Counter of pairs, a merge that returns a NumPy array, and a batch built with list padding."""
    def pair_counts_with_counter(ids):
        return Counter(zip(ids, ids[1:]))

    def merge_into_array(ids, pair, new_id):
        out, skip = [], False
        for i, token in enumerate(ids):
            if skip:
                skip = False
            elif i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
                out.append(new_id)
                skip = True
            else:
                out.append(token)
        return np.array(out, dtype=np.int64)

    def batch_from_lists(sequences, pad_id, ignore_index):
        longest = max(len(s) for s in sequences)
        ids = np.array([s + [pad_id] * (longest - len(s)) for s in sequences], dtype=np.int64)
        real = np.array([[t < len(s) for t in range(longest)] for s in sequences])
        return ids[:, :-1], ~real[:, :-1], np.where(real[:, 1:], ids[:, 1:], ignore_index)

    for name, function in (("bpe_pair_counts", pair_counts_with_counter), ("bpe_merge_step", merge_into_array),
                           ("padding_mask_and_targets", batch_from_lists)):
        result = ex.get_exercise(name).grade(function)
        assert result, str(result)
