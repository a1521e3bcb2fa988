"""A deliberately broken per-sample-weighted loss, named after its bug; test_fairness.py proves that its checks
catch it."""
import numpy as np

from tinygrad_llm.nn import functional as F


def cross_entropy_with_sample_weights_as_class_weights(logits, target, sample_weight):
    """M57: squeezes the per-sample weights into cross_entropy's per-CLASS weight argument by averaging them over
    each class. Every example of a class then gets the same weight, so fairness reweighing (whose weights differ
    between groups within a class) is silently undone, though unit and uniformly scaled weights still look right."""
    target, sample_weight = np.asarray(target), np.asarray(sample_weight, dtype=np.float64)
    num_classes = logits.shape[-1]
    per_class = np.array([sample_weight[target == k].mean() if (target == k).any() else 1.0
                          for k in range(num_classes)])
    return F.cross_entropy(logits, target, weight=per_class)  # BUG: class weights, not sample weights
