"""Activation checkpointing: trade compute for memory by recomputing a piece of the forward pass in backward.

A plain forward pass keeps every intermediate array an op's backward will need (the inputs of each matmul,
the softmax outputs, the GELU inputs...), so the memory of training grows with depth x batch x context. For a
GPT those saved activations, not the weights, are what fills memory first.

`checkpoint(fn, *inputs)` runs `fn` without recording the graph, so its intermediates are freed as soon as
`fn` returns, and keeps only the inputs. When backward reaches the output it runs `fn` again on the same
inputs, this time recording the graph, and back-propagates through that fresh graph. One block's
intermediates exist at a time, instead of every block's at once; the price is one more forward pass of `fn`
(a training step goes from about 3 forward-equivalents to about 4).

The recomputation must be the same computation, bit for bit:
- Dropout inside `fn` draws from the library's generator. The generator's state is saved before the first
  run and put back for the recomputation, so the same mask is drawn; afterwards the generator returns to
  where it was, so the code that runs after backward sees the random numbers it would have seen anyway.
- The gradients of parameters used inside `fn` accumulate into their `.grad` during the recomputation's
  backward, as in the plain graph. (A parameter used both inside and outside `fn` gets the two parts added
  in another order, which may change the last bit; a GPT's blocks own their parameters.)
What it cannot see: state `fn` reads that changes between forward and backward (a parameter updated in
place, `model.eval()` called in between). Keep backward right after forward, as training does.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .autograd import Function, is_grad_enabled, no_grad
from .dtypes import is_floating
from .random import generator
from .tensor import Tensor

__all__ = ["checkpoint"]


@contextlib.contextmanager
def replayed_random_state(saved_state: dict):
    """Run the block with the library's generator set back to `saved_state`, then restore the state it had."""
    live = generator()
    current_state = live.bit_generator.state
    live.bit_generator.state = saved_state
    try:
        yield
    finally:
        live.bit_generator.state = current_state


class Recompute(Function):
    """The graph node a checkpointed call leaves behind: it remembers `fn`, its inputs and the random state,
    not the intermediates. It is built by `checkpoint`, not by `Function.apply`: its output must require a
    gradient even when no input does, because the parameters `fn` uses are invisible from outside."""

    def __init__(self, fn, inputs, random_state: dict):
        self.fn, self.parents, self.random_state = fn, list(inputs), random_state

    def backward(self, grad_output: np.ndarray):
        # Fresh leaves: the recomputed graph ends at them, and their .grad is what flows on to the inputs.
        leaves = [x.detach().requires_grad_(x.requires_grad) for x in self.parents]
        with replayed_random_state(self.random_state):
            output = self.fn(*leaves)
        if output.requires_grad:  # False only when neither the inputs nor anything inside fn needs a gradient
            output.backward(grad_output)
        return tuple(leaf.grad for leaf in leaves)


def checkpoint(fn, *inputs: Tensor) -> Tensor:
    """fn(*inputs), with fn's intermediate activations freed now and recomputed during backward.

    The gradients (of the inputs and of every parameter fn uses) are bit-identical to calling fn(*inputs)
    directly, dropout included. Other arguments go into fn itself: checkpoint(partial(block, mask=m), x).
    Under no_grad there is no backward to prepare for, and this is just fn(*inputs).
    """
    for position, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"checkpoint: input {position} is a {type(x).__name__}, not a Tensor; pass only "
                            "tensors as inputs and bind other arguments into fn (functools.partial or a lambda)")
    if not is_grad_enabled():
        return fn(*inputs)
    random_state = generator().bit_generator.state
    with no_grad():
        output = fn(*inputs)
    if not isinstance(output, Tensor) or not is_floating(output.dtype):
        raise TypeError(f"checkpoint: fn must return one floating-point Tensor, got {output!r:.80}; checkpoint "
                        "each output separately, or return them concatenated")
    result = Tensor._from_op(output.data, requires_grad=True)
    result._ctx = Recompute(fn, inputs, random_state)
    return result
