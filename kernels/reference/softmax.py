"""Softmax over the last axis of a 2-D array (rows), forward and backward.

forward:  y = exp(x - max(x)) / sum(exp(x - max(x)))           (the max keeps exp from overflowing)
backward: dx = y * (g - sum(g * y))                              (the Jacobian diag(y) - y y^T, applied to g)

Three passes over each row in the forward (max, exp and sum, divide) and two in the backward: the data is
read a few times and only a few flops are done per element, so softmax is limited by memory bandwidth.
"""
import numpy as np


def softmax_forward(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    return y * (g - (g * y).sum(axis=-1, keepdims=True))
