"""Chapter 1 learning checks (Q01, Q02): the worked two-layer example, finite differences, and a
planted broadcasting bug that a gradient check must catch."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm import cat
from tinygrad_llm.experiments import autograd as experiment
from tinygrad_llm.nn import functional as F
from tinygrad_llm.tensor import Tensor
from tinygrad_llm.testing import numerical_gradient

pytestmark = pytest.mark.autograd

# question Q01, written out again here so the test is the specification, not a copy of the code.
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


@pytest.fixture(scope="module")
def worked_example():
    return experiment.two_layer_worked_example()


@pytest.mark.parametrize("quantity", list(Q01_TABLE))
def test_worked_example_matches_the_q01_table(worked_example, quantity):
    computed, expected = np.ravel(worked_example[quantity]), np.ravel(Q01_TABLE[quantity])
    assert computed.shape == expected.shape, f"{quantity}: shape {computed.shape}, the table has {expected.shape}"
    np.testing.assert_allclose(computed, expected, rtol=0, atol=1e-6, err_msg=quantity)


def test_worked_example_shapes_follow_the_network(worked_example):
    """M01: 3 inputs, 2 hidden units, ONE sigmoid output paired with a scalar label; W1 is 2x3, dW1 too."""
    assert worked_example["z1"].shape == (2,) and worked_example["h"].shape == (2,)
    assert worked_example["autograd_gradients"]["W1"].shape == (2, 3)
    assert worked_example["autograd_gradients"]["W2"].shape == (1, 2)
    assert np.ndim(experiment.Q01_Y) == 0


def test_loss_decreases_strictly_over_200_steps(worked_example):
    losses = worked_example["losses"]
    assert len(losses) == 201
    assert np.all(np.diff(losses) < 0), f"the loss rose at step {int(np.argmax(np.diff(losses) >= 0)) + 1}"
    assert worked_example["loss_decreases_strictly"]


def test_autograd_agrees_with_finite_differences_in_float64(worked_example):
    # Central differences with eps=1e-6 on O(1) quantities: truncation ~1e-12, round-off ~1e-10.
    assert worked_example["max_error_vs_finite_difference"] < 1e-9
    for name, grad in worked_example["autograd_gradients"].items():
        np.testing.assert_allclose(grad, worked_example["finite_difference_gradients"][name], rtol=0, atol=1e-9)


def test_finite_difference_error_is_v_shaped_with_float64_minimum_near_1e_5():
    result = experiment.finite_difference_error_vs_step(fast=True)
    assert result["h"].max() == pytest.approx(1e-1) and result["h"].min() == pytest.approx(1e-12)
    assert 1e-7 <= result["best_h_float64"] <= 1e-4
    assert result["min_error_float64"] < 1e-9
    # float32 (eps ~1e-7) bottoms out at a larger step and a far larger error: checks in float32 are unreliable.
    assert result["best_h_float32"] > result["best_h_float64"]
    assert result["min_error_float32"] > 1e3 * result["min_error_float64"]
    # Both ends of the V are worse than the bottom.
    for dtype in ("float64", "float32"):
        error = result[f"error_{dtype}"]
        assert error[0] > 10 * error.min() and error[-1] > 10 * error.min()


def test_planted_broadcast_bug_is_caught_by_gradcheck_but_not_by_the_loss():
    result = experiment.planted_broadcast_bug(fast=True)
    assert result["gradcheck_caught_bug"], "gradcheck missed an add whose backward skips the broadcast sum"
    assert "central differences" in result["gradcheck_message"]
    assert result["loss_fell_with_bug"], "the point: a falling loss does not prove the gradient is right"
    assert result["gradcheck_passed_correct_add"]
    # Both bugs hide when nothing broadcasts: a gradient check must use shapes that broadcast.
    assert result["gradcheck_passed_same_shapes"] and result["naive_bug_passed_same_shapes"]
    assert result["naive_bug_caught_when_broadcasting"] and "unbroadcast" in result["naive_bug_message"]


# ----------------------------------------------------------------------------------------------- properties
@st.composite
def random_networks(draw):
    """A 3->2->1 sigmoid network with every parameter in [-1, 1], an input in [-3, 3] and a label 0 or 1."""
    def array(shape, bound=1.0):
        size = int(np.prod(shape))
        return np.array(draw(st.lists(st.floats(-bound, bound), min_size=size, max_size=size))).reshape(shape)

    params = {"W1": array((2, 3)), "b1": array((2,)), "W2": array((1, 2)), "b2": array((1,))}
    return params, array((3,), 3.0), draw(st.sampled_from([0.0, 1.0]))


@given(random_networks())
def test_a_small_step_never_raises_the_loss(network):
    """M04: against the true gradient, a step at lr = 1e-3 lowers the loss (to first order by lr * |grad|^2)."""
    values, x, y = network
    params = experiment.make_parameters(values)
    before = experiment.two_layer_forward(params, x, y)["L"]
    before.backward()
    experiment.gradient_descent_step(params, lr=1e-3)
    after = experiment.two_layer_forward(params, x, y)["L"]
    assert after.item() <= before.item() + 1e-12


@given(random_networks())
def test_autograd_matches_finite_differences_on_random_networks(network):
    values, x, y = network
    params = experiment.make_parameters(values)
    experiment.two_layer_forward(params, x, y)["L"].backward()
    tensors = list(params.values())

    def loss(*ts):
        return experiment.two_layer_forward(dict(zip(params, ts)), x, y)["L"]

    for i, tensor in enumerate(tensors):
        np.testing.assert_allclose(tensor.grad, numerical_gradient(loss, tensors, i), rtol=1e-6, atol=1e-9)


@given(st.floats(-30.0, 30.0), st.sampled_from([0, 1]))
def test_bce_of_sigmoid_equals_cross_entropy_on_logits_zero_z(z, y):
    """M01: one sigmoid output with a scalar label IS a 2-class softmax with logits [0, z]: softmax([0, z])[1] = sigmoid(z)."""
    z_bce = Tensor(np.array([z]), requires_grad=True)
    bce = F.binary_cross_entropy_with_logits(z_bce, np.array([float(y)]))
    bce.backward()

    z_ce = Tensor(np.array(z), requires_grad=True)
    logits = Tensor(np.zeros(1)).reshape(1, 1)
    ce = F.cross_entropy(cat([logits, z_ce.reshape(1, 1)], axis=1), np.array([y]))
    ce.backward()

    assert bce.item() == pytest.approx(ce.item(), rel=1e-9, abs=1e-12)
    assert z_bce.grad.item() == pytest.approx(z_ce.grad.item(), rel=1e-9, abs=1e-12)  # both sigmoid(z) - y
    if abs(z) < 15:  # the textbook formula agrees too, where 1 - sigmoid(z) does not round to 0
        p = 1 / (1 + np.exp(-z))
        assert bce.item() == pytest.approx(-(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-8, abs=1e-12)

