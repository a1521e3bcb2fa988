"""Cross-entropy against a target distribution, fused with log-softmax.

Every flavour of cross-entropy (class ids, class weights, label smoothing, soft targets, ignored
positions) is one formula once the targets are written as a row of weights q over the classes:

    loss_row = -sum_c q_c * log softmax(logits)_c
    d loss_row / d logits = (sum_c q_c) * softmax(logits) - q

With one-hot q this is the familiar softmax - one_hot. Fusing the two steps avoids log(softmax) of an
underflowed 0 and gives the gradient without the softmax Jacobian.
"""
import numpy as np

from ..autograd import Function


class CrossEntropyRows(Function):
    """Per-row loss for logits (..., C) and target weights q (..., C); no reduction."""

    def forward(self, logits, target_weights):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        self.probs, self.q = np.exp(log_probs), target_weights
        return -(target_weights * log_probs).sum(axis=-1)

    def backward(self, g):
        mass = self.q.sum(axis=-1, keepdims=True)
        return g[..., None] * (mass * self.probs - self.q), None
