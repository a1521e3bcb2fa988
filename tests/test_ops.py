"""Every differentiable op, checked three ways from the one table in op_table.py.

1. forward: equals the NumPy reference on float32 inputs, contiguous or not, with the same dtype;
2. backward: `tgl.testing.gradcheck` against central differences in float64 (non-contiguous inputs too);
3. oracle: values and gradients equal PyTorch's (skipped when torch is not installed).

Run one op with `pytest tests/test_ops.py -k matmul`, one chapter with `-m autograd`.
"""
from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from op_table import BY_NAME, TABLE, params

pytestmark = pytest.mark.autograd

LAYOUTS = ("contiguous", "transposed", "strided")


# ------------------------------------------------------------------------------------------ helpers
def draw_example(data, op):
    """One case of `op` (shapes + options) and its input arrays, drawn from the row's domains."""
    case = data.draw(op.cases, label="case")
    if op.arity != "n":
        assert len(case.shapes) == op.arity, f"{op.name}: the case strategy drew {len(case.shapes)} inputs, arity is {op.arity}"
    arrays = [data.draw(op.domain_of(i).arrays(shape), label=f"input {i}") for i, shape in enumerate(case.shapes)]
    return case, arrays


def is_float(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.floating)


def with_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """The same values in other memory: a transposed (Fortran-order) copy, or every second element of a
    bigger buffer (a strided view)."""
    if layout == "contiguous" or x.ndim == 0:
        return x
    if layout == "transposed":
        return np.ascontiguousarray(x.T).T
    buffer = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    buffer[..., ::2] = x
    return buffer[..., ::2]


def make_tensor(x: np.ndarray, layout: str = "contiguous", requires_grad: bool = False) -> tgl.Tensor:
    view = with_layout(x, layout)
    t = tgl.Tensor(view, requires_grad=requires_grad and is_float(x))
    # Tensor() copies its input (keeping a transposed layout, not a strided one). Put the view itself back,
    # as an op's forward can meet it inside a graph, so the op really runs on non-contiguous memory.
    t.data = view
    return t


def as_outputs(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def weights_for(outputs, seed=0) -> list:
    """Fixed random upstream gradients, one per output: backward then computes a full vector-Jacobian product."""
    return [np.random.default_rng(seed + i).standard_normal(o.shape) for i, o in enumerate(outputs)]


def scalarised(op, options):
    """`op` as a function gradcheck can take: tuple outputs (split) are folded with fixed weights."""

    def fn(*tensors):
        out = op.lib(*tensors, **options)
        if not isinstance(out, (tuple, list)):
            return out
        weights = weights_for(out)
        total = tgl.tensor(np.zeros((), dtype=np.float64))
        for o, w in zip(out, weights):
            total = total + (o * tgl.Tensor(w)).sum()
        return total

    return fn


# ------------------------------------------------------------------------------------------ the table itself
REQUIRED = {
    "add", "sub", "mul", "div", "neg", "pow_scalar", "pow_tensor", "matmul", "exp", "log", "sqrt", "abs", "tanh",
    "sigmoid", "relu", "gelu", "gelu_tanh", "clamp", "sum", "mean", "max", "min", "var_correction0",
    "var_correction1", "logsumexp", "reshape", "view", "flatten", "squeeze", "unsqueeze", "transpose", "permute",
    "expand", "T", "index_basic", "index_int_array", "index_bool_mask", "cat", "stack", "split", "where",
    "masked_fill", "float", "double", "astype_flip", "softmax", "log_softmax",
}


def test_table_covers_every_op():
    assert REQUIRED <= {op.name for op in TABLE}, f"missing rows: {sorted(REQUIRED - {op.name for op in TABLE})}"


# ------------------------------------------------------------------------------------------ 1. forward vs NumPy
@pytest.mark.parametrize("name", params())
@given(data=st.data())
def test_forward_matches_numpy_reference(name, data):
    op = BY_NAME[name]
    case, arrays = draw_example(data, op)
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    inputs = [x.astype(np.float32) if is_float(x) else x for x in arrays]
    expected = as_outputs(op.ref(*inputs, **case.options))
    tensors = [make_tensor(x, layout) for x in inputs]

    received = as_outputs(op.lib(*tensors, **case.options))

    assert len(received) == len(expected), f"{op.name}: {len(received)} outputs, the reference gives {len(expected)}"
    for got, want in zip(received, expected):
        want = np.asarray(want)
        assert isinstance(got, tgl.Tensor)
        assert got.shape == want.shape, f"{op.name}: shape {got.shape}, the reference gives {want.shape}"
        assert got.dtype == want.dtype, f"{op.name}: dtype {got.dtype}, the reference gives {want.dtype}"
        np.testing.assert_allclose(got.data, want, rtol=op.rtol, atol=op.atol, err_msg=f"{op.name} forward")
    for t, x in zip(tensors, inputs):
        np.testing.assert_array_equal(t.data, x, err_msg=f"{op.name} modified its input in place")


# ------------------------------------------------------------------------------------------ 2. backward vs central differences
@pytest.mark.parametrize("name", params())
@given(data=st.data())
def test_backward_matches_finite_differences(name, data):
    op = BY_NAME[name]
    case, arrays = draw_example(data, op)
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    tensors = [make_tensor(x.astype(np.float64) if is_float(x) else x, layout, requires_grad=True) for x in arrays]

    assert tgl.testing.gradcheck(scalarised(op, case.options), *tensors, eps=op.gradcheck_eps)


# ------------------------------------------------------------------------------------------ 3. oracle: PyTorch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.oracle
@pytest.mark.parametrize("name", params(where=lambda op: op.torch is not None))
@given(data=st.data())
def test_matches_torch(torch, name, data):
    op = BY_NAME[name]
    case, arrays = draw_example(data, op)
    inputs = [x.astype(np.float64) if is_float(x) else x for x in arrays]
    ours = [make_tensor(x, requires_grad=True) for x in inputs]
    theirs = [torch.from_numpy(x.copy()).requires_grad_(is_float(x)) for x in inputs]

    our_out = as_outputs(op.lib(*ours, **case.options))
    their_out = as_outputs(op.torch(*theirs, **case.options))

    assert len(our_out) == len(their_out)
    for o, t in zip(our_out, their_out):
        tight = o.dtype == np.float64
        assert o.shape == tuple(t.shape), f"{op.name}: shape {o.shape}, torch gives {tuple(t.shape)}"
        np.testing.assert_allclose(o.data, t.detach().numpy(), rtol=1e-10 if tight else 1e-6, atol=1e-12 if tight else 1e-6,
                                   err_msg=f"{op.name} forward vs torch")

    weights = weights_for(our_out)
    loss = sum(((o * tgl.Tensor(w)).sum() for o, w in zip(our_out, weights)), tgl.tensor(np.zeros(())))
    loss.backward()
    torch.autograd.backward(list(their_out), [torch.from_numpy(w).to(t.dtype) for w, t in zip(weights, their_out)])
    for i, (o, t) in enumerate(zip(ours, theirs)):
        if not t.requires_grad:
            continue
        want = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
        got = o.grad if o.grad is not None else np.zeros(o.shape)
        assert got.dtype == o.dtype, f"{op.name}: gradient of input {i} is {got.dtype}, the input is {o.dtype}"
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11, err_msg=f"{op.name} gradient of input {i} vs torch")


# ------------------------------------------------------------------------------------------ comparisons
COMPARISONS = [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]


@pytest.mark.parametrize("compare", COMPARISONS, ids=lambda f: f.__name__)
@given(data=st.data())
def test_comparisons_give_boolean_tensors_without_gradient(compare, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, min_side=0, max_side=4)).input_shapes
    grid = st.integers(-2, 2).map(float)  # a coarse grid, so equal values (the == and <= edge) are common
    a, b = (data.draw(hnp.arrays(np.float32, s, elements=grid)) for s in shapes)
    x = tgl.Tensor(a, requires_grad=True)

    for other, expected in [(tgl.Tensor(b, requires_grad=True), compare(a, b)), (b, compare(a, b)), (0.0, compare(a, 0.0))]:
        out = compare(x, other)
        assert isinstance(out, tgl.Tensor)
        assert out.dtype == np.bool_
        assert out.requires_grad is False and out._ctx is None
        np.testing.assert_array_equal(out.data, expected)


# ------------------------------------------------------------------------------------------ kinks and ties: the conventions
# The table keeps its inputs away from kinks and ties, where a derivative is a convention rather than a
# limit. These fix the conventions (PyTorch's) at exactly those points.
KINKS = {  # name: (library function, torch function, x, the gradient of fn(x).sum())
    "relu at 0": (lambda x: x.relu(), lambda t: t.relu(), [-1.0, 0.0, 2.0], [0.0, 0.0, 1.0]),
    "abs at 0": (lambda x: x.abs(), lambda t: t.abs(), [-1.0, 0.0, 2.0], [-1.0, 0.0, 1.0]),
    "clamp at its bounds": (lambda x: x.clamp(-1.0, 1.0), lambda t: t.clamp(-1.0, 1.0), [-1.0, 0.5, 1.0, 2.0], [1.0, 1.0, 1.0, 0.0]),
    "max with a tie": (lambda x: x.max(), lambda t: t.amax(), [1.0, 3.0, 3.0], [0.0, 0.5, 0.5]),
    "min with a tie": (lambda x: x.min(axis=0), lambda t: t.amin(dim=0), [[1.0, 2.0], [1.0, 0.0]], [[0.5, 0.0], [0.5, 1.0]]),
}


@pytest.mark.parametrize("fn, torch_fn, x, expected_grad", KINKS.values(), ids=KINKS.keys())
def test_gradient_conventions_at_kinks_and_ties(fn, torch_fn, x, expected_grad):
    t = tgl.Tensor(np.array(x), requires_grad=True)
    fn(t).sum().backward()
    np.testing.assert_array_equal(t.grad, expected_grad)


@pytest.mark.oracle
@pytest.mark.parametrize("fn, torch_fn, x, expected_grad", KINKS.values(), ids=KINKS.keys())
def test_gradient_conventions_at_kinks_and_ties_match_torch(torch, fn, torch_fn, x, expected_grad):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    torch_fn(t).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), expected_grad)
