"""What a shared update gives away: the exact input of a Linear layer, from one example's gradient (Q37, M58).

For y = x W^T + b and any loss L, row i of the gradients is

    dL/dW[i] = (dL/dy_i) x        dL/db[i] = dL/dy_i

so wherever dL/db[i] != 0, x = dL/dW[i] / dL/db[i]: the input itself, with no optimisation, no knowledge of the
loss or of the layers above (Phong et al. 2017; Zhu et al. 2019 recover deeper inputs by optimisation). For the
first layer of a network that is the raw example. A FedSGD update is -lr times the gradient and the ratio cancels
the -lr, so a client that sends its update after one step on one example has sent the example.

With B examples the gradient is a sum over them: dW[i] = sum_b g_bi x_b and db[i] = sum_b g_bi, so the ratio is
sum_b (g_bi / sum_b' g_b'i) x_b, a mix of the batch's inputs whose weights change from row to row: usually no
single example comes out. Secure aggregation leaves the server only the sum over clients, a mix again. Neither
is a guarantee: a row that only one example reached still gives that example (candidate_inputs tries every row),
and cleverer attacks untangle mixes. Only differential privacy bounds what an update can reveal.
"""
from __future__ import annotations

import numpy as np


def candidate_inputs(weight_gradient: np.ndarray, bias_gradient: np.ndarray) -> np.ndarray:
    """dL/dW[i] / dL/db[i] for every row i with dL/db[i] != 0, largest |dL/db[i]| first: (rows, in).

    From one example's gradient every row gives the same x. From a sum over examples each row gives its own mix,
    and a row that only one example reached (the others' ReLU above it was off, so their dL/db[i] = 0) gives
    that example exactly: why trying every row is the stronger attack on a sum.
    """
    weight_gradient, bias_gradient = np.asarray(weight_gradient), np.asarray(bias_gradient)
    if weight_gradient.ndim != 2 or bias_gradient.shape != weight_gradient.shape[:1]:
        raise ValueError(f"candidate_inputs: need a Linear layer's weight gradient (out, in) and bias gradient "
                         f"(out,), got {weight_gradient.shape} and {bias_gradient.shape}")
    rows = np.argsort(-np.abs(bias_gradient), kind="stable")
    rows = rows[bias_gradient[rows] != 0]
    if not len(rows):
        raise ValueError("candidate_inputs: every bias gradient is 0, so no row carries the input (the loss did not "
                         "depend on this layer's outputs, e.g. every ReLU above it was off)")
    return weight_gradient[rows].astype(np.float64) / bias_gradient[rows, None].astype(np.float64)


def reconstruct_linear_input(weight_gradient: np.ndarray, bias_gradient: np.ndarray) -> np.ndarray:
    """The candidate from the row with the largest |dL/db[i]| (the best-conditioned division): exact when the
    gradient (or a one-step SGD update) came from a single example. Weight (out, in) and bias (out,), as stored."""
    return candidate_inputs(weight_gradient, bias_gradient)[0]


def nearest_input_error(estimate: np.ndarray, inputs: np.ndarray) -> float:
    """min over the rows x_b of inputs of ||estimate - x_b|| / ||x_b||: 0 when one example was recovered exactly,
    about 1 or more when the estimate resembles none of them."""
    inputs = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    distances = np.linalg.norm(inputs - np.asarray(estimate, dtype=np.float64), axis=1)
    return float(np.min(distances / np.maximum(np.linalg.norm(inputs, axis=1), 1e-300)))
