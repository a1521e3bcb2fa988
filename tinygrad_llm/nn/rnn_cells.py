"""Recurrent cells: one time step of a tanh RNN, an LSTM and a GRU.

    state_t = cell(x_t, state_{t-1})        x_t (B, I), state (B, H) (the LSTM's state is a pair (h, c))

The weights are laid out exactly as PyTorch's, so a learner can copy them into torch.nn.LSTM and compare:
the G gates' rows are stacked in weight_ih (G*H, I), weight_hh (G*H, H), bias_ih and bias_hh (G*H,), in the
order RNN (one block), LSTM (i, f, g, o), GRU (r, z, n). Two biases are redundant for RNN and LSTM (only
their sum matters) but PyTorch keeps both, and so do we, so parameter counts match.

Each step is split in two halves, and the split is the reason an RNN layer is as fast as it is:
`project_input(x)` = x @ W_ih.T + b_ih does not depend on the previous state, so a layer computes it for
every time step in ONE big matmul; only `step(projected_x, state)`, which needs h_{t-1}, runs in the loop.

Why gates fix vanishing gradients (Q09). In a tanh RNN, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b),
so dh_t/dh_{t-1} = diag(1 - h_t^2) W_hh: backpropagating over k steps multiplies k such matrices, and with
W_hh's spectral radius below 1 (or saturated tanh units) the gradient shrinks like radius^k. An LSTM
instead carries a cell state that is updated ADDITIVELY, c_t = f * c_{t-1} + i * g, so dc_t/dc_{t-1} =
diag(f): no weight matrix, no tanh' squashing. While the forget gate f stays near 1 the gradient crosses
many steps almost unchanged (the "constant error carousel"); a forget-gate bias >= 1 at initialisation
makes that the starting point. The GRU's update h_t = (1 - z) * n + z * h_{t-1} has the same additive
shortcut, with z playing the forget gate.
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter
from ..device import array_module, is_cuda_array
from ..tensor import DEFAULT_FLOAT, Tensor, split


def state_parts(state) -> tuple:
    """A recurrent state as a tuple of its tensors: (h,) or the LSTM's (h, c)."""
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def map_state(fn, state):
    """Apply `fn` to every tensor of a recurrent state, keeping its structure: a single h, or the LSTM's (h, c)."""
    return tuple(fn(part) for part in state) if isinstance(state, tuple) else fn(state)


def as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x if is_cuda_array(x) else np.asarray(x))


def check_state(owner: str, state_names: tuple, state, expected_shape: tuple, layout: str, note: str = ""):
    """The state as tensors in its usual structure (h, or a tuple (h, c)), or an error naming what is wrong:
    the number of tensors, or a shape that is not `expected_shape` (described as `layout`)."""
    parts = state_parts(state)
    if len(parts) != len(state_names) or (len(state_names) == 1 and isinstance(state, (tuple, list))):
        wanted = f"one tensor {state_names[0]}" if len(state_names) == 1 else "a tuple (" + ", ".join(state_names) + ")"
        raise ValueError(
            f"{owner}: the state must be {wanted} of shape {layout}, got {type(state).__name__} of {len(parts)} item(s)"
        )
    parts = [as_tensor(p) for p in parts]
    for label, part in zip(state_names, parts):
        if part.shape != expected_shape:
            raise ValueError(f"{owner}: state {label} has shape {part.shape} but must be {layout} = {expected_shape}{note}")
    return parts[0] if len(parts) == 1 else tuple(parts)


class RecurrentCell(Module):
    """What the three cells share: PyTorch's weight layout and initialisation, input checks, and the
    forward = step(project_input(x), state) split. A subclass sets `num_gates` and `state_names` and
    writes `step`."""

    num_gates: int
    state_names: tuple = ("h",)  # the LSTM carries ("h", "c")

    def __init__(self, input_size: int, hidden_size: int):
        name = type(self).__name__
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive integer, got {value!r}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        # PyTorch's init: every weight and bias uniform in +-1/sqrt(hidden_size).
        bound = 1 / math.sqrt(hidden_size)
        rows = self.num_gates * hidden_size
        shapes = {"weight_ih": (rows, input_size), "weight_hh": (rows, hidden_size), "bias_ih": (rows,), "bias_hh": (rows,)}
        for attr, shape in shapes.items():
            setattr(self, attr, init.uniform_(Parameter(np.empty(shape, dtype=DEFAULT_FLOAT)), -bound, bound))

    # ------------------------------------------------------------ the two halves of a step
    def project_input(self, x: Tensor) -> Tensor:
        """x @ W_ih.T + b_ih for x (..., I): independent of the state, so a layer does all time steps at once."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def project_hidden(self, h: Tensor) -> Tensor:
        """h @ W_hh.T + b_hh: the sequential part, one (B, H) @ (H, G*H) product per time step."""
        return F.linear(h, self.weight_hh, self.bias_hh)

    def step(self, projected_input: Tensor, state):
        """The new state from x's projection (B, G*H) and the previous state."""
        raise NotImplementedError(f"{type(self).__name__} must define step()")

    # ------------------------------------------------------------ one step from raw inputs
    def forward(self, x, state=None):
        """One time step: x (B, input_size) and the previous state (zeros when None) -> the new state."""
        x = as_tensor(x)
        name = type(self).__name__
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{name}: x must have shape (batch, input_size={self.input_size}), got {x.shape}; a cell takes one "
                "time step, use the RNN/LSTM/GRU layer for a whole sequence"
            )
        if state is None:
            state = self.zero_state(x.shape[0], x.dtype)
        else:
            state = check_state(name, self.state_names, state, (x.shape[0], self.hidden_size), "(batch, hidden_size)")
        return self.step(self.project_input(x), state)

    def zero_state(self, batch_size: int, dtype=DEFAULT_FLOAT):
        """The usual initial state: zeros of shape (batch_size, hidden_size) for each of state_names, on the cell's device."""
        xp = array_module(self.parameters()[0].data)
        return self.pack_state([Tensor(xp.zeros((batch_size, self.hidden_size), dtype=dtype)) for _ in self.state_names])

    @classmethod
    def pack_state(cls, parts):
        """A single tensor h, or the tuple (h, c) for a cell with two state tensors."""
        return parts[0] if len(cls.state_names) == 1 else tuple(parts)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(RecurrentCell):
    """Elman RNN: h' = tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh). Simple, and the one whose gradients
    vanish (or explode) over long spans, because each step multiplies the gradient by diag(1 - h'^2) W_hh."""

    num_gates = 1

    def step(self, projected_input, h):
        return (projected_input + self.project_hidden(h)).tanh()


class LSTMCell(RecurrentCell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

        i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)       four blocks of H, in this order
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)                   the additive path gradients travel on
        h' = sigmoid(o) * tanh(c')

    forget_bias is added to the forget gate's bias at initialisation, so sigmoid(f) starts near 1 (0.73
    for 1, 0.95 for 3): the cell remembers by default and the gradient along c survives many steps. It
    defaults to 1 (as Keras does, following Jozefowicz et al. 2015); PyTorch has no such option and
    corresponds to forget_bias=0.
    """

    num_gates = 4
    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size)
        self.forget_bias = float(forget_bias)
        self.bias_ih.data[hidden_size:2 * hidden_size] += self.forget_bias

    def step(self, projected_input, state):
        h, c = state
        i, f, g, o = split(projected_input + self.project_hidden(h), self.hidden_size, axis=-1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, forget_bias={self.forget_bias}"


class GRUCell(RecurrentCell):
    """Gated recurrent unit (Cho et al. 2014), in PyTorch's formulation:

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)          reset gate: how much of h the candidate sees
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)          update gate: how much of h is kept
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))       candidate (r multiplies the whole hidden term)
        h' = (1 - z) * n + z * h                            additive: dh'/dh contains diag(z) directly

    Fewer parameters than an LSTM (3 blocks instead of 4, no separate cell state), often as good.
    """

    num_gates = 3

    def step(self, projected_input, h):
        x_r, x_z, x_n = split(projected_input, self.hidden_size, axis=-1)
        h_r, h_z, h_n = split(self.project_hidden(h), self.hidden_size, axis=-1)
        r = (x_r + h_r).sigmoid()
        z = (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
        return (1 - z) * n + z * h
