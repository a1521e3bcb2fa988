"""Exercises on updating weights: SGD with momentum and weight decay, Adam, clipping by global norm.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import finite_floats, float_arrays, small_shapes


def sgd_momentum_step(w: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float,
                      weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """One step of SGD with momentum and L2 weight decay, PyTorch convention (no dampening, no Nesterov).

    w, grad, velocity share one shape. Returns (new_w, new_velocity).
    """
    g = grad + weight_decay * w
    new_velocity = momentum * velocity + g
    return w - lr * new_velocity, new_velocity


def adam_step(w: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float,
              beta1: float, beta2: float, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam step at step number t (1-based) with bias correction; m and v are the moments before this step.

    w, grad, m, v share one shape. Returns (new_w, new_m, new_v).
    """
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad**2
    m_hat = new_m / (1 - beta1**t)
    v_hat = new_v / (1 - beta2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), new_m, new_v


def global_norm(arrays: list[np.ndarray]) -> float:
    """The L2 norm of all entries of all arrays, as if they were one long vector."""
    return float(np.sqrt(sum(np.sum(array**2) for array in arrays)))


def clip_grad_norm(grads: list[np.ndarray], max_norm: float) -> tuple[list[np.ndarray], float]:
    """Scale all gradients by one factor so their GLOBAL L2 norm is at most max_norm.

    grads is a list of arrays of any shapes. Returns (clipped list, global norm before clipping).
    """
    total_norm = global_norm(grads)
    scale = max_norm / total_norm if total_norm > max_norm else 1.0
    return [g * scale for g in grads], total_norm


@st.composite
def sgd_inputs(draw, plain: bool = False) -> dict:
    """Weights, gradient and velocity of one shape, and common hyperparameter values (readable in a report).

    `plain` fixes momentum = weight_decay = 0.
    """
    shape = draw(small_shapes(max_dims=2))
    return {"w": draw(float_arrays(shape, -5.0, 5.0)), "grad": draw(float_arrays(shape, -5.0, 5.0)),
            "velocity": draw(float_arrays(shape, -5.0, 5.0)), "lr": draw(st.sampled_from([1.0, 0.1, 0.5, 0.01])),
            "momentum": 0.0 if plain else draw(st.sampled_from([0.0, 0.5, 0.9, 0.99])),
            "weight_decay": 0.0 if plain else draw(st.sampled_from([0.0, 0.5, 0.1, 0.01]))}


def plain_sgd(w, grad, velocity, lr, momentum, weight_decay) -> tuple[np.ndarray, np.ndarray]:
    """What SGD with momentum = weight_decay = 0 must reduce to: w - lr * grad (the velocity is just grad)."""
    return w - lr * grad, grad


@st.composite
def adam_inputs(draw, first_step: bool = False, zero_gradient: bool = False) -> dict:
    """Adam state mid-training (t in 1..20, where bias correction matters most), or the very first step.

    `zero_gradient` (with first_step) makes at least one gradient entry exactly 0, as for an embedding row no
    token used: its m and v stay 0, and only eps keeps 0 / 0 from turning that weight into nan."""
    shape = draw(small_shapes(max_dims=2))
    if first_step:  # gradients bounded away from 0, so eps is negligible and each coordinate moves by ~lr
        signs = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([1.0, -1.0])))
        if zero_gradient:
            signs.flat[draw(st.integers(0, signs.size - 1))] = 0.0
        grad = signs * draw(float_arrays(shape, 1e-3, 10.0))
        m, v, t = np.zeros(shape), np.zeros(shape), 1
    else:
        grad = draw(float_arrays(shape, -5.0, 5.0))
        m, v, t = draw(float_arrays(shape, -5.0, 5.0)), draw(float_arrays(shape, 1e-4, 25.0)), draw(st.integers(1, 20))
    return {"w": draw(float_arrays(shape, -5.0, 5.0)), "grad": grad, "m": m, "v": v, "t": t,
            "lr": draw(st.sampled_from([0.1, 0.01, 0.001])), "beta1": draw(st.sampled_from([0.9, 0.5, 0.99])),
            "beta2": draw(st.sampled_from([0.999, 0.9, 0.99, 0.9999])), "eps": 1e-8}


def adam_first_step(w, grad, m, v, t, lr, beta1, beta2, eps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At t = 1 from zero moments, m_hat = grad and v_hat = grad**2: each weight moves by lr against its gradient."""
    return w - lr * np.sign(grad), (1 - beta1) * grad, (1 - beta2) * grad**2


@st.composite
def clip_inputs(draw, below_threshold: bool = False) -> dict:
    """1 to 3 gradient arrays of different shapes and a max_norm; with `below_threshold`, max_norm >= their norm."""
    grads = [draw(float_arrays(small_shapes(max_dims=2), -5.0, 5.0)) for _ in range(draw(st.integers(1, 3)))]
    if below_threshold:
        return {"grads": grads, "max_norm": max(0.1, global_norm(grads) * draw(finite_floats(1.0, 3.0)))}
    return {"grads": grads, "max_norm": draw(finite_floats(0.1, 10.0))}


def unchanged_gradients(grads, max_norm) -> tuple[list[np.ndarray], float]:
    """What clipping must return when the gradients are already small enough: the same gradients."""
    return grads, global_norm(grads)


NORM_BEFORE = "total_norm is the global L2 norm of all gradients before clipping"
NORM_BOUNDED = "after clipping, the global norm of all gradients together is at most max_norm"
SAME_DIRECTION = "clipping keeps the direction: every gradient is scaled by the same factor, at most 1"


def _reports_norm_before_clipping(learner, drawn: dict) -> None:
    _, total_norm = _clipped_output(learner, drawn, NORM_BEFORE)
    expect_close(NORM_BEFORE, drawn, global_norm(drawn["grads"]), total_norm, rtol=1e-9, atol=1e-12)


def _norm_bounded(learner, drawn: dict) -> None:
    clipped, _ = _clipped_output(learner, drawn, NORM_BOUNDED)
    norm_after = global_norm(clipped)
    if norm_after > drawn["max_norm"] * (1 + 1e-9):
        raise PropertyFailed(NORM_BOUNDED, drawn, f"global norm <= {drawn['max_norm']!r}", norm_after,
                             "this is the norm of all your clipped gradients taken together")


def _same_direction(learner, drawn: dict) -> None:
    clipped, _ = _clipped_output(learner, drawn, SAME_DIRECTION)
    norm_before = global_norm(drawn["grads"])
    scale = global_norm(clipped) / norm_before if norm_before > 0 else 1.0
    expected = [g * scale for g in drawn["grads"]]
    if scale > 1 + 1e-9:
        raise PropertyFailed(SAME_DIRECTION, drawn, "a factor <= 1", scale,
                             "your gradients grew: clipping must never scale up")
    expect_close(SAME_DIRECTION, drawn, expected, clipped, rtol=1e-7, atol=1e-12)


def _clipped_output(learner, drawn: dict, name: str) -> tuple[list, float]:
    output = call_learner(learner, drawn, name)
    expect_close(name, drawn, clip_grad_norm(**drawn), output, None, None, names=("clipped", "total_norm"))
    return output


SGD_MOMENTUM_STEP = Exercise(
    name="sgd_momentum_step",
    title="One step of SGD with momentum and weight decay (PyTorch convention)",
    statement=(
        "Implement one SGD step as torch.optim.SGD does it (no dampening, no Nesterov): weight decay is\n"
        "added to the gradient BEFORE it enters the velocity. w, grad, velocity are float64 arrays of one\n"
        "shape; lr, momentum, weight_decay are floats. Return (new_w, new_velocity).\n"
        "Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=sgd_momentum_step,
    hints=(
        "Three lines: the effective gradient (with the L2 term), the new velocity, the new weights.",
        "The L2 penalty (wd/2)|w|^2 has gradient wd * w; add it to grad first. The velocity is a running "
        "sum, v = momentum * v + g (PyTorch does not multiply g by 1 - momentum). Step with the NEW velocity.",
        "First the effective gradient, grad plus weight_decay times w. The new velocity is momentum times the old "
        "velocity plus that gradient. The new weights are w minus lr times the NEW velocity; return both.",
    ),
    checks=(
        has_reference_shapes(sgd_momentum_step, sgd_inputs(), "returns (new_w, new_velocity) with w's shape",
                             names=("new_w", "new_velocity")),
        matches_reference(plain_sgd, sgd_inputs(plain=True), rtol=1e-9, atol=1e-12, names=("new_w", "new_velocity"),
                          name="with momentum = weight_decay = 0 it is plain SGD: w - lr * grad"),
        matches_reference(sgd_momentum_step, sgd_inputs(), rtol=1e-9, atol=1e-12, names=("new_w", "new_velocity")),
    ),
)

ADAM_STEP = Exercise(
    name="adam_step",
    title="One Adam step with bias correction",
    statement=(
        "Implement one step of Adam (Kingma & Ba) at step number t, counted from 1. w, grad, m, v are float64\n"
        "arrays of one shape (m, v: the moments before this step); lr, beta1, beta2, eps are floats.\n"
        "Use the textbook form w - lr * m_hat / (sqrt(v_hat) + eps). Return (new_w, new_m, new_v).\n"
        "Tolerance: rtol=1e-7, atol=1e-10."
    ),
    reference=adam_step,
    hints=(
        "Update both moving averages first (m of the gradient, v of its square), then correct their bias, "
        "then step.",
        "m and v start at 0, so early averages are too small by the factor (1 - beta^t); divide by it. Without "
        "that, the first step moves by lr * (1 - beta1) / sqrt(1 - beta2), about 3.16 * lr, not lr.",
        "m moves towards grad by the fraction (1 - beta1), v towards grad squared by (1 - beta2). Divide each by one "
        "minus its beta to the power t to undo the zero start. The step is lr times corrected m over (square root of "
        "corrected v plus eps); return the new w with the UNcorrected m and v.",
    ),
    checks=(
        has_reference_shapes(adam_step, adam_inputs(), "returns (new_w, new_m, new_v) with w's shape",
                             names=("new_w", "new_m", "new_v")),
        matches_reference(adam_first_step, adam_inputs(first_step=True), rtol=1e-4, atol=1e-6,
                          names=("new_w", "new_m", "new_v"),
                          name="the first step (t=1, m=v=0) moves every weight by about lr against its gradient"),
        matches_reference(adam_step, adam_inputs(first_step=True, zero_gradient=True), rtol=1e-7, atol=1e-10,
                          names=("new_w", "new_m", "new_v"),
                          name="eps keeps the step finite: a weight whose gradient and moments are 0 does not move"),
        matches_reference(adam_step, adam_inputs(), rtol=1e-7, atol=1e-10, names=("new_w", "new_m", "new_v")),
    ),
)

CLIP_GRAD_NORM = Exercise(
    name="clip_grad_norm",
    title="Clip a list of gradients by their global L2 norm",
    statement=(
        "Given a list of float64 gradient arrays (any shapes) and max_norm > 0, return (clipped, total_norm):\n"
        "total_norm is the L2 norm of ALL entries of all arrays together, before clipping; if it exceeds\n"
        "max_norm, every array is multiplied by the same factor max_norm / total_norm, else nothing changes.\n"
        "Tolerance: rtol=1e-5 (PyTorch's max_norm / (total_norm + 1e-6) is accepted)."
    ),
    reference=clip_grad_norm,
    helpers=(global_norm,),
    hints=(
        "Global means one norm for all the arrays together, not one per array: clipping per array changes "
        "the direction of the full gradient vector.",
        "total_norm = sqrt(sum over arrays of sum(g**2)). Only scale down: if total_norm <= max_norm, return "
        "the gradients unchanged. Return the norm from BEFORE clipping (that is what you log).",
        "The one factor is max_norm over the global norm when that norm exceeds max_norm, and 1 otherwise. Multiply "
        "every array by it and return the new list together with the norm from before clipping, as a float.",
    ),
    checks=(
        has_reference_shapes(clip_grad_norm, clip_inputs(), "returns (a list like grads, a float total_norm)",
                             names=("clipped", "total_norm")),
        Check(NORM_BEFORE, clip_inputs(), _reports_norm_before_clipping),
        Check(NORM_BOUNDED, clip_inputs(), _norm_bounded),
        Check(SAME_DIRECTION, clip_inputs(), _same_direction),
        matches_reference(unchanged_gradients, clip_inputs(below_threshold=True), rtol=1e-5, atol=1e-9,
                          names=("clipped", "total_norm"),
                          name="is a no-op when the global norm is already at most max_norm"),
        matches_reference(clip_grad_norm, clip_inputs(), rtol=1e-5, atol=1e-9, names=("clipped", "total_norm")),
    ),
)

EXERCISES = (SGD_MOMENTUM_STEP, ADAM_STEP, CLIP_GRAD_NORM)
