"""The scalar engine (`tinygrad_llm.scalar.Value`) computes the same gradients as the Tensor library."""
import math
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinygrad_llm.scalar import Value
from tinygrad_llm.tensor import Tensor

pytestmark = pytest.mark.autograd

# Each op works on Values and on float64 Tensors alike. Division and log get arguments kept away from 0.
UNARY = {
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "exp": lambda a: (a.tanh() * 2).exp(),  # tanh first, so that exp(exp(...)) cannot overflow
    "relu": lambda a: a.relu(),
    "square": lambda a: a**2,
    "cube": lambda a: a**3,
    "neg": lambda a: -a,
    "log": lambda a: (a * a + 1).log(),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1),
    "rsub": lambda a, b: 1.5 - a * b,
    "rdiv": lambda a, b: 2.0 / (a * a + b * b + 1),
}


@st.composite
def expressions(draw):
    """Three inputs and a program: each step applies an op to earlier nodes (any node may be used again)."""
    inputs = draw(st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3))
    steps = []
    for k in range(draw(st.integers(1, 8))):
        available = 3 + k
        if draw(st.booleans()):
            steps.append((draw(st.sampled_from(sorted(UNARY))), draw(st.integers(0, available - 1))))
        else:
            steps.append((draw(st.sampled_from(sorted(BINARY))), draw(st.integers(0, available - 1)),
                          draw(st.integers(0, available - 1))))
    return inputs, steps


def run(program, make):
    inputs, steps = program
    nodes = [make(v) for v in inputs]
    for op, *args in steps:
        nodes.append((UNARY.get(op) or BINARY[op])(*(nodes[i] for i in args)))
    return nodes[:3], nodes[-1] + nodes[-2] * 0.5  # mix in a second node, so the output is not always a leaf's


@given(expressions())
def test_value_gradients_equal_the_tensor_library(program):
    leaves, out = run(program, Value)
    assume(math.isfinite(out.data) and abs(out.data) < 1e6)
    out.backward()
    tensor_leaves, tensor_out = run(program, lambda v: Tensor(np.array(v), requires_grad=True))
    tensor_out.backward()
    assert out.data == pytest.approx(tensor_out.item(), rel=1e-9, abs=1e-12)
    for value, tensor in zip(leaves, tensor_leaves):
        expected = 0.0 if tensor.grad is None else tensor.grad.item()  # None: the output does not use that input
        assert value.grad == pytest.approx(expected, rel=1e-9, abs=1e-9), program


def test_reused_nodes_accumulate_their_gradients():
    a = Value(3.0)
    (a * a).backward()
    assert a.grad == 6.0  # d(a^2)/da = 2a: one contribution per use, summed
    b = a * a + a  # a is used three times
    b.backward()
    assert a.grad == 7.0  # 2a + 1, not 6 + 6 + 1 left over from the first call
    c = Value(2.0)
    d = c * c  # d is used twice below
    e = d * d + d
    e.backward()
    assert c.grad == pytest.approx((2 * d.data + 1) * 2 * c.data)  # de/dd * dd/dc = (2d + 1) * 2c = 36
    assert d.grad == 2 * d.data + 1


def test_each_op_has_the_textbook_derivative():
    x = 0.7
    cases = {
        "exp": (lambda v: v.exp(), math.exp(x)),
        "log": (lambda v: v.log(), 1 / x),
        "tanh": (lambda v: v.tanh(), 1 - math.tanh(x) ** 2),
        "sigmoid": (lambda v: v.sigmoid(), math.exp(-x) / (1 + math.exp(-x)) ** 2),
        "relu": (lambda v: v.relu(), 1.0),
        "pow": (lambda v: v**3, 3 * x**2),
        "div": (lambda v: 1 / v, -1 / x**2),
        "sub": (lambda v: 2 - v, -1.0),
    }
    for name, (fn, derivative) in cases.items():
        v = Value(x)
        fn(v).backward()
        assert v.grad == pytest.approx(derivative, rel=1e-12), name
    v = Value(-0.5)
    v.relu().backward()
    assert v.grad == 0.0


def test_a_10000_deep_chain_backpropagates_without_recursion():
    depth = 10_000
    assert depth > sys.getrecursionlimit()  # a recursive topological sort would raise RecursionError here
    x = Value(0.5)
    y = x
    for _ in range(depth):
        y = y * 1.0001 + x  # dy_k/dx = 1.0001 * dy_{k-1}/dx + 1
    y.backward()
    expected = sum(1.0001**k for k in range(depth + 1))
    assert x.grad == pytest.approx(expected, rel=1e-9)
    assert len(y.topological_order()) > 3 * depth
