"""Exercises on turning logits into probabilities and a loss: softmax, its backward, cross-entropy and its gradient.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, matches_reference, metamorphic
from .strategies import HUGE_LOGIT, float_arrays, logits_and_targets, small_shapes


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of float64 array `x` along `axis`: exp(x) / sum(exp(x)), finite even for logits of +-1e4.

    Returns an array of x's shape; every slice along `axis` is non-negative and sums to 1.
    """
    exps = np.exp(x - x.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def softmax_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient dL/dx of y = softmax(x, axis=-1), given y and the upstream gradient g = dL/dy (same shape).

    Returns an array of y's shape.
    """
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) along the last axis via log-sum-exp, so no exp can overflow and no log sees 0."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of logits (N, C) against integer class ids targets (N,) in [0, C).

    loss = mean over i of -log softmax(logits[i])[targets[i]]; finite for logits of +-1e4.
    """
    return -log_softmax(logits)[np.arange(len(targets)), targets].mean()


def cross_entropy_grad(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy with respect to logits (N, C), given targets (N,) in [0, C).

    Returns an array of shape (N, C).
    """
    one_hot = np.zeros_like(logits)
    one_hot[np.arange(len(targets)), targets] = 1.0
    return (softmax(logits, axis=-1) - one_hot) / len(targets)


@st.composite
def softmax_inputs(draw) -> dict:
    x = draw(float_arrays(small_shapes()))
    return {"x": x, "axis": draw(st.integers(-x.ndim, x.ndim - 1))}


@st.composite
def softmax_inputs_with_slice_shift(draw) -> dict:
    """A softmax input plus c, one constant per slice along `axis` (shape of x with that axis set to 1)."""
    drawn = draw(softmax_inputs())
    shape = list(drawn["x"].shape)
    shape[drawn["axis"]] = 1
    return {**drawn, "c": draw(float_arrays(tuple(shape), -50.0, 50.0))}


@st.composite
def huge_softmax_inputs(draw) -> dict:
    """Moderate logits with each slice along `axis` moved by +1e4 or -1e4 on its own: the exact softmax is
    unchanged, a naive exp overflows or underflows, and so does subtracting one max over the whole array (a slice
    1e4 below it underflows to 0 / 0). Moving every slice by the same amount would let that bug pass."""
    drawn = draw(softmax_inputs())
    shape = list(drawn["x"].shape)
    shape[drawn["axis"]] = 1
    signs = draw(st.lists(st.sampled_from([1.0, -1.0]), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return {**drawn, "x": drawn["x"] + HUGE_LOGIT * np.reshape(signs, shape)}


@st.composite
def softmax_backward_inputs(draw) -> dict:
    x = draw(float_arrays(small_shapes()))
    return {"y": softmax(x), "g": draw(float_arrays(x.shape, -5.0, 5.0))}


@st.composite
def softmax_backward_inputs_with_row_shift(draw) -> dict:
    drawn = draw(softmax_backward_inputs())
    return {**drawn, "c": draw(float_arrays(drawn["g"].shape[:-1] + (1,), -5.0, 5.0))}


def huge_logits_and_targets() -> st.SearchStrategy[dict]:
    return logits_and_targets(-HUGE_LOGIT, HUGE_LOGIT)


def _with_batch_repeated(drawn: dict) -> tuple[dict, dict]:
    return drawn, {name: np.concatenate([array, array]) for name, array in drawn.items()}


SUMS_TO_ONE = "every slice along `axis` is a probability distribution (entries >= 0 that sum to 1)"


def _sums_to_one(learner, drawn: dict) -> None:
    probabilities = call_learner(learner, drawn, SUMS_TO_ONE)
    expect_close(SUMS_TO_ONE, drawn, softmax(**drawn), probabilities, None, None)
    sums = probabilities.sum(axis=drawn["axis"])
    if not (np.all(probabilities >= 0) and np.allclose(sums, 1.0, rtol=0, atol=1e-9)):
        raise PropertyFailed(SUMS_TO_ONE, drawn, np.ones_like(sums), sums,
                             f"these are the sums of your output along axis {drawn['axis']}; each must be 1 "
                             "(and every entry >= 0)")


def rows_sum_to_zero(reference, inputs: st.SearchStrategy[dict], reason: str) -> Check:
    """Every row of the learner's gradient sums to 0: shared by the softmax and cross-entropy backwards."""
    name = f"every row of the gradient sums to 0 ({reason})"

    def verify(learner, drawn: dict) -> None:
        gradient = call_learner(learner, drawn, name)
        expect_close(name, drawn, reference(*drawn.values()), gradient, None, None)
        sums = gradient.sum(axis=-1)
        scale = 1.0 + max(np.abs(value).max() for value in drawn.values())
        if not np.allclose(sums, 0.0, rtol=0, atol=1e-9 * scale):
            raise PropertyFailed(name, drawn, np.zeros_like(sums), sums,
                                 "these are the sums of your gradient along the last axis; each must be 0")

    return Check(name, inputs, verify)


SOFTMAX = Exercise(
    name="softmax",
    title="Numerically stable softmax along an axis",
    statement=(
        "Implement softmax(x, axis=-1) for a float64 array x of any shape. Along `axis`,\n"
        "softmax(x)_i = exp(x_i) / sum_j exp(x_j). The result has x's shape and every slice along `axis`\n"
        "is a probability distribution. It must stay finite and exact for logits as large as +-1e4:\n"
        "exp(710) already overflows float64. Tolerance: rtol=1e-7, atol=1e-12."
    ),
    reference=softmax,
    hints=(
        "Exponentiate, then divide by the sum along `axis`. Sum with keepdims=True so the division broadcasts "
        "over the right axis.",
        "exp(1e4) is inf and exp(-1e4) is 0, so the naive formula gives inf/inf or 0/0 = nan. Softmax does not "
        "change when you subtract the same constant from every entry of a slice: which constant makes the "
        "largest exponent exp(0) = 1?",
        "Subtract each slice's maximum (kept with keepdims=True) from x before exponentiating: the largest exponent "
        "is then exp(0) = 1, so nothing overflows and the sum is at least 1. Divide by the sum of the exponentials "
        "along the same axis.",
    ),
    checks=(
        Check(SUMS_TO_ONE, softmax_inputs(), _sums_to_one),
        metamorphic("softmax(x + c) == softmax(x) when c is constant along `axis` (shift invariance)",
                    softmax_inputs_with_slice_shift(), softmax,
                    lambda drawn: ({"x": drawn["x"], "axis": drawn["axis"]},
                                   {"x": drawn["x"] + drawn["c"], "axis": drawn["axis"]}),
                    lambda output: output, rtol=1e-7, atol=1e-12),
        matches_reference(softmax, softmax_inputs(), rtol=1e-7, atol=1e-12),
        matches_reference(softmax, huge_softmax_inputs(), rtol=1e-7, atol=1e-12,
                          name="stays finite and exact at logits of +-1e4 (overflow-safe)"),
    ),
)

SOFTMAX_BACKWARD = Exercise(
    name="softmax_backward",
    title="Backward pass of softmax (the Jacobian-vector product)",
    statement=(
        "y = softmax(x) along the last axis, and g = dL/dy is the upstream gradient (same shape as y).\n"
        "Implement softmax_backward(y, g) returning dL/dx, an array of y's shape, without building the\n"
        "(C, C) Jacobian for every row. Inputs have 1 to 3 dimensions. Tolerance: rtol=1e-7, atol=1e-10."
    ),
    reference=softmax_backward,
    hints=(
        "The Jacobian of one row is dy_i/dx_j = y_i (delta_ij - y_j). dL/dx_j = sum_i g_i dy_i/dx_j.",
        "Expanding the sum gives dL/dx_j = y_j g_j - y_j sum_i g_i y_i: one dot product per row, then "
        "an elementwise product. Keep the summed axis so it broadcasts.",
        "Per row: take the dot product of g and y (a sum over the last axis, kept as a column), subtract it from "
        "every entry of g, and multiply the result elementwise by y.",
    ),
    checks=(
        rows_sum_to_zero(softmax_backward, softmax_backward_inputs(),
                         "softmax outputs always sum to 1, so moving x cannot change that sum"),
        metamorphic("adding a constant c to each row of g leaves dx unchanged",
                    softmax_backward_inputs_with_row_shift(), softmax_backward,
                    lambda drawn: ({"y": drawn["y"], "g": drawn["g"]}, {"y": drawn["y"], "g": drawn["g"] + drawn["c"]}),
                    lambda output: output, rtol=1e-7, atol=1e-10),
        matches_reference(softmax_backward, softmax_backward_inputs(), rtol=1e-7, atol=1e-10),
    ),
)

CROSS_ENTROPY = Exercise(
    name="cross_entropy",
    title="Mean cross-entropy from logits, stable via log-sum-exp",
    statement=(
        "Given logits (N, C) float64 and integer class ids targets (N,) with values in [0, C), return the\n"
        "mean over the batch of -log softmax(logits[i])[targets[i]] as a scalar. It must be finite and exact\n"
        "for logits as large as +-1e4 (no log of an underflowed 0). Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=cross_entropy,
    helpers=(log_softmax,),
    hints=(
        "-log softmax(z)[t] = logsumexp(z) - z[t]. Compute log-probabilities directly instead of taking the "
        "log of probabilities: softmax can underflow to 0 and log(0) = -inf.",
        "logsumexp(z) = m + log(sum(exp(z - m))) with m = max(z). To pick one entry per row use "
        "log_probs[np.arange(N), targets], not log_probs[:, targets] (that is an (N, N) matrix).",
        "Shift each row by its own max, take log-probabilities as the shifted logits minus the log of the row's "
        "sum of exponentials, then average minus the entry of each row's target over the batch.",
    ),
    checks=(
        metamorphic("is a mean over the batch: repeating the batch twice leaves the loss unchanged",
                    logits_and_targets(), cross_entropy, _with_batch_repeated, lambda loss: loss,
                    rtol=1e-9, atol=1e-12),
        matches_reference(cross_entropy, logits_and_targets(), rtol=1e-9, atol=1e-12),
        matches_reference(cross_entropy, huge_logits_and_targets(), rtol=1e-9, atol=1e-12,
                          name="stays finite and exact for logits up to +-1e4 (log-sum-exp)"),
    ),
)

CROSS_ENTROPY_GRAD = Exercise(
    name="cross_entropy_grad",
    title="Gradient of the mean cross-entropy with respect to the logits",
    statement=(
        "For L = mean over i of -log softmax(logits[i])[targets[i]], with logits (N, C) float64 and integer\n"
        "targets (N,) in [0, C), return dL/dlogits, an (N, C) array. It must be finite for logits of +-1e4.\n"
        "Tolerance: rtol=1e-7, atol=1e-12."
    ),
    reference=cross_entropy_grad,
    helpers=(softmax,),
    hints=(
        "For one row, d(-log softmax(z)[t])/dz_j = softmax(z)_j - [j == t]. Then remember the mean.",
        "Build a one-hot matrix of the targets (zeros, then a 1 at [i, targets[i]]). The loss averages over "
        "N rows, so every row of the gradient carries a factor 1/N. Use a stable softmax.",
        "Three steps: a zero matrix shaped like the logits with a 1 in column targets[i] of each row i (index rows "
        "with np.arange), the stable softmax of the logits minus that matrix, and a division by the number of rows N.",
    ),
    checks=(
        rows_sum_to_zero(cross_entropy_grad, logits_and_targets(), "softmax and one-hot rows both sum to 1"),
        metamorphic("the loss is a mean: repeating the batch twice halves every row of the gradient",
                    logits_and_targets(), cross_entropy_grad, _with_batch_repeated,
                    lambda gradient: np.concatenate([gradient, gradient]) / 2, rtol=1e-7, atol=1e-12),
        matches_reference(cross_entropy_grad, logits_and_targets(), rtol=1e-7, atol=1e-12),
        matches_reference(cross_entropy_grad, huge_logits_and_targets(), rtol=1e-7, atol=1e-12,
                          name="stays finite and exact for logits up to +-1e4 (stable softmax)"),
    ),
)

EXERCISES = (SOFTMAX, SOFTMAX_BACKWARD, CROSS_ENTROPY, CROSS_ENTROPY_GRAD)
