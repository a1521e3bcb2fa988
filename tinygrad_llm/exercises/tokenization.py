"""Exercises on tokenization and text I/O (chapter 4): the two steps of BPE training, and a padded
batch with its mask and next-token targets.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference


def bpe_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair of token ids occurs in `ids`: {(left, right): count}.

    Every position i < len(ids) - 1 contributes the pair (ids[i], ids[i + 1]), so overlapping pairs count
    ([7, 7, 7] has the pair (7, 7) twice). Only pairs that occur are keys.
    """
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def bpe_merge_step(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by new_id, scanning left to right without overlap.

    After a match at positions (i, i + 1) the scan continues at i + 2, so [7, 7, 7] with the pair (7, 7)
    becomes [new_id, 7]. Returns a new list of ints; new_id does not occur in ids.
    """
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def padding_mask_and_targets(sequences: list[list[int]], pad_id: int,
                             ignore_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Next-token training arrays for a batch of token-id lists of different lengths (the longest has >= 2).

    Right-pad every sequence with pad_id to the longest length T, giving ids (B, T). Return
    (inputs, padding_mask, targets), each of shape (B, T - 1):
      inputs = ids[:, :-1] (int64); padding_mask (bool) is True where an input is padding;
      targets = ids[:, 1:] (int64), with ignore_index wherever the target is padding.
    pad_id may also be an ordinary token inside a sequence: padding is where a row has run out.
    """
    longest = max(len(sequence) for sequence in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    is_padding = np.ones((len(sequences), longest), dtype=bool)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = sequence
        is_padding[row, :len(sequence)] = False
    targets = ids[:, 1:].copy()
    targets[is_padding[:, 1:]] = ignore_index
    return ids[:, :-1], is_padding[:, :-1], targets


# ---- shared ----------------------------------------------------------------------------------------------

def _as_id_list(name: str, drawn: dict, expected, received) -> list[int]:
    """The learner's sequence of ids as a list of Python ints, or a PropertyFailed saying what came back."""
    if isinstance(received, np.ndarray) and received.ndim == 1 and np.issubdtype(received.dtype, np.integer):
        return [int(x) for x in received]
    if isinstance(received, (list, tuple)) and all(isinstance(x, (int, np.integer)) for x in received):
        return [int(x) for x in received]
    raise PropertyFailed(name, drawn, expected, received, "return a list of int token ids")


@st.composite
def token_ids(draw) -> list[int]:
    """Lists of up to 12 ids over a 4-token alphabet, so pairs repeat and runs like [2, 2, 2] are common."""
    return draw(st.lists(st.integers(0, 3), max_size=12))


# ---- bpe_pair_counts -------------------------------------------------------------------------------------

@st.composite
def pair_count_inputs(draw) -> dict:
    return {"ids": draw(token_ids())}


PAIRS_ARE_A_DICT = "returns a dict {(left, right): count} whose keys are pairs of ints and values positive ints"
EVERY_POSITION = ("every adjacent position is counted once, overlapping pairs too: the counts add up to "
                  "len(ids) - 1")
ORDERED_PAIRS = ("each count is the number of positions i with ids[i] == left and ids[i + 1] == right "
                 "((a, b) and (b, a) are different pairs)")


def _pair_counts_of(learner, drawn: dict, name: str) -> dict[tuple[int, int], int]:
    expected = bpe_pair_counts(**drawn)
    received = call_learner(learner, drawn, name)
    if not isinstance(received, dict):
        raise PropertyFailed(name, drawn, expected, received, "return a dict (a Counter is fine)")
    counts = {}
    for key, value in received.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(x, (int, np.integer)) for x in key)
                and isinstance(value, (int, np.integer)) and value > 0):
            raise PropertyFailed(name, drawn, expected, received,
                                 f"the entry {key!r}: {value!r} is not (int, int): positive int; keys are tuples "
                                 "of two ids (not lists or strings), and only pairs that occur are keys")
        counts[(int(key[0]), int(key[1]))] = int(value)
    return counts


def _pairs_are_a_dict(learner, drawn: dict) -> None:
    _pair_counts_of(learner, drawn, PAIRS_ARE_A_DICT)


def _counts_every_position(learner, drawn: dict) -> None:
    counts = _pair_counts_of(learner, drawn, EVERY_POSITION)
    expected_total = max(0, len(drawn["ids"]) - 1)
    if sum(counts.values()) != expected_total:
        raise PropertyFailed(EVERY_POSITION, drawn, {"sum of counts": expected_total},
                             {"sum of counts": sum(counts.values()), "counts": counts},
                             "pair i is (ids[i], ids[i + 1]) for every i from 0 to len(ids) - 2: step by one "
                             "position, not by two, and stop at the last pair, not before it")


def _counts_ordered_pairs(learner, drawn: dict) -> None:
    counts = _pair_counts_of(learner, drawn, ORDERED_PAIRS)
    expected = bpe_pair_counts(**drawn)
    if counts != expected:
        raise PropertyFailed(ORDERED_PAIRS, drawn, expected, counts,
                             "the dicts differ; count the pair as it appears, left id first")


# ---- bpe_merge_step --------------------------------------------------------------------------------------

@st.composite
def merge_inputs(draw) -> dict:
    """ids, a pair (usually one that occurs in ids, so there is something to merge) and a fresh new_id."""
    ids = draw(token_ids())
    occurring = list(zip(ids, ids[1:]))
    if occurring and draw(st.booleans()):
        pair = draw(st.sampled_from(occurring))
    else:
        pair = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    return {"ids": ids, "pair": pair, "new_id": draw(st.sampled_from([4, 256]))}


@st.composite
def repeated_pair_inputs(draw) -> dict:
    """A pair of two equal ids in a list of only two ids: runs like [0, 0, 0] where the scan order matters."""
    return {"ids": draw(st.lists(st.integers(0, 1), max_size=12)), "pair": draw(st.sampled_from([(0, 0), (1, 1)])),
            "new_id": 4}


MERGE_RETURNS_IDS = "returns a list of int token ids"
LOSSLESS = "expanding every new_id back into the pair gives ids again: no token is lost, duplicated or reordered"
NONE_LEFT = "every occurrence is merged: the pair no longer occurs anywhere in the result"
MERGE_EXACT = "matches the reference for any ids and pair"
LEFT_TO_RIGHT = "occurrences are merged left to right without overlap: [7, 7, 7] with (7, 7) -> [new_id, 7]"


def _merged_of(learner, drawn: dict, name: str) -> list[int]:
    return _as_id_list(name, drawn, bpe_merge_step(**drawn), call_learner(learner, drawn, name))


def _returns_ids(learner, drawn: dict) -> None:
    _merged_of(learner, drawn, MERGE_RETURNS_IDS)


def _lossless(learner, drawn: dict) -> None:
    merged = _merged_of(learner, drawn, LOSSLESS)
    expanded = [x for token in merged for x in (drawn["pair"] if token == drawn["new_id"] else (token,))]
    if expanded != list(drawn["ids"]):
        raise PropertyFailed(LOSSLESS, drawn, {"expanded": list(drawn["ids"])},
                             {"your result": merged, "expanded": expanded},
                             "a match uses up BOTH tokens (continue at i + 2); every other token is copied once, "
                             "the last one too")


def _none_left(learner, drawn: dict) -> None:
    merged = _merged_of(learner, drawn, NONE_LEFT)
    left = [i for i in range(len(merged) - 1) if (merged[i], merged[i + 1]) == tuple(drawn["pair"])]
    if left:
        raise PropertyFailed(NONE_LEFT, drawn, bpe_merge_step(**drawn), merged,
                             f"the pair is still at position(s) {left}; keep scanning after the first match")


def _left_to_right(learner, drawn: dict) -> None:
    merged = _merged_of(learner, drawn, LEFT_TO_RIGHT)
    expected = bpe_merge_step(**drawn)
    if merged != expected:
        raise PropertyFailed(LEFT_TO_RIGHT, drawn, expected, merged,
                             "scan from the start: in a run like [7, 7, 7] the first two tokens merge, so the "
                             "leftover token is on the right")


def _matches_merge_reference(learner, drawn: dict) -> None:
    merged = _merged_of(learner, drawn, MERGE_EXACT)
    expected = bpe_merge_step(**drawn)
    if merged != expected:
        raise PropertyFailed(MERGE_EXACT, drawn, expected, merged, "the lists differ")


# ---- padding_mask_and_targets ----------------------------------------------------------------------------

@st.composite
def batch_inputs(draw) -> dict:
    """1-4 sequences over ids 0..5, lengths 1-6 with the longest >= 2; pad_id also in 0..5 (it may be a real id)."""
    sequences = draw(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=4)
                     .filter(lambda rows: max(map(len, rows)) >= 2))
    return {"sequences": sequences, "pad_id": draw(st.integers(0, 5)),
            "ignore_index": draw(st.sampled_from([-100, -1]))}


BATCH_NAMES = ("inputs", "padding_mask", "targets")
BATCH_SHAPES = "returns (inputs, padding_mask, targets), each of shape (B, T - 1) where T is the longest length"
MASK_FROM_LENGTHS = ("padding_mask is a bool array, True exactly where a row has run out, even when pad_id is "
                     "also an ordinary token")
PAD_NEVER_A_TARGET = "a padding position is never a target: each one holds ignore_index, so it adds no loss"
SHIFTED_TARGETS = "the real targets are the sequence shifted by one: targets[b, t] == sequences[b][t + 1]"
BATCH_EXACT = "matches the reference exactly (inputs padded with pad_id on the right)"


def _batch_of(learner, drawn: dict, name: str):
    received = call_learner(learner, drawn, name)
    expect_close(name, drawn, padding_mask_and_targets(**drawn), received, None, None, BATCH_NAMES)
    return received


def _mask_from_lengths(learner, drawn: dict) -> None:
    _, mask, _ = _batch_of(learner, drawn, MASK_FROM_LENGTHS)
    _, expected, _ = padding_mask_and_targets(**drawn)
    if np.asarray(mask).dtype != np.bool_:
        raise PropertyFailed(MASK_FROM_LENGTHS, drawn, {"padding_mask": expected}, {"padding_mask": mask},
                             f"padding_mask has dtype {np.asarray(mask).dtype}; make it bool (~mask of an int "
                             "array is -1 and -2, not a mask)")
    if not np.array_equal(mask, expected):
        raise PropertyFailed(MASK_FROM_LENGTHS, drawn, {"padding_mask": expected}, {"padding_mask": mask},
                             "build the mask from each sequence's length, not from ids == pad_id: a real token "
                             "can have the same id as PAD (GPT-2 pads with its end-of-text token)")


def _pad_never_a_target(learner, drawn: dict) -> None:
    _, _, targets = _batch_of(learner, drawn, PAD_NEVER_A_TARGET)
    lengths = np.array([len(sequence) for sequence in drawn["sequences"]])
    target_is_padding = np.arange(1, targets.shape[1] + 1)[None, :] >= lengths[:, None]
    if not np.all(targets[target_is_padding] == drawn["ignore_index"]):
        raise PropertyFailed(PAD_NEVER_A_TARGET, drawn, {"targets": padding_mask_and_targets(**drawn)[2]},
                             {"targets": targets},
                             "set every target that is padding to ignore_index; otherwise the loss trains the "
                             "model to predict PAD after the end of each short sequence")


def _shifted_targets(learner, drawn: dict) -> None:
    _, _, targets = _batch_of(learner, drawn, SHIFTED_TARGETS)
    for row, sequence in enumerate(drawn["sequences"]):
        if list(targets[row, :len(sequence) - 1]) != list(sequence[1:]):
            raise PropertyFailed(SHIFTED_TARGETS, drawn, {"targets": padding_mask_and_targets(**drawn)[2]},
                                 {"targets": targets},
                                 f"row {row}: the target at position t is the NEXT token, sequence[t + 1] "
                                 "(targets = ids[:, 1:], inputs = ids[:, :-1])")


BPE_PAIR_COUNTS = Exercise(
    name="bpe_pair_counts",
    title="BPE training, step 1: count the adjacent pairs of token ids",
    statement=(
        "Byte-pair encoding learns its vocabulary by repeatedly merging the most frequent adjacent pair of\n"
        "tokens. Implement bpe_pair_counts(ids): given a list of token ids, return a dict mapping each\n"
        "adjacent pair (ids[i], ids[i + 1]) to the number of positions where it occurs. Every position\n"
        "counts, so overlapping occurrences count too: [7, 7, 7] -> {(7, 7): 2}. Pairs are ordered:\n"
        "[1, 2, 1] -> {(1, 2): 1, (2, 1): 1}. Only pairs that occur are keys; an empty or one-token list\n"
        "gives {}. (tinygrad_llm.data.byte_bpe_tokenizer.learn_merges counts pairs the same way.)"
    ),
    reference=bpe_pair_counts,
    hints=(
        "zip(ids, ids[1:]) walks over the adjacent pairs, one per position.",
        "Keep a dict from pair to count and add one to a pair's entry each time it appears, starting from 0 for a "
        "pair not seen yet (dict.get with a default, or collections.Counter). The keys must be tuples, so they can be "
        "dict keys.",
    ),
    checks=(
        Check(PAIRS_ARE_A_DICT, pair_count_inputs(), _pairs_are_a_dict),
        Check(EVERY_POSITION, pair_count_inputs(), _counts_every_position),
        Check(ORDERED_PAIRS, pair_count_inputs(), _counts_ordered_pairs, max_examples=60),
    ),
)

BPE_MERGE_STEP = Exercise(
    name="bpe_merge_step",
    title="BPE training, step 2: merge every occurrence of the chosen pair",
    statement=(
        "Having picked the most frequent pair, BPE replaces it by a new token id everywhere. Implement\n"
        "bpe_merge_step(ids, pair, new_id): return a new list in which every occurrence of pair (two\n"
        "adjacent ids) is replaced by new_id, scanning left to right; after a match at positions (i, i + 1)\n"
        "continue at i + 2, so occurrences never overlap: [7, 7, 7] with pair (7, 7) and new_id 9 -> [9, 7].\n"
        "Every other id is copied unchanged, in order. new_id never occurs in ids, so replacing each new_id\n"
        "by the two ids of the pair gives ids back. (Encoding with a trained tokenizer applies the same step,\n"
        "one learned merge at a time.)"
    ),
    reference=bpe_merge_step,
    hints=(
        "Use a while loop with an index i, not a for loop: after a match you must skip two positions.",
        "At each i: when there is a next id and the ids at i and i + 1 form the pair, append new_id and move on by "
        "2; otherwise append the id at i and move on by 1. The last id is handled by the otherwise branch.",
    ),
    checks=(
        Check(MERGE_RETURNS_IDS, merge_inputs(), _returns_ids),
        Check(LOSSLESS, merge_inputs(), _lossless),
        Check(NONE_LEFT, merge_inputs(), _none_left),
        Check(LEFT_TO_RIGHT, repeated_pair_inputs(), _left_to_right),
        Check(MERGE_EXACT, merge_inputs(), _matches_merge_reference),
    ),
)

PADDING_MASK_AND_TARGETS = Exercise(
    name="padding_mask_and_targets",
    title="Pad a batch: the padding mask and next-token targets that ignore PAD (M19)",
    statement=(
        "A batch is one (B, T) array, so sequences of different lengths are padded, and the padding must be\n"
        "invisible to attention (a mask) and to the loss (ignore_index targets). Implement\n"
        "padding_mask_and_targets(sequences, pad_id, ignore_index): right-pad the lists of token ids with\n"
        "pad_id to the longest length T, giving ids (B, T), and return (inputs, padding_mask, targets),\n"
        "each of shape (B, T - 1):\n"
        "  inputs = ids[:, :-1] (int64);\n"
        "  padding_mask (bool): True where the input is padding;\n"
        "  targets = ids[:, 1:] (int64), set to ignore_index wherever the target is padding.\n"
        "Example: sequences [[5, 6, 7], [8, 9]], pad_id 0, ignore_index -100 -> inputs [[5, 6], [8, 9]],\n"
        "padding_mask [[False, False], [False, False]], targets [[6, 7], [9, -100]].\n"
        "pad_id may also occur as a real token inside a sequence (GPT-2 pads with its end-of-text token):\n"
        "padding is where a row has run out, whatever the ids say."
    ),
    reference=padding_mask_and_targets,
    hints=(
        "Fill an int64 array of shape (B, T) with pad_id, and a bool array of the same shape with True; then "
        "copy each sequence into its row and set the row's first len(sequence) mask entries to False.",
        "Slice both arrays: inputs and their mask are the first T - 1 columns, targets the last T - 1. A "
        "target is padding where the FULL mask is True in columns 1..T-1: targets[mask[:, 1:]] = ignore_index.",
        "Never compute the mask as ids == pad_id: that also hides real tokens whose id equals pad_id.",
    ),
    checks=(
        has_reference_shapes(padding_mask_and_targets, batch_inputs(), BATCH_SHAPES, names=BATCH_NAMES),
        Check(MASK_FROM_LENGTHS, batch_inputs(), _mask_from_lengths, max_examples=60),
        Check(PAD_NEVER_A_TARGET, batch_inputs(), _pad_never_a_target),
        Check(SHIFTED_TARGETS, batch_inputs(), _shifted_targets),
        matches_reference(padding_mask_and_targets, batch_inputs(), rtol=0.0, atol=0.0, name=BATCH_EXACT,
                          names=BATCH_NAMES),
    ),
)

EXERCISES = (BPE_PAIR_COUNTS, BPE_MERGE_STEP, PADDING_MASK_AND_TARGETS)
