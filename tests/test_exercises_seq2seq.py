"""The chapter 7 exercises (cross-attention mask, teacher-forcing shift, one beam-search step): each reference
agrees with the library, and classic wrong answers are rejected by the property that names their bug. The wrong
answers are real functions, named after the bug (spot-the-bug material); the shared bank test
(test_exercises.py) grades the references, the starters and WRONG_ANSWERS below with every other exercise.
"""
import itertools

import numpy as np
import pytest

import tinygrad_llm as tgl
import tinygrad_llm.exercises as ex
from tinygrad_llm.data import seq2seq_tasks as s2s
from tinygrad_llm.exercises.attention import scaled_dot_product_attention
from tinygrad_llm.exercises.seq2seq import beam_search_step, cross_attention_mask, teacher_forcing_shift
from tinygrad_llm.nn import functional as F

pytestmark = [pytest.mark.exercises, pytest.mark.seq2seq]

SEQ2SEQ_EXERCISES = ["cross_attention_mask", "teacher_forcing_shift", "beam_search_step"]

# ---- cross_attention_mask ----------------------------------------------------------------------------------

def cross_attention_mask_with_causal_part(source_padding, target_length):
    batch, source_length = source_padding.shape
    future = np.triu(np.ones((target_length, source_length), dtype=bool), k=1)  # copied from self-attention
    return np.where(source_padding[:, None, :] | future, -np.inf, 0.0)


def cross_attention_mask_hides_queries(source_padding, target_length):
    hidden = np.broadcast_to(source_padding[:, :, None], (source_padding.shape[0], target_length,
                                                          source_padding.shape[1]))
    return np.where(hidden, -np.inf, 0.0)


def cross_attention_mask_of_zeros_and_ones(source_padding, target_length):
    visible = ~np.broadcast_to(source_padding[:, None, :], (source_padding.shape[0], target_length,
                                                            source_padding.shape[1]))
    return visible.astype(np.float64)


def cross_attention_mask_padding_flags_inverted(source_padding, target_length):
    hidden = np.broadcast_to(source_padding[:, None, :], (source_padding.shape[0], target_length,
                                                          source_padding.shape[1]))
    return np.where(hidden, 0.0, -np.inf)  # read True as "visible"


# ---- teacher_forcing_shift ---------------------------------------------------------------------------------

def _shift(targets, first, last, pad_input, pad_target):
    """Rows [*first, *target, *last] padded, for the input (first/last given) and the target."""
    width = max(len(t) for t in targets) + 1
    inputs = np.full((len(targets), width), pad_input, dtype=np.int64)
    outputs = np.full((len(targets), width), pad_target, dtype=np.int64)
    for row, target in enumerate(targets):
        inputs[row, :len(target) + 1] = [*first[0], *target, *last[0]]
        outputs[row, :len(target) + len(first[1]) + len(last[1])] = [*first[1], *target, *last[1]]
    return inputs, outputs


def teacher_forcing_unshifted(targets, bos_id, eos_id, pad_id, ignore_index):
    return _shift(targets, ([bos_id], [bos_id]), ([], []), pad_id, ignore_index)


def teacher_forcing_shifted_the_wrong_way(targets, bos_id, eos_id, pad_id, ignore_index):
    return _shift(targets, ([], [bos_id]), ([eos_id], []), pad_id, ignore_index)


def teacher_forcing_pads_not_ignored(targets, bos_id, eos_id, pad_id, ignore_index):
    return _shift(targets, ([bos_id], []), ([], [eos_id]), pad_id, pad_id)


def teacher_forcing_without_eos(targets, bos_id, eos_id, pad_id, ignore_index):
    return _shift(targets, ([bos_id], []), ([], []), pad_id, ignore_index)


# ---- beam_search_step --------------------------------------------------------------------------------------

def _top(candidates, beams, order=None):
    flat = candidates.ravel()
    best = (np.argsort(-flat, kind="stable") if order is None else order(flat))[:beams]
    parents, tokens = np.divmod(best, candidates.shape[1])
    return flat[best], parents.astype(np.int64), tokens.astype(np.int64)


def _carry_finished(candidates, scores, finished, eos_id):
    candidates[finished] = -np.inf
    candidates[finished, eos_id] = scores[finished]
    return candidates


def beam_step_best_token_per_beam(scores, log_probs, finished, eos_id):
    candidates = _carry_finished(scores[:, None] + log_probs, scores, finished, eos_id)
    tokens = candidates.argmax(axis=1)  # K greedy searches side by side
    new_scores = candidates[np.arange(len(scores)), tokens]
    order = np.argsort(-new_scores, kind="stable")
    return new_scores[order], order.astype(np.int64), tokens[order].astype(np.int64)


def beam_step_adds_probabilities(scores, log_probs, finished, eos_id):
    candidates = _carry_finished(scores[:, None] + np.exp(log_probs), scores, finished, eos_id)
    return _top(candidates, len(scores))


def beam_step_extends_finished_beams(scores, log_probs, finished, eos_id):
    return _top(scores[:, None] + log_probs, len(scores))


def beam_step_ties_to_the_higher_index(scores, log_probs, finished, eos_id):
    candidates = _carry_finished(scores[:, None] + log_probs, scores, finished, eos_id)
    return _top(candidates, len(scores), order=lambda flat: np.argsort(flat, kind="stable")[::-1])


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("cross_attention_mask", cross_attention_mask_with_causal_part, "no causal part"),
    ("cross_attention_mask", cross_attention_mask_hides_queries, "padding hides KEYS"),
    ("cross_attention_mask", cross_attention_mask_of_zeros_and_ones, "only 0 (visible) and -inf"),
    ("cross_attention_mask", cross_attention_mask_padding_flags_inverted, "every decoder query sees EVERY source key"),
    ("teacher_forcing_shift", teacher_forcing_unshifted, "starts with targets[b] + [EOS]"),
    ("teacher_forcing_shift", teacher_forcing_shifted_the_wrong_way, "is [BOS] + targets[b]"),
    ("teacher_forcing_shift", teacher_forcing_pads_not_ignored, "ignore_index after EOS"),
    ("teacher_forcing_shift", teacher_forcing_without_eos, "starts with targets[b] + [EOS]"),
    ("beam_search_step", beam_step_best_token_per_beam, "K best of ALL K * V"),
    ("beam_search_step", beam_step_adds_probabilities, "parent's score + the token's log-prob"),
    ("beam_search_step", beam_step_extends_finished_beams, "finished beam is carried over unchanged"),
    ("beam_search_step", beam_step_ties_to_the_higher_index, "ties included"),
]


def test_the_seq2seq_exercises_are_registered_each_with_two_wrong_answers():
    names = [name for name, _ in ex.list_exercises()]
    for name in SEQ2SEQ_EXERCISES:
        assert name in names
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# ---- the references agree with the library ---------------------------------------------------------------

def test_cross_attention_mask_gives_the_library_attention_with_a_key_padding_mask():
    rng = np.random.default_rng(0)
    source_padding = np.array([[False, False, True, True], [False, False, False, False]])
    q, k, v = (rng.standard_normal((2, 1, t, 3)) for t in (5, 4, 4))  # T = 5 queries, S = 4 keys, one head
    expected = F.scaled_dot_product_attention(tgl.tensor(q), tgl.tensor(k), tgl.tensor(v),
                                              padding_mask=source_padding).data
    masked = scaled_dot_product_attention(q, k, v, cross_attention_mask(source_padding, 5)[:, None])
    np.testing.assert_allclose(masked, expected, rtol=1e-10, atol=1e-12)


def test_teacher_forcing_shift_is_what_make_batch_builds():
    examples = [s2s.Seq2SeqExample(("1",), ("3", "1", "4")), s2s.Seq2SeqExample(("1",), ()),
                s2s.Seq2SeqExample(("1",), ("5",))]
    vocabulary = s2s.CopyTask().vocabulary
    batch = s2s.make_batch(examples, vocabulary)
    decoder_input, decoder_target = teacher_forcing_shift([vocabulary.encode(e.target) for e in examples],
                                                          s2s.BOS_ID, s2s.EOS_ID, s2s.PAD_ID, s2s.IGNORE_INDEX)
    np.testing.assert_array_equal(decoder_input, batch.decoder_input)
    np.testing.assert_array_equal(decoder_target, batch.decoder_target)


def test_teacher_forcing_statement_example():
    decoder_input, decoder_target = teacher_forcing_shift([[7, 8], [9]], 1, 2, 0, -100)
    assert decoder_input.tolist() == [[1, 7, 8], [1, 9, 0]]
    assert decoder_target.tolist() == [[7, 8, 2], [9, 2, -100]]


def _run_beam(log_prob_table, width, steps, eos_id):
    """Beam search with beam_search_step on a toy model whose next-token log-probs depend on the last token."""
    scores = np.full(width, -np.inf)
    scores[0] = 0.0  # all beams start as the same empty prefix; keep one so there are no duplicates
    finished, sequences, last = np.zeros(width, dtype=bool), [[] for _ in range(width)], np.zeros(width, dtype=int)
    for _ in range(steps):
        scores, parents, tokens = beam_search_step(scores, log_prob_table[last], finished, eos_id)
        sequences = [sequences[p] + [int(t)] for p, t in zip(parents, tokens)]
        finished = finished[parents] | (tokens == eos_id)
        last = tokens
    return scores, sequences


def test_a_beam_wide_enough_finds_the_most_probable_sequence_and_width_one_is_greedy():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 4)) * 2
    table = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # row = previous token
    eos_id, steps = 3, 3

    def log_prob(sequence):
        total, previous = 0.0, 0
        for token in sequence:
            total, previous = total + table[previous, token], token
            if token == eos_id:  # after EOS the sequence is over: the rest is padding at no cost
                break
        return total

    best = max(log_prob(s) for s in itertools.product(range(4), repeat=steps))
    scores, sequences = _run_beam(table, width=4 ** steps, steps=steps, eos_id=eos_id)
    assert scores[0] == pytest.approx(best) and log_prob(sequences[0]) == pytest.approx(scores[0])
    greedy, previous = [], 0
    for _ in range(steps):
        previous = eos_id if greedy and greedy[-1] == eos_id else int(table[previous].argmax())
        greedy.append(previous)
    assert _run_beam(table, width=1, steps=steps, eos_id=eos_id)[1][0] == greedy


def test_other_correct_styles_pass():
    """A boolean-index mask built with np.repeat, a shift that pads Python lists, a beam step with np.lexsort."""
    def mask_with_repeat(source_padding, target_length):
        hidden = np.repeat(source_padding[:, None, :], target_length, axis=1)
        mask = np.zeros(hidden.shape)
        mask[hidden] = -np.inf
        return mask

    def shift_with_lists(targets, bos_id, eos_id, pad_id, ignore_index):
        width = max(map(len, targets)) + 1
        inputs = [[bos_id, *t] + [pad_id] * (width - len(t) - 1) for t in targets]
        outputs = [[*t, eos_id] + [ignore_index] * (width - len(t) - 1) for t in targets]
        return np.array(inputs, dtype=np.int64), np.array(outputs, dtype=np.int64)

    def beam_step_with_lexsort(scores, log_probs, finished, eos_id):
        candidates = np.where(finished[:, None], -np.inf, scores[:, None] + log_probs)
        candidates[finished, eos_id] = scores[finished]
        flat = candidates.ravel()
        best = np.lexsort((np.arange(flat.size), -flat))[:len(scores)]
        return flat[best], best // log_probs.shape[1], best % log_probs.shape[1]

    for name, function in (("cross_attention_mask", mask_with_repeat), ("teacher_forcing_shift", shift_with_lists),
                           ("beam_search_step", beam_step_with_lexsort)):
        result = ex.get_exercise(name).grade(function)
        assert result, str(result)
