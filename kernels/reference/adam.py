"""One Adam / AdamW update, in place (the formulas and why are in tinygrad_llm/optim/adam.py).

    param *= 1 - lr * weight_decay                                   AdamW's decoupled decay (0 for Adam)
    m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
    param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Written as NumPy array statements it reads like the math, and each statement is one pass over memory
with a temporary array: about ten passes per parameter per step. The Numba set does it in one.
"""
import math

import numpy as np


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step, weight_decay=0.0):
    if weight_decay:
        param *= 1 - lr * weight_decay
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    denominator = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
    param -= (lr / bias_correction1) * exp_avg / denominator
