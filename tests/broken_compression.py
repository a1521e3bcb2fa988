"""Deliberately broken pruning and distillation pieces, each named after its bug; test_pruning.py and
test_distillation.py prove that their checks catch every one."""
import math

import numpy as np

from tinygrad_llm.compression.distillation import distillation_loss
from tinygrad_llm.nn import functional as F


def magnitude_mask_pruning_the_largest(weight, sparsity):
    """Keeps the right number of weights, but the SMALLEST ones: the model loses exactly what it needs most."""
    magnitudes = np.abs(np.asarray(weight)).ravel()
    keep = np.zeros(magnitudes.size, dtype=bool)
    keep[np.argsort(magnitudes, kind="stable")[:math.ceil(round((1 - sparsity) * magnitudes.size, 9))]] = True  # BUG
    return keep.reshape(np.shape(weight))


def magnitude_mask_keeping_floor(weight, sparsity):
    """Rounds the kept count down: floor((1 - s) n) instead of ceil, one weight too few whenever (1 - s) n is
    not a whole number (and at s = 0.95 of a 10-weight layer, none at all)."""
    magnitudes = np.abs(np.asarray(weight)).ravel()
    keep = np.zeros(magnitudes.size, dtype=bool)
    keep[np.argsort(-magnitudes, kind="stable")[:math.floor(round((1 - sparsity) * magnitudes.size, 9))]] = True  # BUG
    return keep.reshape(np.shape(weight))


def distillation_loss_without_t_squared(student_logits, teacher_logits, targets=None, temperature=2.0, alpha=0.5):
    """alpha * KL + (1 - alpha) * CE: without the T^2 factor the soft term's gradient shrinks like 1/T^2, so at
    T = 8 the teacher is ~64x quieter than alpha says."""
    soft = distillation_loss(student_logits, teacher_logits, None, temperature, alpha=1.0) / temperature**2  # BUG
    if alpha == 1:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, targets)


def masked_step_that_only_masks_gradients(loss_fn, optimizer, masks, clip_norm=1.0):
    """Zeroes the pruned weights' gradients but never re-applies the masks: AdamW's momentum from before
    pruning keeps moving the pruned weights away from 0."""
    optimizer.zero_grad()
    loss = loss_fn()
    loss.backward()
    masks.mask_gradients()
    optimizer.step()  # BUG: no masks.apply() after the step
    return loss.item()
