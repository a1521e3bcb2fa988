"""Exercises on backpropagation by hand: activation derivatives, a linear layer, broadcasting, a tiny network.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import finite_floats, float_arrays, small_shapes


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)); fine for the moderate z used here (|z| < 700)."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx for y = sigmoid(x), written with the forward OUTPUT y (x is not available); g = dL/dy, same shape."""
    return g * y * (1.0 - y)


def tanh_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx for y = tanh(x), written with the forward OUTPUT y (x is not available); g = dL/dy, same shape."""
    return g * (1.0 - y**2)


def linear_backward(x: np.ndarray, W: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = x @ W.T + b for x (N, in), W (out, in), b (out,), given g = dL/dy of shape (N, out).

    Returns (dx, dW, db) with the shapes of x, W and b.
    """
    return g @ W, g.T @ x, g.sum(axis=0)


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` (the gradient of a broadcast result) back to `shape`, the shape of the operand that was broadcast.

    Broadcasting adds leading dimensions and stretches dimensions of size 1, so both get summed away.
    Returns an array of exactly `shape`.
    """
    leading = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1)
    return grad.sum(axis=stretched, keepdims=True)


def two_layer_network(x: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: float,
                      y: float) -> dict:
    """Loss and gradients of p = sigmoid(W2 . sigmoid(W1 @ x + b1) + b2) under BCE = -[y ln p + (1-y) ln(1-p)].

    x (D,), W1 (H, D), b1 (H,), W2 (H,), b2 a float, y 0.0 or 1.0.
    Returns {"loss": float, "dW1": (H, D), "db1": (H,), "dW2": (H,), "db2": float}.
    """
    hidden = sigmoid(W1 @ x + b1)
    p = sigmoid(W2 @ hidden + b2)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    dz2 = p - y
    dz1 = dz2 * W2 * hidden * (1 - hidden)
    return {"loss": loss, "dW1": np.outer(dz1, x), "db1": dz1, "dW2": dz2 * hidden, "db2": dz2}


# The worked example of question Q01 and its table of values (6 decimals).
Q01_INPUTS = {"x": np.array([1.0, 2.0, 3.0]), "W1": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),
              "b1": np.array([0.4, 0.5]), "W2": np.array([0.1, 0.2]), "b2": 0.3, "y": 1.0}
Q01_TABLE = {"loss": 0.444266,
             "dW1": np.array([[-0.004366, -0.008733, -0.013099], [-0.001689, -0.003378, -0.005067]]),
             "db1": np.array([-0.004366, -0.001689]),
             "dW2": np.array([-0.307822, -0.350050]),
             "db2": -0.358705}


def q01_table(*network) -> dict:
    """The expected answer for Q01_INPUTS (the only input of the check that uses it), read off the table."""
    return Q01_TABLE


@st.composite
def activation_inputs(draw, forward: Callable[[np.ndarray], np.ndarray]) -> dict:
    """y = forward(x) for x in [-8, 8] (both tails and the steep middle), and an upstream gradient g."""
    x = draw(float_arrays(small_shapes(), -8.0, 8.0))
    return {"y": forward(x), "g": draw(float_arrays(x.shape, -3.0, 3.0))}


def matches_central_difference(forward: Callable, inverse: Callable, reference: Callable) -> Check:
    """dx must equal g * (f(x + h) - f(x - h)) / 2h at x = inverse(y): the definition of the derivative."""
    name = f"equals g * central difference of {forward.__name__} at x = {inverse.__name__}(y)"

    def verify(learner, drawn: dict) -> None:
        x, step = inverse(drawn["y"]), 1e-6
        numeric = drawn["g"] * (forward(x + step) - forward(x - step)) / (2 * step)
        received = call_learner(learner, drawn, name)
        expect_close(name, drawn, reference(**drawn), received, None, None)
        expect_close(name, drawn, numeric, received, rtol=1e-5, atol=1e-8)

    return Check(name, activation_inputs(forward), verify)


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


@st.composite
def linear_inputs(draw) -> dict:
    batch, fan_in, fan_out = (draw(st.integers(1, 4)) for _ in range(3))
    return {"x": draw(float_arrays((batch, fan_in), -3.0, 3.0)),
            "W": draw(float_arrays((fan_out, fan_in), -3.0, 3.0)),
            "g": draw(float_arrays((batch, fan_out), -3.0, 3.0))}


@st.composite
def unbroadcast_inputs(draw, with_probe: bool = False) -> dict:
    """A gradient of a broadcast shape and an operand shape that broadcasts to it (fewer dims, some set to 1).

    With `with_probe`, also an array v of the operand's shape for the adjoint property.
    """
    broadcast_shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    kept = broadcast_shape[draw(st.integers(0, len(broadcast_shape))):]
    shape = tuple(1 if draw(st.booleans()) else size for size in kept)
    drawn = {"grad": draw(float_arrays(broadcast_shape, -5.0, 5.0)), "shape": shape}
    return {**drawn, "v": draw(float_arrays(shape, -5.0, 5.0))} if with_probe else drawn


ADJOINT = "is the adjoint of broadcasting: sum(grad * broadcast_to(v, grad.shape)) == sum(result * v)"


def _is_adjoint_of_broadcast(learner, drawn: dict) -> None:
    """Why the sum is right: <grad, broadcast(v)> = <unbroadcast(grad), v> for every v, which defines the gradient."""
    arguments = {"grad": drawn["grad"], "shape": drawn["shape"]}
    result = call_learner(learner, arguments, ADJOINT)
    expect_close(ADJOINT, drawn, unbroadcast(**arguments), result, None, None)
    expected = np.sum(drawn["grad"] * np.broadcast_to(drawn["v"], drawn["grad"].shape))
    received = np.sum(result * drawn["v"])
    if not np.isclose(received, expected, rtol=1e-9, atol=1e-9):
        raise PropertyFailed(ADJOINT, drawn, expected, received,
                             "the left side (expected) and the right side (received, with your result) differ")


@st.composite
def network_inputs(draw) -> dict:
    """A random 2-layer network with D inputs and H hidden units, parameters in [-1, 1], a label 0 or 1."""
    inputs, hidden = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return {"x": draw(float_arrays(inputs, -3.0, 3.0)), "W1": draw(float_arrays((hidden, inputs), -1.0, 1.0)),
            "b1": draw(float_arrays(hidden, -1.0, 1.0)), "W2": draw(float_arrays(hidden, -1.0, 1.0)),
            "b2": draw(finite_floats(-1.0, 1.0)), "y": draw(st.sampled_from([0.0, 1.0]))}


DESCENDS = "a small step against your gradients (lr=1e-3) does not raise your loss"


def _gradient_step_descends(learner, drawn: dict) -> None:
    """M04: with the true gradient, a small enough step always lowers the loss (to first order by lr*|grad|^2)."""
    before = call_learner(learner, drawn, DESCENDS)
    expect_close(DESCENDS, drawn, two_layer_network(**drawn), before, None, None)
    stepped = dict(drawn)
    for parameter in ("W1", "b1", "W2", "b2"):
        stepped[parameter] = drawn[parameter] - 1e-3 * before["d" + parameter]
    after = call_learner(learner, stepped, DESCENDS)["loss"]
    if not after <= before["loss"] + 1e-12:
        raise PropertyFailed(DESCENDS, drawn, f"loss <= {float(before['loss'])!r}", after,
                             "the loss went up after a step against your gradients: is a sign flipped?")


SIGMOID_BACKWARD = Exercise(
    name="sigmoid_backward",
    title="Derivative of the sigmoid, from its output",
    statement=(
        "In a backward pass you usually keep the forward OUTPUT, not the input. Given y = sigmoid(x)\n"
        "(float64, any shape) and the upstream gradient g = dL/dy (same shape), return dL/dx.\n"
        "Tolerance: rtol=1e-9, atol=1e-12 against the reference."
    ),
    reference=sigmoid_backward,
    hints=(
        "Differentiate sigmoid(x) = 1 / (1 + exp(-x)) and write the result in terms of sigmoid(x) itself.",
        "sigmoid'(x) = sigmoid(x) (1 - sigmoid(x)) = y (1 - y). Do not apply sigmoid to y again: y already is "
        "the output. Chain rule: multiply by g.",
        "The sigmoid's derivative, written with its output y, is y times (1 - y); the incoming gradient g multiplies "
        "it elementwise (same shape, nothing summed).",
    ),
    checks=(
        matches_central_difference(sigmoid, logit, sigmoid_backward),
        matches_reference(sigmoid_backward, activation_inputs(sigmoid), rtol=1e-9, atol=1e-12),
    ),
)

TANH_BACKWARD = Exercise(
    name="tanh_backward",
    title="Derivative of tanh, from its output",
    statement=(
        "Given y = tanh(x) (float64, any shape) and the upstream gradient g = dL/dy (same shape),\n"
        "return dL/dx using only y and g. Tolerance: rtol=1e-9, atol=1e-12 against the reference."
    ),
    reference=tanh_backward,
    hints=(
        "Differentiate tanh(x) = (e^x - e^-x) / (e^x + e^-x) and write the result in terms of tanh(x).",
        "tanh'(x) = 1 - tanh(x)^2 = 1 - y^2: squared, and y is already the output. Multiply by g.",
        "The local derivative is one minus the SQUARE of the output y (no new tanh); multiply it elementwise by the "
        "incoming gradient g.",
    ),
    checks=(
        matches_central_difference(np.tanh, np.arctanh, tanh_backward),
        matches_reference(tanh_backward, activation_inputs(np.tanh), rtol=1e-9, atol=1e-12),
    ),
)

LINEAR_BACKWARD = Exercise(
    name="linear_backward",
    title="Backward pass of a linear layer y = x @ W.T + b",
    statement=(
        "A linear layer computes y = x @ W.T + b with x (N, in), W (out, in), b (out,). Given the upstream\n"
        "gradient g = dL/dy of shape (N, out), return (dx, dW, db), with the shapes of x, W and b.\n"
        "Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=linear_backward,
    hints=(
        "Let the shapes guide you: each gradient has its variable's shape, and there is only one way to "
        "multiply g (N, out) with x (N, in) or W (out, in) to get it.",
        "dx (N, in) comes from g (N, out) and W (out, in); dW (out, in) from g transposed and x. b is added "
        "to every row, so its gradient adds up the rows of g.",
        "dx is g times W with no transpose; dW is the transpose of g times x; db is the sum of g over the batch axis "
        "(axis 0). Return them in that order.",
    ),
    checks=(
        has_reference_shapes(linear_backward, linear_inputs(), "returns (dx, dW, db) with the shapes of x, W and b",
                             names=("dx", "dW", "db")),
        matches_reference(linear_backward, linear_inputs(), rtol=1e-9, atol=1e-12, names=("dx", "dW", "db")),
    ),
)

UNBROADCAST = Exercise(
    name="unbroadcast",
    title="Reduce a gradient back to the shape of a broadcast operand",
    statement=(
        "In z = a + b with broadcasting, a of shape `shape` was stretched to grad.shape. Given dL/dz (grad,\n"
        "float64) and the operand's `shape` (a tuple), return dL/da: an array of exactly `shape`. Broadcasting\n"
        "adds leading dimensions and stretches dimensions of size 1. Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=unbroadcast,
    hints=(
        "Each entry of a is used by every output it was broadcast to, so its gradient is the SUM of theirs.",
        "Two steps: sum over the leading dimensions grad has but `shape` lacks; then sum over every axis "
        "where `shape` has size 1, with keepdims=True so that axis stays (as size 1).",
        "The extra leading axes are the first grad.ndim - len(shape) ones: sum over all of them at once (a tuple of "
        "axes). Then sum over each axis where shape has a 1, keeping it as size 1 so the result has exactly `shape`.",
    ),
    checks=(
        has_reference_shapes(unbroadcast, unbroadcast_inputs(), "returns an array of exactly `shape`"),
        Check(ADJOINT, unbroadcast_inputs(with_probe=True), _is_adjoint_of_broadcast),
        matches_reference(unbroadcast, unbroadcast_inputs(), rtol=1e-9, atol=1e-12),
    ),
)

TWO_LAYER_NETWORK = Exercise(
    name="two_layer_network",
    title="Forward, loss and backward of a 3-2-1 sigmoid network by hand (Q01)",
    statement=(
        "A network with D inputs, H sigmoid hidden units and one sigmoid output: h = sigmoid(W1 @ x + b1),\n"
        "p = sigmoid(W2 . h + b2), loss = BCE = -[y ln p + (1 - y) ln(1 - p)] for a scalar label y in {0, 1}.\n"
        "x (D,), W1 (H, D), b1 (H,), W2 (H,), b2 a float. Return a dict with the loss and its gradients\n"
        "dW1 (H, D), db1 (H,), dW2 (H,), db2 (a float). The worked example is x = [1, 2, 3],\n"
        "W1 = [[.1, .2, .3], [.4, .5, .6]], b1 = [.4, .5], W2 = [.1, .2], b2 = .3, y = 1: loss 0.444266.\n"
        "Tolerance: 1e-6 against the worked example's table, rtol=1e-7 against the reference."
    ),
    reference=two_layer_network,
    helpers=(sigmoid,),
    hints=(
        "Forward: z1 = W1 @ x + b1, h = sigmoid(z1), z2 = W2 . h + b2, p = sigmoid(z2). Then go backward "
        "from the loss, one step of the chain rule per forward line.",
        "With a sigmoid output and BCE, dL/dz2 simplifies to p - y. Then dW2 = dz2 * h, db2 = dz2, "
        "dL/dh = dz2 * W2, and through the hidden sigmoid dz1 = dL/dh * h * (1 - h).",
        "Last, the first layer: dz1 is dz2 times W2 times the hidden sigmoid's derivative h(1 - h), per hidden unit; "
        "dW1 is the outer product of dz1 and x (shape (H, D), like W1); db1 is dz1 itself.",
    ),
    checks=(
        matches_reference(q01_table, st.just(Q01_INPUTS), rtol=0, atol=1e-6, max_examples=1,
                          name="reproduces the worked example of question Q01 (to 1e-6)"),
        Check(DESCENDS, network_inputs(), _gradient_step_descends),
        matches_reference(two_layer_network, network_inputs(), rtol=1e-7, atol=1e-10),
    ),
)

EXERCISES = (SIGMOID_BACKWARD, TANH_BACKWARD, LINEAR_BACKWARD, UNBROADCAST, TWO_LAYER_NETWORK)
