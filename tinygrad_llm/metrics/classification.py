"""Classification metrics, all read off one confusion matrix.

    C[i, j] = how many examples of true class labels[i] were predicted as labels[j]   (rows true, columns predicted)
    per class k:  TP = C[k, k],  FP = column k minus TP,  FN = row k minus TP
    precision = TP / (TP + FP)    "of what I called k, how much was k"
    recall    = TP / (TP + FN)    "of the real k, how much did I find"
    F1        = 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall

Averaging over classes:
- "binary": the scores of the positive class pos_label only (at most two classes);
- "macro": the plain mean of the per-class scores (every class counts the same, rare ones included);
- "weighted": the per-class scores weighted by support (examples of the class in y_true);
- "micro": TP, FP, FN summed over classes first. For single-label multiclass data every error is one FP and
  one FN, so micro precision = micro recall = micro F1 = accuracy;
- None: the per-class arrays.

Zero division: a ratio whose denominator is 0 (precision of a class never predicted, recall of a class absent
from y_true, F1 of a class with TP + FP + FN = 0) is `zero_division` (default 0.0), as sklearn's zero_division=0;
1.0 and nan are also accepted.
"""
from __future__ import annotations

import math

import numpy as np

AVERAGES = ("binary", "macro", "micro", "weighted", None)


def _labels_pair(y_true, y_pred, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """y_true and y_pred as 1-D arrays of the same non-zero length and one kind (numbers or strings)."""
    arrays = []
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        array = np.asarray(labels)
        if array.ndim != 1:
            raise ValueError(f"{caller}: {name} must be a 1-D sequence of class labels, got shape {array.shape}; "
                             "for probabilities or logits take argmax(axis=-1) first")
        if array.dtype.kind not in "biuUO" and not (array.dtype.kind == "f" and np.all(array == np.round(array))):
            raise TypeError(f"{caller}: {name} must hold class labels (integers or strings), got dtype {array.dtype}"
                            "; threshold or argmax scores into labels first")
        arrays.append(array)
    y_true, y_pred = arrays
    if len(y_true) != len(y_pred):
        raise ValueError(f"{caller}: y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; they must pair up "
                         "one prediction per example")
    if len(y_true) == 0:
        raise ValueError(f"{caller}: no labels given; pass at least one example")
    if (y_true.dtype.kind in "US") != (y_pred.dtype.kind in "US"):
        raise TypeError(f"{caller}: y_true ({y_true.dtype}) and y_pred ({y_pred.dtype}) are different kinds of "
                        "labels (strings vs numbers); map both to the same label set")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    """The fraction of examples whose prediction equals the true label."""
    y_true, y_pred = _labels_pair(y_true, y_pred, "accuracy")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, labels=None) -> np.ndarray:
    """C[i, j] = number of examples with true label labels[i] predicted as labels[j] (int64, sums to N).

    labels: the classes in the order of the rows and columns (default: the sorted classes seen in either
    array). Examples whose true or predicted label is not in `labels` are left out.
    """
    y_true, y_pred = _labels_pair(y_true, y_pred, "confusion_matrix")
    labels = _resolve_labels(y_true, y_pred, labels, "confusion_matrix")
    index = {label: i for i, label in enumerate(labels.tolist())}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true, predicted in zip(y_true.tolist(), y_pred.tolist()):
        if true in index and predicted in index:
            matrix[index[true], index[predicted]] += 1
    return matrix


def _resolve_labels(y_true, y_pred, labels, caller: str) -> np.ndarray:
    if labels is None:
        return np.unique(np.concatenate([y_true, y_pred]))
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0 or len(np.unique(labels)) != len(labels):
        raise ValueError(f"{caller}: labels must be a non-empty 1-D list of distinct classes, got {labels.tolist()!r}")
    return labels


def _ratio(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    """numerator / denominator elementwise, with zero_division where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, zero_division)


def precision_recall_f1(y_true, y_pred, *, average: str | None = "binary", pos_label=1, labels=None,
                        zero_division: float = 0.0):
    """(precision, recall, f1) under the chosen averaging (module docstring); arrays per label when average=None.

    labels restricts or orders the classes that are scored (default: all seen in y_true or y_pred).
    """
    y_true, y_pred = _labels_pair(y_true, y_pred, "precision_recall_f1")
    if average not in AVERAGES:
        raise ValueError(f"precision_recall_f1: unknown average {average!r}; choose one of {AVERAGES}")
    if not (zero_division in (0.0, 1.0) or (isinstance(zero_division, float) and math.isnan(zero_division))):
        raise ValueError(f"precision_recall_f1: zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")
    if average == "binary":
        present = np.unique(np.concatenate([y_true, y_pred]))
        if len(present) > 2:
            raise ValueError(f"precision_recall_f1: average='binary' needs at most 2 classes, got {len(present)} "
                             f"({present.tolist()[:10]}); use average='macro', 'micro' or 'weighted'")
        if len(present) == 2 and pos_label not in present.tolist():
            raise ValueError(f"precision_recall_f1: pos_label={pos_label!r} is not one of the classes "
                             f"{present.tolist()}; pass the positive class as pos_label")
        labels = [pos_label]
    labels = _resolve_labels(y_true, y_pred, labels, "precision_recall_f1")
    all_labels = np.unique(np.concatenate([y_true, y_pred, labels]))
    matrix = confusion_matrix(y_true, y_pred, labels=all_labels)
    chosen = np.searchsorted(all_labels, labels)
    tp = np.diag(matrix)[chosen]
    predicted = matrix.sum(axis=0)[chosen]  # TP + FP
    actual = matrix.sum(axis=1)[chosen]  # TP + FN, the support
    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
    precision = _ratio(tp, predicted, zero_division)
    recall = _ratio(tp, actual, zero_division)
    f1 = _ratio(2 * tp, predicted + actual, zero_division)  # 2TP + FP + FN = (TP + FP) + (TP + FN)
    if average == "macro":
        precision, recall, f1 = precision.mean(), recall.mean(), f1.mean()
    elif average == "weighted":
        if actual.sum() == 0:
            return zero_division, zero_division, zero_division
        precision, recall, f1 = (np.average(score, weights=actual) for score in (precision, recall, f1))
    if average is None:
        return precision, recall, f1
    return float(np.squeeze(precision)), float(np.squeeze(recall)), float(np.squeeze(f1))


def precision(y_true, y_pred, **options) -> float:
    """TP / (TP + FP), averaged as asked (options of precision_recall_f1)."""
    return precision_recall_f1(y_true, y_pred, **options)[0]


def recall(y_true, y_pred, **options) -> float:
    """TP / (TP + FN), averaged as asked (options of precision_recall_f1)."""
    return precision_recall_f1(y_true, y_pred, **options)[1]


def f1_score(y_true, y_pred, **options) -> float:
    """2 TP / (2 TP + FP + FN), averaged as asked (options of precision_recall_f1)."""
    return precision_recall_f1(y_true, y_pred, **options)[2]


def classification_report(y_true, y_pred, labels=None, zero_division: float = 0.0) -> dict:
    """Per class {precision, recall, f1, support}, then "accuracy", "macro avg" and "weighted avg" (as sklearn's
    output_dict=True, with plain Python numbers)."""
    y_true, y_pred = _labels_pair(y_true, y_pred, "classification_report")
    labels = _resolve_labels(y_true, y_pred, labels, "classification_report")
    per_class = precision_recall_f1(y_true, y_pred, average=None, labels=labels, zero_division=zero_division)
    support = [int(np.sum(y_true == label)) for label in labels]
    report = {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": s}
              for label, p, r, f, s in zip(labels.tolist(), *per_class, support)}
    report["accuracy"] = accuracy(y_true, y_pred)
    for name, average in (("macro avg", "macro"), ("weighted avg", "weighted")):
        p, r, f = precision_recall_f1(y_true, y_pred, average=average, labels=labels, zero_division=zero_division)
        report[name] = {"precision": p, "recall": r, "f1": f, "support": sum(support)}
    return report
