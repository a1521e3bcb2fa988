"""Padded batches with masks, next-token targets that ignore padding, and training/evaluation windows."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
import tinygrad_llm.nn.functional as F
from tinygrad_llm.data import (
    ByteBPETokenizer, PaddedBatch, evaluation_windows, lm_inputs_and_targets, pad_batch, random_windows,
)

pytestmark = pytest.mark.tokenization

PAD = 0
sequences = st.lists(st.lists(st.integers(0, 50), max_size=12), min_size=1, max_size=6)
sides = st.sampled_from(["right", "left"])


@given(sequences, sides)
def test_padding_keeps_every_token_and_marks_the_rest(seqs, side):
    batch = pad_batch(seqs, PAD, side=side)
    longest = max(len(s) for s in seqs)
    assert isinstance(batch, PaddedBatch)
    assert batch.ids.shape == batch.padding_mask.shape == (len(seqs), longest)
    assert batch.ids.dtype == np.int64 and batch.padding_mask.dtype == bool
    np.testing.assert_array_equal(batch.lengths, [len(s) for s in seqs])
    for row, mask, seq in zip(batch.ids, batch.padding_mask, seqs):
        assert row[~mask].tolist() == seq
        assert np.all(row[mask] == PAD)
        real = np.flatnonzero(~mask)
        if len(seq):  # real tokens are contiguous, at the start (right padding) or the end (left padding)
            assert real.tolist() == (list(range(len(seq))) if side == "right" else list(range(longest - len(seq), longest)))


def test_left_padding_puts_every_rows_newest_token_in_the_last_column():
    batch = pad_batch([[5, 6, 7], [8]], pad_id=99, side="left")
    np.testing.assert_array_equal(batch.ids, [[5, 6, 7], [99, 99, 8]])
    np.testing.assert_array_equal(batch.ids[:, -1], [7, 8])
    right = pad_batch([[5, 6, 7], [8]], pad_id=99)
    np.testing.assert_array_equal(right.ids, [[5, 6, 7], [8, 99, 99]])
    np.testing.assert_array_equal(right.padding_mask, [[False] * 3, [False, True, True]])


@given(sequences, st.integers(1, 8), sides, sides)
def test_truncation_keeps_the_chosen_end(seqs, max_length, side, truncation):
    batch = pad_batch(seqs, PAD, max_length=max_length, side=side, truncation=truncation)
    assert batch.ids.shape == (len(seqs), max_length)
    for row, mask, seq in zip(batch.ids, batch.padding_mask, seqs):
        kept = seq[:max_length] if truncation == "right" else seq[max(0, len(seq) - max_length):]
        assert row[~mask].tolist() == kept


@given(sequences, sides)
def test_lm_targets_are_shifted_and_ignore_padding(seqs, side):
    batch = pad_batch([s + [1, 2] for s in seqs], PAD, side=side)  # at least two tokens per row
    inputs, targets, input_padding = lm_inputs_and_targets(batch, ignore_index=-100)
    np.testing.assert_array_equal(inputs, batch.ids[:, :-1])
    np.testing.assert_array_equal(input_padding, batch.padding_mask[:, :-1])
    counted = targets != -100
    np.testing.assert_array_equal(targets[counted], batch.ids[:, 1:][counted])
    assert not np.any(counted & batch.padding_mask[:, 1:]), "a pad is used as a target"
    assert not np.any(counted & input_padding), "a target is predicted from a pad"
    np.testing.assert_array_equal(counted.sum(axis=1), batch.lengths - 1)


def test_pad_targets_get_zero_loss_and_zero_gradient():
    batch = pad_batch([[3, 4, 5, 6], [7, 8]], PAD, side="left")
    inputs, targets, _ = lm_inputs_and_targets(batch)
    logits_data = np.random.default_rng(0).standard_normal((*targets.shape, 10)).astype(np.float64)
    logits = tgl.tensor(logits_data, requires_grad=True)
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    loss.backward()
    ignored = targets == -100
    assert ignored.sum() == 2
    assert np.all(logits.grad[ignored] == 0) and np.all(np.abs(logits.grad[~ignored]).sum(axis=-1) > 0)
    shaken = logits_data.copy()
    shaken[ignored] += 100.0  # whatever the model says at padding must not change the loss
    np.testing.assert_allclose(F.cross_entropy(tgl.tensor(shaken), targets).item(), loss.item(), rtol=1e-12)


def test_padding_without_a_pad_token_is_an_error():
    with pytest.raises(ValueError, match="no PAD token"):
        pad_batch([[1, 2], [3]], pad_id=None)
    tok = ByteBPETokenizer.train("", 0)
    batch = pad_batch([tok.encode("hi"), tok.encode("hello")], tok.pad_id)  # our tokenizers reserve one
    assert np.all(batch.ids[batch.padding_mask] == tok.pad_id)


def test_bad_padding_arguments_are_rejected():
    with pytest.raises(ValueError, match="side must be one of"):
        pad_batch([[1]], PAD, side="center")
    with pytest.raises(ValueError, match="truncation must be one of"):
        pad_batch([[1]], PAD, truncation="middle")
    with pytest.raises(ValueError, match="no sequences"):
        pad_batch([], PAD)
    with pytest.raises(ValueError, match="sequence 1 must be a 1-D"):
        pad_batch([[1], [[2]]], PAD)
    with pytest.raises(ValueError, match="at least 2 columns"):
        lm_inputs_and_targets(pad_batch([[1], [2]], PAD))


# ---------------------------------------------------------------------------- windows
@given(st.integers(1, 16), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_random_windows_targets_are_inputs_shifted_by_one(block, batch, seed):
    ids = np.arange(40) * 3
    inputs, targets = random_windows(ids, block, batch, np.random.default_rng(seed))
    assert inputs.shape == targets.shape == (batch, block)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    np.testing.assert_array_equal(inputs + 3, targets)  # each target is the token after its input
    again = random_windows(ids, block, batch, np.random.default_rng(seed))
    np.testing.assert_array_equal(inputs, again[0])
    np.testing.assert_array_equal(targets, again[1])


def test_random_windows_reach_both_ends_of_the_text():
    ids = np.arange(10)
    inputs, targets = random_windows(ids, 4, 200, np.random.default_rng(0))
    assert inputs.min() == 0 and targets.max() == 9


@given(st.integers(2, 60), st.integers(1, 10))
def test_evaluation_windows_predict_each_token_once_in_order(length, block):
    ids = np.arange(length) + 100
    if length < block + 1:
        with pytest.raises(ValueError, match="too short"):
            evaluation_windows(ids, block)
        return
    inputs, targets = evaluation_windows(ids, block)
    count = (length - 1) // block
    assert inputs.shape == targets.shape == (count, block)
    np.testing.assert_array_equal(targets.ravel(), ids[1:count * block + 1])
    np.testing.assert_array_equal(inputs.ravel() + 1, targets.ravel())
    assert length - 1 - targets.size < block  # only a tail shorter than one window is dropped


def test_too_short_texts_give_clear_errors():
    with pytest.raises(ValueError, match="too short for block_size=8"):
        random_windows(np.arange(8), 8, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="1-D"):
        evaluation_windows(np.zeros((2, 9), dtype=np.int64), 4)
