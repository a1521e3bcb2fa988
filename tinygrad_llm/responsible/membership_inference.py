"""Membership inference by a loss threshold (Q37): was this example in the training set?

A model that memorised its training set has a lower loss on the examples it was trained on than on fresh
ones from the same distribution. The attacker needs nothing but the loss: score = -loss, and "member" when
the score is above a threshold. Each threshold gives one (false-positive rate, true-positive rate) point;
all of them together are the ROC curve, summarised by

    AUC = P(score of a random member > score of a random non-member)   (+ half the probability of a tie)

0.5 is a coin flip (the model leaks nothing the attack can see), 1.0 tells every member apart. The area under
the curve drawn by `roc_curve` equals that probability exactly: `roc_auc` is held to `auc_by_pairs`, the
definition itself (every member against every non-member, O(P N)). The attack's advantage, max over
thresholds of TPR - FPR, is how much better than guessing its best single threshold does. Differential
privacy bounds it for EVERY attack, this one or any cleverer: (epsilon, delta)-DP means TPR <= e^eps FPR + delta
and 1 - FPR <= e^eps (1 - TPR) + delta at every threshold, so TPR - FPR <= (e^eps - 1 + 2 delta) / (e^eps + 1)
(`advantage_bound`).
"""
from __future__ import annotations

import numpy as np


def _check_labels_and_scores(is_member, scores, caller: str) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(is_member), np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"{caller}: is_member and scores must be 1-D and of one length, got shapes {labels.shape} "
                         f"and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{caller}: is_member must hold only 0/1 (or False/True), got values {np.unique(labels)[:5]}")
    if labels.all() or not labels.any():
        raise ValueError(f"{caller}: need at least one member (1) and one non-member (0); got {int(labels.sum())} "
                         f"members among {len(labels)}: a rate over an empty group is undefined")
    if not np.isfinite(scores).all():
        raise ValueError(f"{caller}: scores must be finite, got {scores[~np.isfinite(scores)][:3]}")
    return labels.astype(bool), scores


def loss_threshold_scores(losses) -> np.ndarray:
    """The attack's score for each example: -loss (members have the lower loss, so the higher score)."""
    return -np.asarray(losses, dtype=np.float64)


def roc_curve(is_member, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): the rule "member if score >= threshold" at every distinct score, highest first,
    after the point (0, 0) of threshold +inf. Tied scores enter together, so a tie between a member and a
    non-member is one diagonal step, whose trapezoid counts the pair as half right."""
    labels, scores = _check_labels_and_scores(is_member, scores, "roc_curve")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # the last of each run of ties
    true_positives = np.cumsum(sorted_labels)[group_ends]
    false_positives = group_ends + 1 - true_positives
    fpr = np.r_[0.0, false_positives / (~labels).sum()]
    tpr = np.r_[0.0, true_positives / labels.sum()]
    return fpr, tpr, np.r_[np.inf, sorted_scores[group_ends]]


def roc_auc(is_member, scores) -> float:
    """The area under roc_curve by trapezoids: the probability a random member outscores a random non-member."""
    fpr, tpr, _ = roc_curve(is_member, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def auc_by_pairs(is_member, scores) -> float:
    """The definition, as the reference: over every (member, non-member) pair, 1 if the member scores higher,
    1/2 if they tie. O(members x non-members) memory, for checking roc_auc."""
    labels, scores = _check_labels_and_scores(is_member, scores, "auc_by_pairs")
    members, non_members = scores[labels][:, None], scores[~labels][None, :]
    return float(np.mean((members > non_members) + 0.5 * (members == non_members)))


def best_threshold_advantage(is_member, scores) -> tuple[float, float]:
    """(max over thresholds of TPR - FPR, the threshold reaching it): the attack's edge over guessing."""
    fpr, tpr, thresholds = roc_curve(is_member, scores)
    best = int(np.argmax(tpr - fpr))
    return float(tpr[best] - fpr[best]), float(thresholds[best])


def advantage_bound(epsilon: float, delta: float) -> float:
    """The largest TPR - FPR any membership test can reach against an (epsilon, delta)-DP training: the corner
    where both hypothesis-testing constraints above bind."""
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"advantage_bound: need epsilon >= 0 and 0 <= delta <= 1, got {epsilon} and {delta}")
    if np.isinf(epsilon):
        return 1.0
    return float(min(1.0, (np.expm1(epsilon) + 2 * delta) / (np.exp(epsilon) + 1)))


def loss_threshold_attack(member_losses, non_member_losses) -> dict:
    """The whole attack on one model: its per-example losses on members and non-members -> AUC, the best
    advantage and its loss threshold, and the ROC points (to plot)."""
    member_losses, non_member_losses = np.ravel(member_losses), np.ravel(non_member_losses)
    is_member = np.r_[np.ones(len(member_losses), bool), np.zeros(len(non_member_losses), bool)]
    scores = loss_threshold_scores(np.r_[member_losses, non_member_losses])
    advantage, threshold = best_threshold_advantage(is_member, scores)
    fpr, tpr, _ = roc_curve(is_member, scores)
    return {"auc": roc_auc(is_member, scores), "advantage": advantage, "loss_threshold": -threshold,
            "fpr": fpr.tolist(), "tpr": tpr.tolist()}
