"""Scalar autograd in the style of micrograd: one `Value` per number, the whole idea of backprop in ~80 lines.

    a, b = Value(2.0), Value(-3.0)
    loss = (a * b + a).tanh()
    loss.backward()          # a.grad == dloss/da, b.grad == dloss/db

Each op returns a new Value that remembers its parents and a `_backward` closure applying the local
derivative (the chain rule: parent.grad += local_derivative * out.grad). `backward()` visits the nodes
in reverse topological order, so a node's gradient is complete before it is passed on. The Tensor
library (`tinygrad_llm.tensor`) does the same thing with arrays instead of single numbers.
"""
from __future__ import annotations

import math


class Value:
    def __init__(self, data: float, _parents: tuple = (), op: str = "", label: str = ""):
        self.data, self.grad = float(data), 0.0
        self._parents, self.op, self.label = _parents, op, label
        self._backward = lambda: None  # leaves have nothing to pass on

    def __repr__(self):
        return f"Value({self.label + '=' if self.label else ''}{self.data:.6g}, grad={self.grad:.6g})"

    def _result(self, data, parents, op, local_derivatives):
        """A new node; its backward adds local_derivative * out.grad into each parent (`+=`: reuse accumulates)."""
        out = Value(data, parents, op)

        def _backward():
            for parent, local in zip(parents, local_derivatives):
                parent.grad += local * out.grad

        out._backward = _backward
        return out

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return self._result(self.data + other.data, (self, other), "+", (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return self._result(self.data * other.data, (self, other), "*", (other.data, self.data))

    def __pow__(self, exponent: float):
        if isinstance(exponent, Value):
            raise TypeError("Value ** Value is not supported; the exponent must be a Python number")
        return self._result(self.data**exponent, (self,), f"**{exponent:g}", (exponent * self.data ** (exponent - 1),))

    def exp(self):
        out = math.exp(self.data)
        return self._result(out, (self,), "exp", (out,))  # d/dx e^x = e^x

    def log(self):
        return self._result(math.log(self.data), (self,), "log", (1.0 / self.data,))

    def tanh(self):
        t = math.tanh(self.data)
        return self._result(t, (self,), "tanh", (1.0 - t * t,))

    def sigmoid(self):
        s = 0.5 * (1.0 + math.tanh(0.5 * self.data))  # 1 / (1 + e^-x) without overflow
        return self._result(s, (self,), "sigmoid", (s * (1.0 - s),))

    def relu(self):
        return self._result(max(self.data, 0.0), (self,), "relu", (float(self.data > 0),))

    # Everything else is built from the ops above, so it needs no backward of its own.
    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        return self * (other if isinstance(other, Value) else Value(other)) ** -1

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return Value(other) - self

    def __rtruediv__(self, other):
        return Value(other) / self

    def topological_order(self) -> list:
        """Every node this one depends on, parents before children: an iterative depth-first search with an
        explicit stack (a recursive one hits Python's recursion limit on a chain ~1,000 ops deep)."""
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
            elif id(node) not in visited:
                visited.add(id(node))
                stack.append((node, True))
                stack.extend((parent, False) for parent in node._parents if id(parent) not in visited)
        return order

    def backward(self) -> None:
        """Fill .grad = d(self)/d(node) for every node of the graph (gradients from an earlier call are reset)."""
        order = self.topological_order()
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()
