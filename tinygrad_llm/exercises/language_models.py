"""Exercises on language models (chapter 5): next-token targets, perplexity, one step of a tanh RNN and of
an LSTM cell, and backpropagation through time by hand.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference, metamorphic
from .strategies import finite_floats, float_arrays


def shift_targets(tokens: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a 1-D int64 token stream into consecutive, non-overlapping next-token training windows.

    Window i reads tokens[i*block_size : (i+1)*block_size]; its targets are the same positions shifted one
    token ahead. Returns (inputs, targets), both (N, block_size) with N = (len(tokens) - 1) // block_size.
    """
    count = (len(tokens) - 1) // block_size
    inputs = tokens[:count * block_size].reshape(count, block_size)
    targets = tokens[1:count * block_size + 1].reshape(count, block_size)
    return inputs, targets


def perplexity_from_losses(token_losses: list[np.ndarray]) -> float:
    """Corpus perplexity from per-token losses: token_losses[d][t] = -ln p(token t of document d | its past).

    Documents have different lengths. Returns exp(mean negative log-likelihood over ALL tokens) as a float.
    """
    return float(np.exp(np.concatenate(token_losses).mean()))


def rnn_forward_step(x: np.ndarray, h: np.ndarray, W_ih: np.ndarray, W_hh: np.ndarray,
                     b: np.ndarray) -> np.ndarray:
    """One step of an Elman (tanh) RNN for a batch, PyTorch's weight layout.

    x (B, I) inputs, h (B, H) previous state, W_ih (H, I), W_hh (H, H), b (H,). Returns the new state (B, H).
    """
    return np.tanh(x @ W_ih.T + h @ W_hh.T + b)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), written so that it never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def lstm_cell_step(x: np.ndarray, h: np.ndarray, c: np.ndarray, W_ih: np.ndarray, W_hh: np.ndarray,
                   b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step for a batch, PyTorch's layout: the 4 gates' rows stacked in the order (i, f, g, o).

    x (B, I), h and c (B, H), W_ih (4H, I), W_hh (4H, H), b (4H,). Returns (h_new, c_new), each (B, H).
    """
    i, f, g, o = np.split(x @ W_ih.T + h @ W_hh.T + b, 4, axis=-1)
    c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c_new), c_new


def bptt_gradient(xs: np.ndarray, h0: np.ndarray, W_ih: np.ndarray, W_hh: np.ndarray, b: np.ndarray,
                  w_out: np.ndarray, y: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for one sequence through a tanh RNN and a scalar read-out.

    h_t = tanh(W_ih @ xs[t - 1] + W_hh @ h_{t-1} + b) for t = 1..T (h_0 = h0), then L = 0.5 * (w_out @ h_T - y)**2.
    xs (T, I), h0 (H,), W_ih (H, I), W_hh (H, H), b (H,), w_out (H,). Returns (dW_ih, dW_hh, db, dh0).
    """
    states = [h0]
    for x in xs:
        states.append(np.tanh(W_ih @ x + W_hh @ states[-1] + b))
    dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), np.zeros_like(b)
    dh = (w_out @ states[-1] - y) * w_out
    for t in range(len(xs), 0, -1):
        da = dh * (1 - states[t] ** 2)  # through tanh: its derivative from its output
        dW_ih += np.outer(da, xs[t - 1])
        dW_hh += np.outer(da, states[t - 1])  # the state that went IN to step t
        db += da
        dh = W_hh.T @ da  # to the previous step
    return dW_ih, dW_hh, db, dh


# ---- shift_targets ---------------------------------------------------------------------------------------

@st.composite
def token_streams(draw, distinct: bool = False) -> dict:
    """An int64 stream of 2..30 tokens and a block size that leaves at least one window. With `distinct` the
    stream is a permutation (every token occurs once), so each token has exactly one successor."""
    length = draw(st.integers(2, 30))
    if distinct:
        tokens = np.asarray(draw(st.permutations(range(length))), dtype=np.int64)
    else:
        tokens = draw(hnp.arrays(np.int64, length, elements=st.integers(0, 9)))
    return {"tokens": tokens, "block_size": draw(st.integers(1, length - 1))}


FOLLOWS = "every target is the token that FOLLOWS its input token in the text (targets = inputs shifted by one)"


def _targets_follow_inputs(learner, drawn: dict) -> None:
    inputs, targets = call_learner(learner, drawn, FOLLOWS)
    expect_close(FOLLOWS, drawn, shift_targets(**drawn), (inputs, targets), None, None, ("inputs", "targets"))
    successor = dict(zip(drawn["tokens"][:-1].tolist(), drawn["tokens"][1:].tolist()))
    wanted = np.vectorize(lambda token: successor.get(int(token), -1))(inputs) if inputs.size else inputs
    if not np.array_equal(targets, wanted):
        raise PropertyFailed(FOLLOWS, drawn, wanted, targets,
                             "position t of a window must be trained to predict the NEXT token of the text")


# ---- perplexity_from_losses ------------------------------------------------------------------------------

@st.composite
def document_losses(draw) -> dict:
    """1 to 4 documents of 1 to 6 per-token losses each (nats, in [0, 8])."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    return {"token_losses": [draw(float_arrays((size,), 0.0, 8.0)) for size in sizes]}


@st.composite
def uniform_model_losses(draw) -> dict:
    """Every token scored by a model that spreads its mass evenly over V tokens: each loss is ln V."""
    vocab_size = draw(st.integers(1, 50_000))
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    return {"token_losses": [np.full(size, math.log(vocab_size)) for size in sizes], "_vocab_size": vocab_size}


UNIFORM = "a model that is uniform over V tokens (every loss ln V) has perplexity exactly V"


def _uniform_gives_vocab_size(learner, drawn: dict) -> None:
    inputs = {"token_losses": drawn["token_losses"]}
    received = call_learner(learner, inputs, UNIFORM)
    expect_close(UNIFORM, inputs, float(drawn["_vocab_size"]), received, rtol=1e-9, atol=0.0)


def _first_document_split_in_two(drawn: dict) -> tuple[dict, dict]:
    documents = drawn["token_losses"]
    first = documents[0]
    if len(first) < 2:
        return drawn, drawn
    cut = len(first) // 2
    return drawn, {"token_losses": [first[:cut], first[cut:], *documents[1:]]}


# ---- rnn_forward_step ------------------------------------------------------------------------------------

@st.composite
def rnn_step_inputs(draw, low: float = -2.0, high: float = 2.0) -> dict:
    batch, inputs, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return {"x": draw(float_arrays((batch, inputs), low, high)), "h": draw(float_arrays((batch, hidden), -1.0, 1.0)),
            "W_ih": draw(float_arrays((hidden, inputs), low, high)),
            "W_hh": draw(float_arrays((hidden, hidden), low, high)), "b": draw(float_arrays((hidden,), low, high))}


BOUNDED = "the new state lies in [-1, 1] whatever the inputs (tanh of the WHOLE pre-activation)"


def _state_bounded(learner, drawn: dict) -> None:
    new_h = call_learner(learner, drawn, BOUNDED)
    expect_close(BOUNDED, drawn, rnn_forward_step(**drawn), new_h, None, None)
    if np.abs(new_h).max() > 1.0:
        raise PropertyFailed(BOUNDED, drawn, "every entry in [-1, 1]", new_h,
                             "tanh squashes the sum x W_ih^T + h W_hh^T + b; an entry outside [-1, 1] means part of "
                             "the sum skipped it")


def _batch_reversed(drawn: dict) -> tuple[dict, dict]:
    return drawn, {**drawn, "x": drawn["x"][::-1].copy(), "h": drawn["h"][::-1].copy()}


# ---- lstm_cell_step --------------------------------------------------------------------------------------

@st.composite
def lstm_inputs(draw, gates: str | None = None) -> dict:
    """Shapes from 1 to 3. gates="keep" saturates the forget gate open and the input gate shut (weights 0,
    biases +-40); gates="erase" shuts both."""
    batch, inputs, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    drawn = {"x": draw(float_arrays((batch, inputs), -2.0, 2.0)), "h": draw(float_arrays((batch, hidden), -1.0, 1.0)),
             "c": draw(float_arrays((batch, hidden), -3.0, 3.0)),
             "W_ih": draw(float_arrays((4 * hidden, inputs), -1.0, 1.0)),
             "W_hh": draw(float_arrays((4 * hidden, hidden), -1.0, 1.0)),
             "b": draw(float_arrays((4 * hidden,), -1.0, 1.0))}
    if gates is not None:
        for weights in (drawn["W_ih"], drawn["W_hh"]):
            weights[:2 * hidden] = 0.0  # the i and f rows: the gates depend on their biases only
        drawn["b"][:hidden] = -40.0  # i shut
        drawn["b"][hidden:2 * hidden] = 40.0 if gates == "keep" else -40.0
    return drawn


def _cell_kept(x, h, c, W_ih, W_hh, b) -> tuple[np.ndarray, np.ndarray]:
    """What the cell must return when the forget gate is open and the input gate shut."""
    output_rows = slice(3 * h.shape[1], None)  # the o block
    o = sigmoid(x @ W_ih[output_rows].T + h @ W_hh[output_rows].T + b[output_rows])
    return o * np.tanh(c), c


def _cell_erased(x, h, c, W_ih, W_hh, b) -> tuple[np.ndarray, np.ndarray]:
    """What the cell must return when the forget and input gates are both shut: nothing is left."""
    return np.zeros_like(h), np.zeros_like(c)


FORGET_KEEPS = "the forget gate scales the old cell: with f open and i shut, c_new = c and h_new = o * tanh(c)"
FORGET_ERASES = "with the forget gate and the input gate both shut, the cell is erased: c_new = 0"


# ---- bptt_gradient ---------------------------------------------------------------------------------------

@st.composite
def bptt_inputs(draw) -> dict:
    """T = 1..4 steps, I and H from 1 to 3, weights small enough that tanh is not saturated."""
    steps, inputs, hidden = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return {"xs": draw(float_arrays((steps, inputs), -1.0, 1.0)), "h0": draw(float_arrays((hidden,), -1.0, 1.0)),
            "W_ih": draw(float_arrays((hidden, inputs), -1.0, 1.0)),
            "W_hh": draw(float_arrays((hidden, hidden), -1.0, 1.0)),
            "b": draw(float_arrays((hidden,), -0.5, 0.5)), "w_out": draw(float_arrays((hidden,), -1.0, 1.0)),
            "y": draw(finite_floats(-1.0, 1.0))}


def rnn_loss(xs, h0, W_ih, W_hh, b, w_out, y) -> float:
    """The forward pass of bptt_gradient: 0.5 * (w_out @ h_T - y)**2."""
    h = h0
    for x in xs:
        h = np.tanh(W_ih @ x + W_hh @ h + b)
    return 0.5 * float(w_out @ h - y) ** 2


BPTT_NAMES = ("dW_ih", "dW_hh", "db", "dh0")
BPTT_FINITE_DIFFERENCES = "matches central finite differences of the loss in every entry of W_ih, W_hh, b and h0"


def _bptt_numeric(drawn: dict, step: float = 1e-6) -> tuple:
    gradients = []
    for name in ("W_ih", "W_hh", "b", "h0"):
        array = drawn[name]
        gradient = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            losses = []
            for sign in (1.0, -1.0):
                moved = {**drawn, name: array.copy()}
                moved[name][index] += sign * step
                losses.append(rnn_loss(**moved))
            gradient[index] = (losses[0] - losses[1]) / (2 * step)
        gradients.append(gradient)
    return tuple(gradients)


def _bptt_matches_finite_differences(learner, drawn: dict) -> None:
    gradients = call_learner(learner, drawn, BPTT_FINITE_DIFFERENCES)
    expect_close(BPTT_FINITE_DIFFERENCES, drawn, bptt_gradient(**drawn), gradients, None, None, BPTT_NAMES)
    expect_close(BPTT_FINITE_DIFFERENCES, drawn, _bptt_numeric(drawn), gradients, 1e-5, 1e-8, BPTT_NAMES)


SHIFT_TARGETS = Exercise(
    name="shift_targets",
    title="Next-token training pairs: the targets are the inputs shifted by one",
    statement=(
        "A language model at position t predicts token t + 1. Implement shift_targets(tokens, block_size): cut\n"
        "the 1-D int64 stream `tokens` into N = (len(tokens) - 1) // block_size consecutive, non-overlapping\n"
        "windows of block_size inputs, and pair each with the block_size tokens that follow its positions.\n"
        "Return (inputs, targets), both int64 (N, block_size). Every token but the first is a target exactly\n"
        "once; the tail that cannot fill a window is dropped. Exact equality is required."
    ),
    reference=shift_targets,
    hints=(
        "Window i starts at i * block_size. Its targets are the same slice moved one token to the right.",
        "The last target of window N - 1 is tokens[N * block_size], so you need N * block_size + 1 tokens: "
        "that is why N = (len(tokens) - 1) // block_size, not len(tokens) // block_size.",
        "There are N windows, N being len(tokens) - 1 divided by block_size, rounded down. The inputs are the first "
        "N * block_size tokens reshaped to (N, block_size); the targets are the same number of tokens starting one "
        "position later, reshaped the same way.",
    ),
    checks=(
        has_reference_shapes(shift_targets, token_streams(),
                             "returns (inputs, targets), each (N, block_size) with N = (len(tokens) - 1) // block_size",
                             names=("inputs", "targets")),
        Check(FOLLOWS, token_streams(distinct=True), _targets_follow_inputs),
        matches_reference(shift_targets, token_streams(), rtol=0.0, atol=0.0, names=("inputs", "targets"),
                          name="windows are consecutive and do not overlap: inputs.ravel() = tokens[:N * block_size]"),
    ),
)

PERPLEXITY_FROM_LOSSES = Exercise(
    name="perplexity_from_losses",
    title="Corpus perplexity from per-token losses",
    statement=(
        "Perplexity is exp of the mean negative log-likelihood per token. token_losses is a list of float64\n"
        "arrays, one per document (lengths differ); token_losses[d][t] = -ln p(token t of document d | its\n"
        "past), in nats. Return the corpus perplexity as a float: every TOKEN counts once, whatever document it\n"
        "is in. Tolerance: rtol=1e-9."
    ),
    reference=perplexity_from_losses,
    hints=(
        "A model that gives every token probability 1/V has loss ln V per token; its perplexity should be V.",
        "Average over tokens, not over documents: a 1-token document must not weigh as much as a 1000-token "
        "one. Exponentiate the mean loss (natural log, so exp, not 2 **); never exp the SUM.",
        "Join the documents' per-token losses into one array (np.concatenate), take its mean, exponentiate it with "
        "np.exp and return a float.",
    ),
    checks=(
        Check(UNIFORM, uniform_model_losses(), _uniform_gives_vocab_size),
        metamorphic("splitting a document in two leaves the corpus perplexity unchanged (every token weighs the same)",
                    document_losses(), perplexity_from_losses, _first_document_split_in_two, lambda ppl: ppl,
                    rtol=1e-9, atol=0.0),
        matches_reference(perplexity_from_losses, document_losses(), rtol=1e-9, atol=0.0),
    ),
)

RNN_FORWARD_STEP = Exercise(
    name="rnn_forward_step",
    title="One step of a tanh RNN",
    statement=(
        "Implement one time step of an Elman RNN for a batch, h_new = tanh(x W_ih^T + h W_hh^T + b), with\n"
        "PyTorch's layout: x (B, I), h (B, H), W_ih (H, I), W_hh (H, H), b (H,), all float64. Return h_new\n"
        "(B, H). Each sample's new state must depend only on its own x and h. Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=rnn_forward_step,
    hints=(
        "Two matrix products, one bias, one tanh. Check the shapes: x @ W_ih.T is (B, H).",
        "Weights are stored (out, in), so a batch of row vectors multiplies their transposes. The tanh wraps the "
        "whole sum: the input term, the recurrent term and the bias.",
        "Sum the input term (x times the transpose of W_ih), the recurrent term (h times the transpose of W_hh) and "
        "b, then apply np.tanh to that sum.",
    ),
    checks=(
        has_reference_shapes(rnn_forward_step, rnn_step_inputs(), "returns the new state of shape (B, H)"),
        Check(BOUNDED, rnn_step_inputs(-10.0, 10.0), _state_bounded),
        metamorphic("each sample is independent: reversing the batch reverses the new states", rnn_step_inputs(),
                    rnn_forward_step, _batch_reversed, lambda new_h: new_h[::-1], rtol=1e-12, atol=1e-12),
        matches_reference(rnn_forward_step, rnn_step_inputs(), rtol=1e-9, atol=1e-12),
    ),
)

LSTM_CELL_STEP = Exercise(
    name="lstm_cell_step",
    title="One step of an LSTM cell",
    statement=(
        "Implement one LSTM step for a batch in PyTorch's layout. z = x W_ih^T + h W_hh^T + b is (B, 4H); its\n"
        "four blocks of H columns are, in order, the input gate i, forget gate f, candidate g and output gate\n"
        "o. Then c_new = sigmoid(f) * c + sigmoid(i) * tanh(g) and h_new = sigmoid(o) * tanh(c_new).\n"
        "x (B, I), h and c (B, H), W_ih (4H, I), W_hh (4H, H), b (4H,), all float64. Return (h_new, c_new).\n"
        "Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=lstm_cell_step,
    helpers=(sigmoid,),
    hints=(
        "Compute all four gates in one product, then split the columns into four blocks of H in the order "
        "(i, f, g, o).",
        "The cell is updated additively: the forget gate scales the OLD cell, the input gate scales the "
        "candidate tanh(g). The output uses the NEW cell.",
        "Split the single pre-activation (both products plus b) into four blocks along the last axis with np.split. "
        "New cell: sigmoid(f) times the old c plus sigmoid(i) times tanh(g). New hidden state: sigmoid(o) times tanh "
        "of the NEW cell. Return both.",
    ),
    checks=(
        has_reference_shapes(lstm_cell_step, lstm_inputs(), "returns (h_new, c_new), each of shape (B, H)",
                             names=("h_new", "c_new")),
        matches_reference(_cell_kept, lstm_inputs(gates="keep"), rtol=1e-9, atol=1e-12, names=("h_new", "c_new"),
                          name=FORGET_KEEPS),
        matches_reference(_cell_erased, lstm_inputs(gates="erase"), rtol=1e-9, atol=1e-12, names=("h_new", "c_new"),
                          name=FORGET_ERASES),
        matches_reference(lstm_cell_step, lstm_inputs(), rtol=1e-9, atol=1e-12, names=("h_new", "c_new")),
    ),
)

BPTT_GRADIENT = Exercise(
    name="bptt_gradient",
    title="Backpropagation through time for a tiny RNN",
    statement=(
        "One sequence xs (T, I) runs through a tanh RNN from h0: h_t = tanh(W_ih @ xs[t-1] + W_hh @ h_{t-1} + b)\n"
        "for t = 1..T, and the loss reads the last state: L = 0.5 * (w_out @ h_T - y)**2. Shapes: h0 (H,),\n"
        "W_ih (H, I), W_hh (H, H), b (H,), w_out (H,), y a float; all float64. Return the gradients\n"
        "(dW_ih, dW_hh, db, dh0) with the shapes of W_ih, W_hh, b and h0. Every step uses the SAME weights, so\n"
        "their gradients sum over the steps. Tolerance: rtol=1e-5 against central finite differences."
    ),
    reference=bptt_gradient,
    hints=(
        "Run the forward pass and keep every state h_0..h_T. dL/dh_T = (w_out @ h_T - y) * w_out. Then walk "
        "the steps backwards.",
        "At step t: da is dh times tanh's derivative 1 - h_t squared (from its output); add the outer product of da "
        "with xs[t-1] to dW_ih and with h_{t-1} to dW_hh (the state that went IN), da to db; then the transpose of "
        "W_hh times da is the gradient of the previous state. After the last (first) step, that is dh0.",
        "Loop t from T down to 1, carrying dh. Each step: the tanh derivative at states[t] turns dh into da; "
        "accumulate three gradients from da (outer products with the input and with the previous state, and da "
        "itself); then pass da back through W_hh's transpose to get the next dh.",
    ),
    checks=(
        has_reference_shapes(bptt_gradient, bptt_inputs(), "returns (dW_ih, dW_hh, db, dh0) with the shapes of "
                             "W_ih, W_hh, b and h0", names=BPTT_NAMES),
        Check(BPTT_FINITE_DIFFERENCES, bptt_inputs(), _bptt_matches_finite_differences),
        matches_reference(bptt_gradient, bptt_inputs(), rtol=1e-7, atol=1e-10, names=BPTT_NAMES),
    ),
)

EXERCISES = (SHIFT_TARGETS, PERPLEXITY_FROM_LOSSES, RNN_FORWARD_STEP, LSTM_CELL_STEP, BPTT_GRADIENT)
