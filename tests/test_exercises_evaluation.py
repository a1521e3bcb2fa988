"""The chapter 8 exercises (clipped n-gram precision, brevity penalty, scores from a confusion matrix, masked
perplexity): the references agree with the library's metrics, other correct styles pass, and classic wrong answers
are rejected by the property that names their bug. The wrong answers are real functions, named after the bug
(spot-the-bug material); tests/test_exercises.py grades them with every other exercise of the bank.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.evaluation import count_ngrams, safe_divide
from tinygrad_llm.metrics import brevity_penalty as library_brevity_penalty
from tinygrad_llm.metrics import (clipped_matches, closest_reference_length, confusion_matrix, perplexity,
                                  precision_recall_f1)

pytestmark = [pytest.mark.exercises, pytest.mark.evaluation]

EVALUATION_EXERCISES = ["modified_precision", "brevity_penalty", "scores_from_confusion_matrix", "masked_perplexity"]


# ---- modified_precision -----------------------------------------------------------------------------------

def modified_precision_unclipped(references, hypothesis, n):
    grams = count_ngrams(hypothesis, n)
    in_a_reference = set().union(*(count_ngrams(reference, n) for reference in references))
    return sum(count for gram, count in grams.items() if gram in in_a_reference), sum(grams.values())


def modified_precision_clips_by_the_sum_over_references(references, hypothesis, n):
    grams = count_ngrams(hypothesis, n)
    counts = [count_ngrams(reference, n) for reference in references]
    return sum(min(c, sum(r.get(g, 0) for r in counts)) for g, c in grams.items()), sum(grams.values())


def modified_precision_against_the_first_reference_only(references, hypothesis, n):
    grams, first = count_ngrams(hypothesis, n), count_ngrams(references[0], n)
    return sum(min(c, first.get(g, 0)) for g, c in grams.items()), sum(grams.values())


def modified_precision_counts_distinct_ngrams(references, hypothesis, n):
    matches, _ = ex.get_exercise("modified_precision").reference(references, hypothesis, n)
    return matches, len(count_ngrams(hypothesis, n))


# ---- brevity_penalty --------------------------------------------------------------------------------------

def _closest(hyp_length, ref_lengths):
    return min(ref_lengths, key=lambda length: (abs(length - hyp_length), length))


def brevity_penalty_punishes_long_hypotheses_too(hyp_length, ref_lengths):
    r = _closest(hyp_length, ref_lengths)
    if hyp_length == 0:
        return 0.0
    return float(np.exp(1 - max(r, hyp_length) / min(r, hyp_length)))


def brevity_penalty_with_the_ratio_inverted(hyp_length, ref_lengths):
    r = _closest(hyp_length, ref_lengths)
    return 1.0 if hyp_length >= r else float(np.exp(1 - hyp_length / r))


def brevity_penalty_divides_by_an_empty_hypothesis(hyp_length, ref_lengths):
    r = _closest(hyp_length, ref_lengths)
    return 1.0 if hyp_length >= r else math.exp(1 - r / hyp_length)


def brevity_penalty_against_the_shortest_reference(hyp_length, ref_lengths):
    r = min(ref_lengths)
    return 1.0 if hyp_length >= r else (0.0 if hyp_length == 0 else float(np.exp(1 - r / hyp_length)))


def brevity_penalty_ties_go_to_the_longer_reference(hyp_length, ref_lengths):
    r = min(ref_lengths, key=lambda length: (abs(length - hyp_length), -length))
    return 1.0 if hyp_length >= r else (0.0 if hyp_length == 0 else float(np.exp(1 - r / hyp_length)))


# ---- scores_from_confusion_matrix -------------------------------------------------------------------------

def _scores(matrix, average, *, transpose=False, micro_as_macro=False, f1_of_means=False, nan_on_zero=False):
    matrix = matrix.T if transpose else matrix
    tp, predicted, actual = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    if average == "micro" and not micro_as_macro:
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
    with np.errstate(all="ignore"):
        divide = (lambda a, b: np.asarray(a, float) / b) if nan_on_zero else safe_divide
        precision, recall, f1 = divide(tp, predicted), divide(tp, actual), divide(2 * tp, predicted + actual)
    precision, recall = float(np.mean(precision)), float(np.mean(recall))
    if f1_of_means:
        return precision, recall, float(safe_divide(2 * precision * recall, precision + recall))
    return precision, recall, float(np.mean(f1))


def scores_with_rows_and_columns_swapped(matrix, average):
    return _scores(matrix, average, transpose=True)


def micro_scores_averaged_per_class_like_macro(matrix, average):
    return _scores(matrix, average, micro_as_macro=True)


def macro_f1_from_macro_precision_and_recall(matrix, average):
    return _scores(matrix, average, f1_of_means=True)


def scores_nan_for_a_class_never_predicted(matrix, average):
    return _scores(matrix, average, nan_on_zero=True)


# ---- masked_perplexity ------------------------------------------------------------------------------------

def masked_perplexity_without_the_minus_sign(log2_probs, mask):
    return float(2.0 ** log2_probs[mask].mean())


def masked_perplexity_exp_of_log2_values(log2_probs, mask):
    return float(np.exp(-log2_probs[mask].mean()))


def masked_perplexity_of_the_summed_loss(log2_probs, mask):
    return float(2.0 ** -log2_probs[mask].sum())


def masked_perplexity_averages_over_padding_too(log2_probs, mask):
    return float(2.0 ** -log2_probs.mean())


def masked_perplexity_mean_of_row_perplexities(log2_probs, mask):
    rows = [2.0 ** -row[row_mask].mean() for row, row_mask in zip(log2_probs, mask) if row_mask.any()]
    return float(np.mean(rows))


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("modified_precision", modified_precision_unclipped, "clips: a repeated hypothesis n-gram"),
    ("modified_precision", modified_precision_clips_by_the_sum_over_references, "MOST in any ONE reference"),
    ("modified_precision", modified_precision_against_the_first_reference_only, "MOST in any ONE reference"),
    ("modified_precision", modified_precision_counts_distinct_ngrams, "repeats included"),
    ("brevity_penalty", brevity_penalty_punishes_long_hypotheses_too, "not penalised"),
    ("brevity_penalty", brevity_penalty_with_the_ratio_inverted, "exp(1 - r / c)"),
    ("brevity_penalty", brevity_penalty_divides_by_an_empty_hypothesis, "empty hypothesis"),
    ("brevity_penalty", brevity_penalty_against_the_shortest_reference, "CLOSEST reference length"),
    ("brevity_penalty", brevity_penalty_ties_go_to_the_longer_reference, "ties: the shorter"),
    ("scores_from_confusion_matrix", scores_with_rows_and_columns_swapped, "rows are the TRUE classes"),
    ("scores_from_confusion_matrix", micro_scores_averaged_per_class_like_macro, "micro averaging pools"),
    ("scores_from_confusion_matrix", macro_f1_from_macro_precision_and_recall, "mean of the per-class F1s"),
    ("scores_from_confusion_matrix", scores_nan_for_a_class_never_predicted, "never nan"),
    ("masked_perplexity", masked_perplexity_without_the_minus_sign, "MINUS the log-probability"),
    ("masked_perplexity", masked_perplexity_exp_of_log2_values, "BASE-2 logs"),
    ("masked_perplexity", masked_perplexity_of_the_summed_loss, "MEAN loss, not the sum"),
    ("masked_perplexity", masked_perplexity_averages_over_padding_too, "padding (mask False) is left out"),
    ("masked_perplexity", masked_perplexity_mean_of_row_perplexities, "pools the real tokens of all rows"),
]


def test_the_evaluation_exercises_are_registered():
    """Their reference solutions, starter code and WRONG_ANSWERS above are graded in test_exercises.py, with
    every other exercise of the bank."""
    names = [name for name, _ in ex.list_exercises()]
    assert all(name in names for name in EVALUATION_EXERCISES)


words = st.lists(st.integers(0, 3), max_size=8)


@given(st.lists(words, min_size=1, max_size=3), words, st.integers(1, 3))
def test_modified_precision_reference_equals_the_librarys_bleu_counts(references, hypothesis, n):
    assert ex.get_exercise("modified_precision").reference(references, hypothesis, n) == clipped_matches(
        references, hypothesis, n)


@given(st.integers(0, 40), st.lists(st.integers(1, 30), min_size=1, max_size=4))
def test_brevity_penalty_reference_equals_the_library(hyp_length, ref_lengths):
    expected = library_brevity_penalty(hyp_length, closest_reference_length([[0] * n for n in ref_lengths],
                                                                            hyp_length))
    assert ex.get_exercise("brevity_penalty").reference(hyp_length, ref_lengths) == pytest.approx(expected, rel=1e-15)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30),
       st.sampled_from(["macro", "micro"]))
def test_confusion_reference_equals_the_librarys_scores(pairs, average):
    y_true, y_pred = np.array([t for t, _ in pairs]), np.array([p for _, p in pairs])
    matrix = confusion_matrix(y_true, y_pred, labels=[0, 1, 2, 3])
    expected = precision_recall_f1(y_true, y_pred, average=average, labels=[0, 1, 2, 3])
    received = ex.get_exercise("scores_from_confusion_matrix").reference(matrix, average)
    np.testing.assert_allclose(received, expected, rtol=1e-12, atol=1e-12)


def test_the_statement_examples_hold():
    assert ex.get_exercise("modified_precision").reference([[1, 2, 1]], [1, 1, 1, 1], 1) == (2, 4)
    brevity = ex.get_exercise("brevity_penalty").reference
    assert round(brevity(8, [10]), 4) == 0.7788 and brevity(8, [5, 12]) == 1.0
    scores = ex.get_exercise("scores_from_confusion_matrix").reference
    assert [round(s, 4) for s in scores(np.array([[2, 1], [0, 3]]), "macro")] == [0.875, 0.8333, 0.8286]
    assert [round(s, 4) for s in scores(np.array([[2, 1], [0, 3]]), "micro")] == [0.8333] * 3
    masked = ex.get_exercise("masked_perplexity").reference
    assert masked(np.array([[-1.0, -3.0, 0.5]]), np.array([[True, True, False]])) == 4.0


def test_masked_perplexity_in_bits_equals_the_librarys_perplexity_in_nats():
    rng = np.random.default_rng(0)
    log2_probs, mask = -rng.uniform(0.1, 6, size=(3, 7)), rng.random((3, 7)) < 0.6
    nats = -log2_probs[mask].mean() * math.log(2)
    assert ex.get_exercise("masked_perplexity").reference(log2_probs, mask) == pytest.approx(perplexity(nats))


def test_other_correct_styles_pass():
    """A Counter-based clipped precision, an if-chain penalty, and a per-class loop over the matrix."""
    from collections import Counter

    def precision_with_counters(references, hypothesis, n):
        grams = Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
        best = Counter()
        for reference in references:
            best |= Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
        return sum((grams & best).values()), sum(grams.values())

    def penalty_by_sorting(hyp_length, ref_lengths):
        r = sorted(ref_lengths, key=lambda n: (abs(n - hyp_length), n))[0]
        if hyp_length == 0:
            return 0.0
        return min(1.0, math.exp(1 - r / hyp_length))

    def scores_by_loop(matrix, average):
        size = len(matrix)
        tp = [matrix[k][k] for k in range(size)]
        fp = [sum(matrix[i][k] for i in range(size)) - tp[k] for k in range(size)]
        fn = [sum(matrix[k]) - tp[k] for k in range(size)]
        if average == "micro":
            tp, fp, fn = [sum(tp)], [sum(fp)], [sum(fn)]
        ratio = lambda a, b: a / b if b else 0.0  # noqa: E731
        p = [ratio(t, t + f) for t, f in zip(tp, fp)]
        r = [ratio(t, t + f) for t, f in zip(tp, fn)]
        f1 = [ratio(2 * t, 2 * t + a + b) for t, a, b in zip(tp, fp, fn)]
        return float(np.mean(p)), float(np.mean(r)), float(np.mean(f1))

    for name, function in (("modified_precision", precision_with_counters), ("brevity_penalty", penalty_by_sorting),
                           ("scores_from_confusion_matrix", scores_by_loop)):
        result = ex.get_exercise(name).grade(function)
        assert result, str(result)
