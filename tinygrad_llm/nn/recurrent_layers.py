"""RNN, LSTM and GRU layers: a stack of recurrent cells run over a whole sequence.

    output, final_state = layer(x, state=None)
    x (B, T, input_size) with batch_first=True, or (T, B, input_size) with batch_first=False
    output (same layout, hidden_size features): the LAST layer's hidden state at every time step
    final_state: h_n (num_layers, B, H) for RNN and GRU, the pair (h_n, c_n) for LSTM; an initial state
    has the same format (zeros when None). The state is (num_layers, B, H) whatever batch_first says.

Check the layout (misconception M22). PyTorch's layers default to batch_first=False; these default to
True, like the rest of this library. Feeding (T, B, I) to a batch-first layer raises no error when the
feature size matches: it silently treats time as the batch, so samples leak into each other and the
model trains on nonsense. The check that catches it: one sample's outputs must not change when another
sample changes (tests/test_recurrent.py).

Where the time goes. Layer l's input projection x @ W_ih.T + b_ih does not depend on the state, so it is
ONE (B*T, I) @ (I, G*H) matmul for all T steps, hoisted out of the time loop; only h @ W_hh.T and the gate
arithmetic are sequential. That loop is what a Transformer removes (Q10).

Truncated backpropagation through time (TBPTT). Backpropagating through a whole book is impossible, so
long text is cut into chunks. Carry the state from chunk to chunk so the model still sees the past, but
cut the graph with `detach_state` so backward stops at the chunk boundary:

    state = None
    for chunk in chunks:
        output, state = lstm(chunk, state)
        loss(output).backward(); optimizer.step()
        state = detach_state(state)      # the values flow on, the gradient does not

Without the detach, every backward would run through all previous chunks again (and their graphs
could never be freed).
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .module import Module
from .rnn_cells import GRUCell, LSTMCell, RNNCell, as_tensor, check_state, map_state, state_parts
from ..device import array_module
from ..tensor import DEFAULT_FLOAT, Tensor, stack


def detach_state(state):
    """The same state values, cut from the autograd graph: for carrying state across TBPTT chunks."""
    return map_state(Tensor.detach, state)


class RecurrentLayer(Module):
    """The shared implementation of RNN, LSTM and GRU; a subclass only names its `cell_class`."""

    cell_class: type

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0, **cell_options):
        name = type(self).__name__
        if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be a positive integer, got {num_layers!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, int(num_layers)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        # Layer 0 reads the input; each later layer reads the hidden states of the one below.
        self.cells = [
            self.cell_class(input_size if layer == 0 else hidden_size, hidden_size, **cell_options)
            for layer in range(self.num_layers)
        ]

    def forward(self, x, state=None):
        x = self._check_input(as_tensor(x))
        sequence = x if self.batch_first else x.transpose(0, 1)  # (B, T, features) from here on
        batch, steps = sequence.shape[:2]
        state = self.initial_state(batch, x.dtype) if state is None else self._check_state(state, batch)
        final_states = []
        for layer, (cell, layer_state) in enumerate(zip(self.cells, self._split_by_layer(state))):
            if layer > 0:  # dropout between layers only (none on the output), as in PyTorch
                sequence = F.dropout(sequence, self.dropout, self.training)
            projected = cell.project_input(sequence)  # (B, T, G*H): every time step in one matmul
            hidden_states = []
            for t in range(steps):  # the only sequential part: step t needs the state of step t - 1
                layer_state = cell.step(projected[:, t], layer_state)
                hidden_states.append(state_parts(layer_state)[0])
            sequence = stack(hidden_states, axis=1)
            final_states.append(layer_state)
        output = sequence if self.batch_first else sequence.transpose(0, 1)
        return output, self._stack_layers(final_states)

    def initial_state(self, batch_size: int, dtype=DEFAULT_FLOAT):
        """Zeros in the layer's state format: (num_layers, batch_size, hidden_size), one per state tensor, on the
        layer's device."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        xp = array_module(self.parameters()[0].data)
        return self.cell_class.pack_state([Tensor(xp.zeros(shape, dtype=dtype)) for _ in self.cell_class.state_names])

    # ------------------------------------------------------------ between the layer's format and the cells'
    def _split_by_layer(self, state) -> list:
        """(num_layers, B, H) tensors -> one cell state (B, H) per layer."""
        parts = state_parts(state)
        return [self.cell_class.pack_state([part[layer] for part in parts]) for layer in range(self.num_layers)]

    def _stack_layers(self, layer_states: list):
        """One cell state per layer -> (num_layers, B, H) tensors."""
        columns = zip(*(state_parts(s) for s in layer_states))
        return self.cell_class.pack_state([stack(list(column), axis=0) for column in columns])

    # ------------------------------------------------------------ input checks (M22: say which layout is expected)
    def _layout(self) -> str:
        order = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        return f"{order} because batch_first={self.batch_first}"

    def _check_input(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim != 3:
            hint = "x[None]" if self.batch_first else "x[:, None]"
            raise ValueError(
                f"{name}: input must be 3-D {self._layout()}, got shape {x.shape}; for a single sequence "
                f"add a batch axis ({hint})"
            )
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"{name}: input has {x.shape[2]} features in its last axis (shape {x.shape}, read as "
                f"{self._layout()}) but the layer was built with input_size={self.input_size}"
            )
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"{name}: input of shape {x.shape} has no time steps; a recurrent layer needs at least one")
        return x

    def _check_state(self, state, batch_size: int):
        return check_state(
            type(self).__name__, self.cell_class.state_names, state, (self.num_layers, batch_size, self.hidden_size),
            "(num_layers, batch, hidden_size)",
            f", with batch {batch_size} read from the input as {self._layout()}; the state keeps this layout "
            "whatever batch_first is",
        )

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}")


class RNN(RecurrentLayer):
    """A stack of tanh RNN cells (see RNNCell): cheap, and forgets beyond a few dozen steps."""

    cell_class = RNNCell


class LSTM(RecurrentLayer):
    """A stack of LSTM cells (see LSTMCell); the state is the pair (h, c), each (num_layers, B, H)."""

    cell_class = LSTMCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0, forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size, num_layers, batch_first, dropout, forget_bias=forget_bias)


class GRU(RecurrentLayer):
    """A stack of GRU cells (see GRUCell)."""

    cell_class = GRUCell
