"""The autograd engine: accumulation, no_grad, deep graphs, dtypes, gradcheck itself, and error messages.

Chapter 1 (Q01, Q02): `pytest -m autograd`.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.autograd import Function, unbroadcast
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import GradcheckError, gradcheck, numerical_gradient

pytestmark = pytest.mark.autograd


def float_arrays(dtype=np.float64, low=-3.0, high=3.0, min_dims=0, min_side=0):
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=min_side, max_side=4)
    return hnp.arrays(dtype, shapes, elements=st.floats(low, high, allow_nan=False, allow_subnormal=False, width=np.dtype(dtype).itemsize * 8))


def leaf(x) -> tgl.Tensor:
    return tgl.Tensor(np.asarray(x, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------------------------------------ accumulation
@given(x=float_arrays())
def test_a_tensor_used_twice_gets_both_contributions(x):
    t = leaf(x)
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad, 2 * x)  # not x: overwriting instead of adding loses one use


@given(x=float_arrays())
def test_a_tensor_used_in_two_branches_sums_the_branches(x):
    t = leaf(x)
    (t * 3.0 + t.exp()).sum().backward()
    np.testing.assert_allclose(t.grad, 3.0 + np.exp(x))


@given(x=float_arrays())
def test_the_same_leaf_in_many_ops(x):
    t = leaf(x)
    (t + t * t + t.exp() - t.tanh() + t / 2.0 + t.sigmoid() * t).sum().backward()
    s = 1 / (1 + np.exp(-x))
    expected = 1 + 2 * x + np.exp(x) - (1 - np.tanh(x) ** 2) + 0.5 + s * (1 - s) * x + s
    np.testing.assert_allclose(t.grad, expected, rtol=1e-12, atol=1e-12)


@given(x=float_arrays())
def test_diamond_graph_through_a_reused_intermediate(x):
    t = leaf(x)
    a = t * 2.0
    (a + a * a).sum().backward()  # d/dx (2x + 4x^2) = 2 + 8x
    np.testing.assert_allclose(t.grad, 2 + 8 * x, rtol=1e-12, atol=1e-12)


def test_backward_twice_without_zeroing_doubles_grad():
    t = leaf([1.0, -2.0, 3.0])
    loss = (t * t).sum()
    loss.backward()
    first = t.grad.copy()
    loss.backward()
    np.testing.assert_allclose(t.grad, 2 * first)
    t.grad = None  # zeroing, as an optimizer's zero_grad does
    loss.backward()
    np.testing.assert_allclose(t.grad, first)


def test_non_leaf_tensors_keep_no_grad_unless_retain_grad():
    t = leaf([1.0, 2.0])
    y = t * 3.0
    z = t * 5.0
    z.retain_grad()
    (y * y + z * z).sum().backward()
    assert t.is_leaf and not y.is_leaf
    assert y.grad is None
    np.testing.assert_allclose(z.grad, 2 * z.data)
    np.testing.assert_allclose(t.grad, 18 * t.data + 50 * t.data)


def test_leaves_without_requires_grad_get_no_grad():
    t, c = leaf([1.0, 2.0]), tgl.Tensor(np.array([3.0, 4.0]))
    (t * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(t.grad, c.data)


# ------------------------------------------------------------------------------------------ no_grad
def test_no_grad_records_nothing_and_restores_state():
    t = leaf([1.0, 2.0])
    assert tgl.is_grad_enabled()
    with tgl.no_grad():
        assert not tgl.is_grad_enabled()
        out = (t * 2.0).exp().sum()
    assert tgl.is_grad_enabled()
    assert out.requires_grad is False and out._ctx is None
    with pytest.raises(RuntimeError, match=r"does not require grad.*no_grad"):
        out.backward()


def test_no_grad_as_decorator():
    @tgl.no_grad()
    def infer(x):
        assert not tgl.is_grad_enabled()
        return x * x

    out = infer(leaf([3.0]))
    assert out.requires_grad is False and out._ctx is None
    assert tgl.is_grad_enabled()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with tgl.no_grad():
            1 / 0
    assert tgl.is_grad_enabled()

    @tgl.no_grad()
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert tgl.is_grad_enabled()


def test_no_grad_nests_and_a_decorated_function_may_recurse():
    with tgl.no_grad():
        with tgl.no_grad():
            pass
        assert not tgl.is_grad_enabled()
    assert tgl.is_grad_enabled()

    @tgl.no_grad()
    def countdown(n):
        return 0 if n == 0 else countdown(n - 1)

    countdown(3)  # one decorator object, entered 4 times before the first exit
    assert tgl.is_grad_enabled()


def test_graph_recorded_before_no_grad_still_backpropagates():
    t = leaf([2.0])
    y = t * t
    with tgl.no_grad():
        frozen = y * 10.0  # cut from the graph
    (y + frozen).sum().backward()
    np.testing.assert_allclose(t.grad, [4.0])


# ------------------------------------------------------------------------------------------ deep graphs
def test_a_10000_step_chain_backpropagates_without_recursion_error():
    x = leaf([0.5, -2.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(y.data, x.data * 1.0001**10_000, rtol=1e-10)
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001**10_000), rtol=1e-10)


def test_a_10000_step_tanh_rnn_matches_hand_written_backprop_through_time():
    steps, rng = 10_000, np.random.default_rng(0)
    inputs = rng.uniform(-1, 1, steps)
    w = leaf(0.9)
    h = tgl.Tensor(np.float64(0.0))
    hs = [0.0]
    for x_t in inputs:
        h = (w * h + x_t).tanh()
        hs.append(float(h.data))
    h.backward()

    dh, dw = 1.0, 0.0  # BPTT by hand: h_t = tanh(w h_{t-1} + x_t)
    for t in range(steps, 0, -1):
        dz = dh * (1 - hs[t] ** 2)
        dw += dz * hs[t - 1]
        dh = dz * 0.9
    np.testing.assert_allclose(w.grad, dw, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------------------------ non-scalar backward
def test_non_scalar_backward_needs_a_gradient_and_names_the_shape():
    y = leaf(np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError, match=r"non-scalar.*\(2, 3\).*gradient"):
        y.backward()


@given(x=float_arrays(min_dims=1), data=st.data())
def test_backward_with_gradient_computes_the_vector_jacobian_product(x, data):
    v = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-2, 2)))
    t = leaf(x)
    (t * t).backward(gradient=v)
    # atol: x * v + x * v and 2 * x * v may round differently once the product is subnormal (< 1e-307)
    np.testing.assert_allclose(t.grad, 2 * x * v, atol=1e-300)


def test_backward_gradient_of_the_wrong_shape_is_refused():
    y = leaf(np.ones((2, 3))) * 2.0
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(gradient=np.ones((3, 2)))


# ------------------------------------------------------------------------------------------ dtypes
FLOAT32_EXPRESSIONS = {
    "x * 2.0": lambda x: x * 2.0,
    "x + 1": lambda x: x + 1,
    "1 - x": lambda x: 1 - x,
    "x / 3": lambda x: x / 3,
    "2.0 / (x*x + 1)": lambda x: 2.0 / (x * x + 1),
    "x ** 2": lambda x: x**2,
    "2.0 ** x": lambda x: 2.0**x,
    "x.mean()": lambda x: x.mean(),
    "x.var()": lambda x: x.var(),
    "x.gelu()": lambda x: x.gelu(),
    "x.gelu(tanh)": lambda x: x.gelu(approximate="tanh"),
    "x.clamp(-1, 1)": lambda x: x.clamp(-1.0, 1.0),
    "x.relu() * 0.5": lambda x: x.relu() * 0.5,
    "softmax(x)": lambda x: F.softmax(x, axis=-1),
    "log_softmax(x)": lambda x: F.log_softmax(x, axis=-1),
    "x.logsumexp()": lambda x: x.logsumexp(),
    "masked_fill": lambda x: x.masked_fill(x > 0, -1e9),
    "where(x > 0, x, 0.1)": lambda x: tgl.where(x > 0, x, 0.1),
    "x.max() - x.min()": lambda x: x.max() - x.min(),
    "(x @ x.T) * 0.5": lambda x: (x @ x.T) * 0.5,
}


@pytest.mark.parametrize("expression", FLOAT32_EXPRESSIONS.values(), ids=FLOAT32_EXPRESSIONS.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_scalars_do_not_change_the_dtype_and_grads_have_the_parameters_dtype(expression, dtype):
    x = tgl.Tensor(np.array([[0.5, -1.5, 2.0], [1.0, 0.25, -0.75]], dtype=dtype), requires_grad=True)
    out = expression(x)
    assert out.dtype == dtype, f"{out.dtype}: a Python scalar promoted {np.dtype(dtype)}"
    out.sum().backward()
    assert x.grad.dtype == dtype
    assert x.grad.shape == x.shape


def test_python_floats_become_float32_tensors():
    assert tgl.tensor([1.0, 2.0]).dtype == np.float32
    assert tgl.tensor(1.5).dtype == np.float32
    assert tgl.tensor(np.array([1.0])).dtype == np.float64  # a NumPy array keeps its dtype
    assert (tgl.tensor(np.array(2.0)) * tgl.tensor(np.array(3.0))).dtype == np.float64  # 0-d results too


def test_grads_are_cast_back_to_the_parameters_dtype_in_mixed_precision():
    w = tgl.Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    x = tgl.Tensor(np.array([3.0, 4.0], dtype=np.float64))
    loss = (w.double() * x).sum() + (w * x).sum()
    assert loss.dtype == np.float64
    loss.backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad, 2 * x.data)


# ------------------------------------------------------------------------------------------ gradcheck itself
class WrongSignMul(Function):
    """A planted bug: d(a*b)/db returned as -a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a.shape), unbroadcast(-g * self.a, self.b.shape)


class MeanInsteadOfSumAdd(Function):
    """A planted bug: the broadcast operand's gradient is averaged over its copies instead of summed."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), g.mean(axis=0, keepdims=True).reshape(self.b_shape)


class SkipUnbroadcastAdd(Function):
    """A planted bug: no reduction at all, so the broadcast operand gets a gradient of the output's shape."""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


@given(x=float_arrays(min_dims=1, min_side=1), data=st.data())
def test_gradcheck_passes_on_a_correct_op(x, data):
    other = data.draw(hnp.arrays(np.float64, x.shape[-1:], elements=st.floats(-3, 3)))
    assert gradcheck(lambda a, b: a * b + a.exp(), leaf(x), leaf(other))


def test_gradcheck_catches_a_wrong_sign_and_says_where():
    a, b = leaf([2.0, 3.0]), leaf([5.0, 7.0])
    assert gradcheck(lambda a, b: (a * b).sum(), a, b)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: WrongSignMul.apply(a, b).sum(), a, b)
    message = str(info.value)
    assert "input 1" in message  # input 0 (a) is right; b is wrong
    assert "index (0,)" in message
    assert re.search(r"expected derivative 2\b.*got -2\b", message), message  # d/db0 of a.b is a0 = 2


def test_gradcheck_catches_a_broadcast_gradient_that_is_averaged_instead_of_summed():
    a, bias = leaf(np.arange(12.0).reshape(4, 3)), leaf([0.1, 0.2, 0.3])
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(3,\)\) at index \(0,\): expected derivative 4\b.*got 1\b"):
        gradcheck(lambda a, b: MeanInsteadOfSumAdd.apply(a, b).sum(), a, bias)


def test_a_gradient_of_the_wrong_shape_is_stopped_by_the_engine():
    a, bias = leaf(np.ones((4, 3))), leaf([0.1, 0.2, 0.3])
    with pytest.raises(RuntimeError, match=r"SkipUnbroadcastAdd.*\(4, 3\).*\(3,\).*unbroadcast"):
        gradcheck(lambda a, b: SkipUnbroadcastAdd.apply(a, b).sum(), a, bias)


def test_a_falling_loss_does_not_prove_the_gradient_right():
    """Q02: with the averaged-bias bug, gradient descent still lowers the loss, but gradcheck fails."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 3)) + 2.0
    bias = leaf(np.zeros(3))
    losses = []
    for _ in range(20):
        loss = ((MeanInsteadOfSumAdd.apply(tgl.Tensor(x), bias) - tgl.Tensor(y)) ** 2).mean()
        losses.append(float(loss.data))
        bias.grad = None
        loss.backward()
        bias.data -= 0.5 * bias.grad
    assert losses[-1] < losses[0]
    with pytest.raises(GradcheckError):
        gradcheck(lambda b: ((MeanInsteadOfSumAdd.apply(tgl.Tensor(x), b) - tgl.Tensor(y)) ** 2).mean(), leaf(np.zeros(3)))


def test_gradcheck_refuses_float32_and_inputs_without_grad():
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda a: a * a, tgl.Tensor(np.ones(2, dtype=np.float32), requires_grad=True))
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda a: a * a, tgl.Tensor(np.ones(2)))


@given(x=hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(-1, 1, allow_subnormal=False)))
def test_central_difference_error_against_h_is_v_shaped(x):
    """Q02: truncation error ~ h^2 falls as h shrinks, round-off ~ eps/h rises; in float64 the
    best h lies in [1e-7, 1e-4] (about eps^(1/3) ~ 1e-5)."""
    t = leaf(x)
    f = lambda t: t.exp().sum()  # noqa: E731  (f, f' and f''' never vanish, so neither error term does)
    f(t).backward()
    exact = t.grad
    hs = 10.0 ** -np.arange(1, 12.5, 0.5)
    errors = np.array([np.max(np.abs(numerical_gradient(f, [t], 0, eps=h) - exact) / np.abs(exact)) for h in hs])

    best = int(np.argmin(errors))
    assert 1e-7 <= hs[best] <= 1e-4, f"best h = {hs[best]:.0e}; errors {errors}"
    truncation_side = errors[hs >= 1e-4]
    assert np.all(np.diff(truncation_side) < 0), "truncation error must fall as h shrinks"
    assert errors[0] > 100 * errors[best] and errors[-1] > 100 * errors[best], "the error must rise on both sides"


# ------------------------------------------------------------------------------------------ Q01: a tiny network by hand
def tiny_network_params():
    return {
        "W1": leaf([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), "b1": leaf([0.4, 0.5]),
        "W2": leaf([0.1, 0.2]), "b2": leaf(0.3),
    }


def tiny_network_loss(p, x, y):
    h = (p["W1"] @ x + p["b1"]).sigmoid()
    prob = (p["W2"] @ h + p["b2"]).sigmoid()
    return -(y * prob.log() + (1 - y) * (1 - prob).log()), h, prob


def sgd_step(params, lr):
    for t in params.values():
        t.data -= lr * t.grad
        t.grad = None


def test_q01_forward_backward_and_one_step_match_the_reference_table():
    p, x = tiny_network_params(), tgl.Tensor(np.array([1.0, 2.0, 3.0]))
    loss, h, prob = tiny_network_loss(p, x, 1.0)
    loss.backward()
    close = dict(atol=1e-6, rtol=0)
    np.testing.assert_allclose(h.data, [0.858149, 0.975873], **close)
    np.testing.assert_allclose(prob.data, 0.641295, **close)
    np.testing.assert_allclose(loss.data, 0.444266, **close)
    np.testing.assert_allclose(p["W2"].grad, [-0.307822, -0.350050], **close)
    np.testing.assert_allclose(p["b2"].grad, -0.358705, **close)
    np.testing.assert_allclose(p["b1"].grad, [-0.004366, -0.001689], **close)
    np.testing.assert_allclose(p["W1"].grad, [[-0.004366, -0.008733, -0.013099], [-0.001689, -0.003378, -0.005067]], **close)

    sgd_step(p, 0.1)
    np.testing.assert_allclose(p["W1"].data, [[0.100437, 0.200873, 0.301310], [0.400169, 0.500338, 0.600507]], **close)
    np.testing.assert_allclose(p["b1"].data, [0.400437, 0.500169], **close)
    np.testing.assert_allclose(p["W2"].data, [0.130782, 0.235005], **close)
    np.testing.assert_allclose(p["b2"].data, 0.335870, **close)

    loss, _, prob = tiny_network_loss(p, x, 1.0)
    np.testing.assert_allclose(prob.data, 0.663193, **close)
    np.testing.assert_allclose(loss.data, 0.410690, **close)  # a drop of 0.033576


def test_q01_loss_after_n_steps():
    p, x = tiny_network_params(), tgl.Tensor(np.array([1.0, 2.0, 3.0]))
    after = {}
    for step in range(201):
        loss, _, _ = tiny_network_loss(p, x, 1.0)
        after[step] = float(loss.data)
        loss.backward()
        sgd_step(p, 0.1)
    for steps, expected in {0: 0.444266, 1: 0.410690, 10: 0.232762, 50: 0.069539, 100: 0.035521, 200: 0.017648}.items():
        assert abs(after[steps] - expected) < 1e-6, f"loss after {steps} steps: {after[steps]:.6f}, expected {expected}"
    assert all(after[k + 1] < after[k] for k in range(200)), "the loss must fall at every step"


@settings(max_examples=20)
@given(
    params=st.tuples(*(hnp.arrays(np.float64, s, elements=st.floats(-1, 1)) for s in [(2, 3), (2,), (2,), ()])),
    x=hnp.arrays(np.float64, 3, elements=st.floats(-3, 3)),
    y=st.sampled_from([0.0, 1.0]),
)
def test_q01_a_small_gradient_step_never_raises_the_loss(params, x, y):
    p = {name: leaf(v) for name, v in zip(["W1", "b1", "W2", "b2"], params)}
    before, _, _ = tiny_network_loss(p, tgl.Tensor(x), y)
    before.backward()
    sgd_step(p, 1e-3)
    after, _, _ = tiny_network_loss(p, tgl.Tensor(x), y)
    assert float(after.data) <= float(before.data) + 1e-12


# ------------------------------------------------------------------------------------------ bad input, clear messages
def test_matmul_shape_mismatch_names_the_op_and_both_shapes():
    a, b = tgl.zeros(2, 3), tgl.zeros(4, 5)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3, 4\).*\(5, 4, 2\)"):
        tgl.zeros(2, 3, 4) @ tgl.zeros(5, 4, 2)  # inner sizes agree, batch sizes 2 and 5 do not


@pytest.mark.parametrize("name, op", [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b),
                                      ("mul", lambda a, b: a * b), ("div", lambda a, b: a / b)])
def test_broadcast_mismatch_names_the_op_and_both_shapes(name, op):
    with pytest.raises(ValueError, match=rf"{name}: shapes \(2, 3\) and \(4,\) do not broadcast"):
        op(tgl.zeros(2, 3), tgl.zeros(4))


def test_cat_mismatch_names_cat_and_the_shapes():
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(2, 4\)"):
        tgl.cat([tgl.zeros(2, 3), tgl.zeros(2, 4)], axis=0)
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(3,\)"):
        tgl.cat([tgl.zeros(2, 3), tgl.zeros(3)], axis=0)
    with pytest.raises(ValueError, match=r"cat: axis 2 is out of range"):
        tgl.cat([tgl.zeros(2, 3), tgl.zeros(2, 3)], axis=2)


@pytest.mark.parametrize("method", ["reshape", "view"])
def test_reshape_to_an_incompatible_shape_names_both_shapes(method):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        getattr(tgl.zeros(2, 3), method)(4, 2)


def test_movement_ops_refuse_out_of_range_axes_instead_of_wrapping():
    with pytest.raises(ValueError, match="permute"):
        tgl.zeros(2, 3).permute(0, 3)
    with pytest.raises(ValueError, match="expand"):
        tgl.zeros(3).expand(-1, 3)


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tgl.ones(3) * 2.0).sum().backward()


def test_requires_grad_on_an_integer_tensor():
    with pytest.raises(TypeError, match="floating-point"):
        tgl.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        tgl.tensor([1, 2, 3]).requires_grad_()
