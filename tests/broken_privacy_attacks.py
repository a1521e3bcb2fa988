"""Deliberately broken pieces of the privacy attacks, each named after its bug, with the signature of the function it
imitates; tests/test_privacy_attacks.py proves its checks catch every one."""
import numpy as np


def roc_auc_splitting_ties(is_member, scores):
    """Walks the examples one at a time in sorted order, so tied scores are split by their input order: a tie
    between a member and a non-member counts 1 or 0 instead of 1/2, and the AUC depends on how the data was listed."""
    labels, scores = np.asarray(is_member, bool), np.asarray(scores, float)
    sorted_labels = labels[np.argsort(-scores, kind="stable")]  # BUG: no grouping of equal scores
    tpr = np.r_[0.0, np.cumsum(sorted_labels) / labels.sum()]
    fpr = np.r_[0.0, np.cumsum(~sorted_labels) / (~labels).sum()]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def secret_rank_with_ties_in_its_favour(log_likelihoods, secret_index):
    """1 + the number of candidates STRICTLY more likely: a model that cannot tell the candidates apart (all tied)
    ranks the secret first, and exposure reports the whole secret leaked when nothing was."""
    log_likelihoods = np.asarray(log_likelihoods)
    return int((log_likelihoods > log_likelihoods[secret_index]).sum()) + 1  # BUG: ties should count against it
