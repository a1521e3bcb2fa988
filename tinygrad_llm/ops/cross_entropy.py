"""Cross-entropy fused with log-softmax: per-row losses, no reduction.

Every flavour of cross-entropy (class ids, class weights, label smoothing, soft targets, ignored
positions) is one formula once the target of a row is written as weights q over the classes:

    loss_row = -sum_c q_c * log softmax(logits)_c
    d loss_row / d logits = (sum_c q_c) * softmax(logits) - q

With one-hot q this is the familiar softmax - one_hot. Fusing the two steps avoids log(softmax) of an
underflowed 0 and gives the gradient without the softmax Jacobian.
"""
import numpy as np

from .. import kernels
from ..autograd import Function


class CrossEntropy(Function):
    """Logits (N, C) against class ids (N,), through the active kernel set (the hot path of every LM)."""

    def forward(self, logits, targets=None, class_weight=None, ignore_index=-100, label_smoothing=0.0):
        self.logits, self.targets, self.class_weight = logits, targets, class_weight
        self.options = dict(ignore_index=ignore_index, label_smoothing=label_smoothing)
        losses, self.lse = kernels.active(logits).cross_entropy_forward(logits, targets, class_weight, **self.options)
        return losses

    def backward(self, g):
        return kernels.active(self.logits).cross_entropy_backward(self.logits, self.lse, self.targets, self.class_weight, g, **self.options)


class SoftTargetCrossEntropy(Function):
    """Logits (..., C) against explicit target weights q (..., C), e.g. probability distributions."""

    def forward(self, logits, target_weights):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        self.probs, self.q = np.exp(log_probs), target_weights
        return -(target_weights * log_probs).sum(axis=-1)

    def backward(self, g):
        mass = self.q.sum(axis=-1, keepdims=True)
        return g[..., None] * (mass * self.probs - self.q), None
