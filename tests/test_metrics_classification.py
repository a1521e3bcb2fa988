"""Chapter 8 checks for classification metrics and calibration (Q17, Q18): the confusion matrix sums to
N, precision and recall counted by hand, F1 between P and R, micro-F1 = accuracy, zero division, ECE = 0 for a
calibrated predictor; held equal to scikit-learn when it is installed.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.metrics import (accuracy, classification_report, confidences_and_correct, confusion_matrix,
                                  expected_calibration_error, f1_score, precision, precision_recall_f1, recall,
                                  reliability_bins)

pytestmark = pytest.mark.evaluation


@st.composite
def label_pairs(draw, max_classes=4, min_size=1):
    """(y_true, y_pred) of equal length over classes 0..k-1 (k drawn), as int arrays."""
    classes = draw(st.integers(1, max_classes))
    size = draw(st.integers(min_size, 30))
    labels = st.lists(st.integers(0, classes - 1), min_size=size, max_size=size).map(np.array)
    return draw(labels), draw(labels)


def by_counting(y_true, y_pred, label):
    """TP, FP, FN of one class, counted example by example."""
    tp = sum(1 for t, p in zip(y_true, y_pred) if t == label and p == label)
    fp = sum(1 for t, p in zip(y_true, y_pred) if t != label and p == label)
    fn = sum(1 for t, p in zip(y_true, y_pred) if t == label and p != label)
    return tp, fp, fn


def safe(numerator, denominator):
    return numerator / denominator if denominator else 0.0


# ============================================================================ confusion matrix
@given(label_pairs())
def test_the_confusion_matrix_sums_to_n_with_true_rows_and_predicted_columns(pair):
    y_true, y_pred = pair
    labels = np.unique(np.concatenate([y_true, y_pred]))
    matrix = confusion_matrix(y_true, y_pred)
    assert matrix.sum() == len(y_true)
    np.testing.assert_array_equal(matrix.sum(axis=1), [np.sum(y_true == k) for k in labels])
    np.testing.assert_array_equal(matrix.sum(axis=0), [np.sum(y_pred == k) for k in labels])
    assert np.trace(matrix) == np.sum(y_true == y_pred)


@given(label_pairs(), st.permutations(range(4)))
def test_labels_order_the_rows_and_columns(pair, order):
    y_true, y_pred = pair
    full = confusion_matrix(y_true, y_pred, labels=[0, 1, 2, 3])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels=list(order)), full[np.ix_(order, order)])


def test_string_labels_worked_example():
    y_true = ["cat", "cat", "dog", "bird", "dog", "cat"]
    y_pred = ["cat", "dog", "dog", "cat", "dog", "cat"]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels=["cat", "dog", "bird"]),
                                  [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert precision(y_true, y_pred, average=None, labels=["cat"]) == pytest.approx([2 / 3])
    report = classification_report(y_true, y_pred)
    assert report["dog"] == {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    assert report["bird"]["f1"] == 0.0 and report["accuracy"] == pytest.approx(4 / 6)


# ============================================================================ precision, recall, F1
@given(label_pairs())
def test_per_class_scores_equal_counting_and_recall_from_the_matrix(pair):
    y_true, y_pred = pair
    labels = np.unique(np.concatenate([y_true, y_pred]))
    p, r, f = precision_recall_f1(y_true, y_pred, average=None)
    matrix = confusion_matrix(y_true, y_pred)
    for i, label in enumerate(labels):
        tp, fp, fn = by_counting(y_true, y_pred, label)
        assert p[i] == pytest.approx(safe(tp, tp + fp))
        assert r[i] == pytest.approx(safe(tp, tp + fn))
        assert f[i] == pytest.approx(safe(2 * tp, 2 * tp + fp + fn))
        assert r[i] == pytest.approx(safe(matrix[i, i], matrix[i].sum()))  # recall read off row i


@given(label_pairs(), st.sampled_from(["binary", "macro", "micro", "weighted"]))
def test_f1_is_the_harmonic_mean_for_one_class_and_lies_between_p_and_r(pair, average):
    y_true, y_pred = pair
    if average == "binary":
        y_true, y_pred = (y_true > 0).astype(int), (y_pred > 0).astype(int)
        p, r, f = precision_recall_f1(y_true, y_pred, average="binary", pos_label=1)
        assert f == pytest.approx(safe(2 * p * r, p + r))
    p, r, f = precision_recall_f1(y_true, y_pred, average=average)
    per_class = precision_recall_f1(y_true, y_pred, average=None)
    if average in ("binary", "micro"):  # one ratio pair: F1 is exactly their harmonic mean
        assert min(p, r) - 1e-12 <= f <= max(p, r) + 1e-12
    else:  # averaged F1: between P and R class by class, so between the extremes of the per-class P and R
        assert all(min(pi, ri) - 1e-12 <= fi <= max(pi, ri) + 1e-12 for pi, ri, fi in zip(*per_class))
        assert min(per_class[0].min(), per_class[1].min()) - 1e-12 <= f <= max(per_class[0].max(),
                                                                              per_class[1].max()) + 1e-12


@given(label_pairs())
def test_micro_averaging_equals_accuracy_for_single_label_multiclass(pair):
    y_true, y_pred = pair
    acc = accuracy(y_true, y_pred)
    assert acc == pytest.approx(np.mean(y_true == y_pred))
    for score in precision_recall_f1(y_true, y_pred, average="micro"):
        assert score == pytest.approx(acc)


@given(label_pairs())
def test_macro_is_the_plain_mean_and_weighted_the_support_weighted_mean(pair):
    y_true, y_pred = pair
    labels = np.unique(np.concatenate([y_true, y_pred]))
    per_class = precision_recall_f1(y_true, y_pred, average=None)
    support = np.array([np.sum(y_true == k) for k in labels])
    macro = precision_recall_f1(y_true, y_pred, average="macro")
    weighted = precision_recall_f1(y_true, y_pred, average="weighted")
    for i in range(3):
        assert macro[i] == pytest.approx(per_class[i].mean())
        assert weighted[i] == pytest.approx(np.sum(per_class[i] * support) / support.sum())
    assert f1_score(y_true, y_pred, average="macro") == macro[2]
    assert recall(y_true, y_pred, average="weighted") == weighted[1]


def test_zero_division_gives_the_stated_value():
    y_true, y_pred = [0, 0, 1], [0, 0, 0]  # class 1 is never predicted: precision 0 / 0
    assert precision(y_true, y_pred, average=None).tolist() == [2 / 3, 0.0]
    assert precision(y_true, y_pred, average=None, zero_division=1.0).tolist() == [2 / 3, 1.0]
    assert f1_score(y_true, y_pred, average="binary", pos_label=1, zero_division=1.0) == 0.0  # TP = 0, FN = 1
    assert np.isnan(recall([1, 1], [1, 1], average="binary", pos_label=0, zero_division=np.nan))  # no true 0
    assert f1_score([0, 0], [0, 0], average="binary", pos_label=1) == 0.0  # 2TP + FP + FN = 0


@pytest.mark.parametrize("call, error, message", [
    (lambda: accuracy([0, 1, 1], [0, 1]), ValueError, "y_true has 3 labels but y_pred has 2"),
    (lambda: accuracy([], []), ValueError, "no labels given"),
    (lambda: precision_recall_f1([0, 1], [0, 1], average="average"), ValueError, "unknown average 'average'"),
    (lambda: precision_recall_f1([0, 1, 2], [0, 1, 2]), ValueError, "'binary' needs at most 2 classes, got 3"),
    (lambda: precision_recall_f1([0, 2], [2, 0], pos_label=1), ValueError, "pos_label=1 is not one of"),
    (lambda: accuracy(np.zeros((2, 3)), [0, 1]), ValueError, "argmax"),
    (lambda: accuracy([0.2, 0.7], [0, 1]), TypeError, "class labels"),
    (lambda: accuracy(["a", "b"], [0, 1]), TypeError, "strings vs numbers"),
    (lambda: confusion_matrix([0, 1], [1, 0], labels=[0, 0]), ValueError, "distinct classes"),
    (lambda: precision_recall_f1([0, 1], [1, 0], zero_division=0.5), ValueError, "zero_division must be"),
])
def test_bad_label_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ============================================================================ calibration
@st.composite
def calibrated_groups(draw):
    """Groups of m predictions sharing confidence k/m with exactly k correct: calibrated however the bins fall."""
    confidences, correct = [], []
    for _ in range(draw(st.integers(1, 6))):
        m = draw(st.integers(1, 8))
        k = draw(st.integers(0, m))
        confidences += [k / m] * m
        correct += [True] * k + [False] * (m - k)
    return np.array(confidences), np.array(correct)


@given(calibrated_groups(), st.integers(1, 20))
def test_ece_is_0_for_a_perfectly_calibrated_predictor(data, num_bins):
    assert expected_calibration_error(*data, num_bins=num_bins) == pytest.approx(0.0, abs=1e-12)


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=40), st.integers(1, 20))
def test_ece_lies_in_0_1_and_the_bins_account_for_every_prediction(pairs, num_bins):
    confidences, correct = np.array([c for c, _ in pairs]), np.array([k for _, k in pairs])
    ece = expected_calibration_error(confidences, correct, num_bins)
    bins = reliability_bins(confidences, correct, num_bins)
    assert 0.0 <= ece <= 1.0 and bins["counts"].sum() == len(pairs)
    always_sure = expected_calibration_error(np.ones(len(pairs)), correct, num_bins)
    assert always_sure == pytest.approx(1.0 - correct.mean())  # overconfidence: the gap is the error rate


def test_confidences_come_from_the_argmax_of_probabilities():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    confidences, correct = confidences_and_correct(probabilities, [0, 1])
    assert confidences.tolist() == [0.7, 0.6] and correct.tolist() == [True, False]
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        expected_calibration_error([1.5], [True])
    with pytest.raises(ValueError, match="same non-zero length"):
        expected_calibration_error([0.5, 0.5], [True])


# ============================================================================ oracle: scikit-learn
@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore:A single label was found")
@given(label_pairs(), st.sampled_from(["binary", "macro", "micro", "weighted", None]), st.sampled_from([0.0, 1.0]))
def test_equal_to_scikit_learn(pair, average, zero_division):
    metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = pair
    if average == "binary":
        y_true, y_pred = (y_true > 0).astype(int), (y_pred > 0).astype(int)
    expected = metrics.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=zero_division)
    received = precision_recall_f1(y_true, y_pred, average=average, zero_division=zero_division)
    for want, got in zip(expected[:3], received):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), metrics.confusion_matrix(y_true, y_pred))
    assert accuracy(y_true, y_pred) == pytest.approx(metrics.accuracy_score(y_true, y_pred))
