"""Chapter 1 experiments: the worked two-layer example (Q01), finite-difference error vs step size and a
planted broadcasting bug (Q02).

Every function returns a dict of plain numbers and arrays; the notebook prints and plots them, the
tests (marker `autograd`) assert on them.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, no_grad
from ..nn import functional as F
from ..ops.arithmetic import Add
from ..tensor import Tensor
from ..testing import GradcheckError, gradcheck, numerical_gradient

# ----------------------------------------------------------------------------------------------- Q01
# The worked example of question Q01: 3 inputs -> 2 sigmoid hidden units -> 1 sigmoid output, BCE loss.
Q01_X = np.array([1.0, 2.0, 3.0])
Q01_Y = 1.0
Q01_PARAMETERS = {
    "W1": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),  # (hidden, inputs) = (2, 3)
    "b1": np.array([0.4, 0.5]),  # (2,)
    "W2": np.array([[0.1, 0.2]]),  # (outputs, hidden) = (1, 2)
    "b2": np.array([0.3]),  # (1,)
}
Q01_LEARNING_RATE = 0.1

# The reference table (6 decimals), in the order of question Q01; arrays are compared flattened.
Q01_TABLE = {
    "z1": [1.8, 3.7],
    "h": [0.858149, 0.975873],
    "z2": 0.580989,
    "p": 0.641295,
    "L": 0.444266,
    "dL/dz2": -0.358705,
    "dL/dW2": [-0.307822, -0.350050],
    "dL/db2": -0.358705,
    "dL/dz1": [-0.004366, -0.001689],
    "dL/db1": [-0.004366, -0.001689],
    "dL/dW1": [[-0.004366, -0.008733, -0.013099], [-0.001689, -0.003378, -0.005067]],
    "W1 after one step": [[0.100437, 0.200873, 0.301310], [0.400169, 0.500338, 0.600507]],
    "b1 after one step": [0.400437, 0.500169],
    "W2 after one step": [0.130782, 0.235005],
    "b2 after one step": 0.335870,
    "p after one step": 0.663193,
    "L after one step": 0.410690,
    "L after 10 steps": 0.232762,
    "L after 50 steps": 0.069539,
    "L after 100 steps": 0.035521,
    "L after 200 steps": 0.017648,
}


def make_parameters(values: dict) -> dict:
    """float64 leaf tensors that require grad, one per parameter array."""
    return {name: Tensor(np.array(value, dtype=np.float64), requires_grad=True) for name, value in values.items()}


def two_layer_forward(params: dict, x, y: float) -> dict:
    """z1 = W1 x + b1, h = sigmoid(z1), z2 = W2 h + b2, p = sigmoid(z2), L = BCE(p, y) = -[y ln p + (1-y) ln(1-p)].

    Returns every intermediate tensor (z1 and z2 keep their gradients, for the table).
    """
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))
    z1 = (params["W1"] @ x + params["b1"]).retain_grad()
    h = z1.sigmoid()
    z2 = (params["W2"] @ h + params["b2"]).retain_grad()
    p = z2.sigmoid()
    loss = -(y * p.log() + (1 - y) * (1 - p).log()).sum()
    return {"z1": z1, "h": h, "z2": z2, "p": p, "L": loss}


def gradient_descent_step(params: dict, lr: float) -> None:
    """Plain gradient descent, in place: w <- w - lr * dL/dw, then clear the gradients for the next step."""
    for tensor in params.values():
        tensor.data = tensor.data - lr * tensor.grad
        tensor.grad = None


def two_layer_worked_example(steps: int = 200) -> dict:
    """Q01 by the library: forward, backward, one step, then `steps` steps of full-batch gradient descent.

    Returns the quantities of the Q01 table under the same names (arrays flattened where the table lists a
    vector), the finite-difference gradients, the loss after every step and a comparison with the table.
    """
    params = make_parameters(Q01_PARAMETERS)
    forward = two_layer_forward(params, Q01_X, Q01_Y)
    forward["L"].backward()
    grads = {name: tensor.grad.copy() for name, tensor in params.items()}

    def loss_of(*tensors):
        return two_layer_forward(dict(zip(params, tensors)), Q01_X, Q01_Y)["L"]

    numeric = {name: numerical_gradient(loss_of, list(params.values()), i, eps=1e-6) for i, name in enumerate(params)}
    fd_error = max(float(np.abs(grads[name] - numeric[name]).max()) for name in params)

    values = {
        "z1": forward["z1"].data, "h": forward["h"].data, "z2": forward["z2"].item(), "p": forward["p"].item(),
        "L": forward["L"].item(), "dL/dz2": forward["z2"].grad.item(), "dL/dW2": grads["W2"].ravel(),
        "dL/db2": grads["b2"].item(), "dL/dz1": forward["z1"].grad, "dL/db1": grads["b1"], "dL/dW1": grads["W1"],
    }
    losses = [forward["L"].item()]
    for step in range(1, steps + 1):
        gradient_descent_step(params, Q01_LEARNING_RATE)
        forward = two_layer_forward(params, Q01_X, Q01_Y)
        forward["L"].backward()
        losses.append(forward["L"].item())
        if step == 1:
            values.update({
                "W1 after one step": params["W1"].data.copy(), "b1 after one step": params["b1"].data.copy(),
                "W2 after one step": params["W2"].data.ravel().copy(), "b2 after one step": params["b2"].item(),
                "p after one step": forward["p"].item(), "L after one step": forward["L"].item(),
            })
    for k in (10, 50, 100, 200):
        if k <= steps:
            values[f"L after {k} steps"] = losses[k]

    table = [(name, values[name], Q01_TABLE[name],
              float(np.abs(np.ravel(values[name]) - np.ravel(Q01_TABLE[name])).max()))
             for name in Q01_TABLE if name in values]
    return {
        **values,
        "autograd_gradients": grads,
        "finite_difference_gradients": numeric,
        "max_error_vs_finite_difference": fd_error,
        "losses": np.array(losses),
        "loss_drop_after_one_step": losses[0] - losses[1],
        "table": table,
        "max_error_vs_table": max(row[3] for row in table),
        "loss_decreases_strictly": bool(np.all(np.diff(losses) < 0)),
    }


# ----------------------------------------------------------------------------------------------- Q02
def _smooth_function(x: Tensor) -> Tensor:
    """f(x) = e^x tanh(x): smooth, with no derivative that vanishes on the test points."""
    return x.exp() * x.tanh()


def _smooth_derivative(x: np.ndarray) -> np.ndarray:
    t = np.tanh(x)
    return np.exp(x) * (t + 1 - t * t)


def finite_difference_error_vs_step(fast: bool = False) -> dict:
    """Relative error of the central difference (f(x+h) - f(x-h)) / 2h against the exact derivative, for h
    from 1e-1 to 1e-12, in float64 and float32 (f evaluated with library ops in that dtype).

    The error is the median over several points x. Truncation error falls as h^2, round-off grows as eps/h,
    so the curve is V-shaped with its minimum near eps^(1/3).
    """
    h = np.logspace(-1, -12, 12 if fast else 45)
    points = np.linspace(-1.5, 1.5, 3 if fast else 9)
    exact = _smooth_derivative(points)
    result = {"h": h, "points": points}
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        errors = np.empty((len(h), len(points)))
        with no_grad():
            for i, step in enumerate(h):
                xs = points.astype(dtype)
                plus = _smooth_function(Tensor(xs + dtype(step))).data.astype(np.float64)
                minus = _smooth_function(Tensor(xs - dtype(step))).data.astype(np.float64)
                estimate = (plus - minus) / (2 * step)
                errors[i] = np.abs(estimate - exact) / np.maximum(np.abs(exact), 1e-12)
        error = np.median(errors, axis=1)
        eps = float(np.finfo(dtype).eps)
        result.update({
            f"error_{name}": error,
            f"best_h_{name}": float(h[np.argmin(error)]),
            f"min_error_{name}": float(error.min()),
            f"eps_{name}": eps,
            f"predicted_best_h_{name}": eps ** (1 / 3),
        })
    return result


class AddWithoutUnbroadcast(Function):
    """PLANTED BUG (naive): the backward of a + b hands g straight back to both operands, skipping the sum over
    the axes along which broadcasting copied an operand. Correct only when a and b have the same shape."""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g  # BUG: should be unbroadcast(g, a.shape), unbroadcast(g, b.shape)


def _one_copy(g: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of the FIRST broadcast copy only: index 0 on every axis broadcasting added or stretched."""
    g = g[(0,) * (g.ndim - len(shape))]
    return g[tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)]


class AddKeepsOneBroadcastCopy(Function):
    """PLANTED BUG (shape-correct): the same missing reduction, "fixed" until the shapes fit. A broadcast
    operand gets the gradient of one of its copies instead of the SUM over all copies. The engine's
    shape check cannot see it; only a gradient check can."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, g):
        return _one_copy(g, self.a_shape), _one_copy(g, self.b_shape)  # BUG: should sum over the copies


def _gradcheck_verdict(fn, *inputs) -> tuple[bool, str]:
    """(passed, message) of gradcheck, with the engine's own errors reported rather than raised."""
    try:
        gradcheck(fn, *inputs)
        return True, "gradcheck passed"
    except GradcheckError as error:
        return False, str(error)
    except RuntimeError as error:
        return False, f"RuntimeError: {error}"


def _train_linear_regression(add: type[Function], steps: int, seed: int = 0) -> np.ndarray:
    """Fit y = x w + b (x (N, 3), b broadcast over the batch) by gradient descent on the MSE; the bias is added
    with `add`. Returns the loss before every step and after the last."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 3))
    y = x @ np.array([[1.5], [-2.0], [0.5]]) + 3.0 + 0.1 * rng.standard_normal((32, 1))
    w = Tensor(np.zeros((3, 1)), requires_grad=True)
    b = Tensor(np.zeros(1), requires_grad=True)
    losses = []
    for _ in range(steps + 1):
        loss = F.mse_loss(add.apply(Tensor(x) @ w, b), Tensor(y))
        losses.append(loss.item())
        loss.backward()
        gradient_descent_step({"w": w, "b": b}, lr=0.1)
    return np.array(losses)


def planted_broadcast_bug(fast: bool = False) -> dict:
    """Q02: a backward that skips the broadcast reduction, and which checks notice.

    - "the loss goes down": train a small linear regression whose bias is added with the buggy op;
    - gradcheck on shapes that broadcast, on shapes that do not, and on the correct Add as a control;
    - the naive bug (return g unreduced): the engine's shape check raises, but only when shapes broadcast.
    """
    steps = 60 if fast else 300
    losses_buggy = _train_linear_regression(AddKeepsOneBroadcastCopy, steps)
    losses_correct = _train_linear_regression(Add, steps)

    rng = np.random.default_rng(0)

    def fresh(*shape):
        return Tensor(rng.standard_normal(shape), requires_grad=True)

    def call(op):
        return lambda a, b: op.apply(a, b)

    caught_ok, caught_message = _gradcheck_verdict(call(AddKeepsOneBroadcastCopy), fresh(4, 3), fresh(3))
    same_ok, _ = _gradcheck_verdict(call(AddKeepsOneBroadcastCopy), fresh(4, 3), fresh(4, 3))
    control_ok, _ = _gradcheck_verdict(call(Add), fresh(4, 3), fresh(3))
    naive_same_ok, _ = _gradcheck_verdict(call(AddWithoutUnbroadcast), fresh(4, 3), fresh(4, 3))
    naive_ok, naive_message = _gradcheck_verdict(call(AddWithoutUnbroadcast), fresh(4, 3), fresh(3))
    return {
        "steps": steps,
        "losses_buggy": losses_buggy,
        "losses_correct": losses_correct,
        "loss_fell_with_bug": bool(losses_buggy[-1] < losses_buggy[0]),
        "final_loss_buggy": float(losses_buggy[-1]),
        "final_loss_correct": float(losses_correct[-1]),
        "gradcheck_caught_bug": not caught_ok,
        "gradcheck_message": caught_message,
        "gradcheck_passed_same_shapes": same_ok,
        "gradcheck_passed_correct_add": control_ok,
        "naive_bug_passed_same_shapes": naive_same_ok,
        "naive_bug_caught_when_broadcasting": not naive_ok,
        "naive_bug_message": naive_message,
    }
