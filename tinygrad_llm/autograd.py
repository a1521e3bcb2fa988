"""Reverse-mode automatic differentiation: the Function protocol, the graph walk and no_grad.

Every differentiable op is a `Function` subclass with `forward` and `backward` side by side, both on raw
NumPy arrays. Calling `SomeOp.apply(*tensors, **options)` runs `forward` and, when gradients are wanted,
records the op on the output tensor so `backward()` can later walk the graph in reverse.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside `no_grad()`: only then are ops recorded for backward."""
    return getattr(_state, "grad_enabled", True)


class no_grad(contextlib.ContextDecorator):
    """Stop recording the graph (for inference and optimizer updates).

    Usable as `with tgl.no_grad(): ...` or as a decorator. Outputs made inside it have
    `requires_grad=False`, so calling backward on them raises a clear error.
    """

    def __init__(self):
        self._previous = []  # a stack: one instance (a decorator) may be entered again before it exits (recursion)

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _state.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous.pop()
        return False


class Function:
    """One differentiable op. Subclasses implement `forward(*arrays, **options)` returning an array and
    `backward(grad_output)` returning one gradient per tensor input (None where there is none).

    Anything `backward` needs from the forward pass is stored on `self` during `forward`.
    """

    def forward(self, *arrays: np.ndarray, **options) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, grad_output: np.ndarray):
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    @classmethod
    def apply(cls, *inputs, **options):
        from .tensor import Tensor

        tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        fn = cls()
        out_data = fn.forward(*(t.data for t in tensors), **options)
        requires_grad = is_grad_enabled() and any(t.requires_grad for t in tensors)
        out = Tensor._from_op(out_data, requires_grad)
        if requires_grad:
            fn.parents = tensors
            out._ctx = fn
        return out


def topological_order(root) -> list:
    """Every tensor that `root` depends on (and that needs a gradient), parents before children.

    Iterative depth-first search with an explicit stack, so a graph 100,000 ops deep (a long RNN
    unrolled in time) does not hit Python's recursion limit.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def accumulate(grads: dict, tensor, grad: np.ndarray) -> None:
    """Add `grad` into the running gradient of `tensor`.

    A tensor used twice (y = x * x) receives one gradient per use; they must be summed, not overwritten.
    """
    key = id(tensor)
    grads[key] = grads[key] + grad if key in grads else grad


def backward(root, grad_output: np.ndarray) -> None:
    """Propagate `grad_output` from `root` to every leaf, summing into each leaf's `.grad`."""
    grads = {id(root): grad_output}
    for node in reversed(topological_order(root)):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        if node._ctx is None or node._retains_grad:
            node._store_grad(grad)
        if node._ctx is None:
            continue
        parent_grads = node._ctx.backward(grad)
        if not isinstance(parent_grads, tuple):
            parent_grads = (parent_grads,)
        for parent, parent_grad in zip(node._ctx.parents, parent_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            if parent_grad.shape != parent.shape:
                raise RuntimeError(
                    f"{type(node._ctx).__name__}.backward returned a gradient of shape {parent_grad.shape} "
                    f"for an input of shape {parent.shape}; a backward must return one gradient per input, "
                    "of the input's own shape (undo broadcasting with unbroadcast)."
                )
            accumulate(grads, parent, parent_grad.astype(parent.dtype, copy=False))


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient of the broadcast output shape back down to an operand's `shape`.

    Broadcasting copies an operand along new leading axes and along its size-1 axes; each copy
    contributes to the loss, so the operand's gradient is the sum over those axes.
    """
    if grad.shape == tuple(shape):
        return grad
    extra_leading = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra_leading))) if extra_leading > 0 else grad
    size_one_axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if size_one_axes:
        grad = grad.sum(axis=size_one_axes, keepdims=True)
    return grad.reshape(shape)
