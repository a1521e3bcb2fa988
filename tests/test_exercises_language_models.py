"""The chapter 5 exercises (next-token targets, perplexity, an RNN step, an LSTM step, backpropagation through time):
every reference passes as printed, every starter reports "not implemented yet", classic wrong answers are rejected
by the property that names their bug, and each reference agrees with the library's own implementation. The wrong
answers are real functions, named after the bug (spot-the-bug material).
"""

import math

import numpy as np
import pytest

import tinygrad_llm as tgl
import tinygrad_llm.exercises as ex
from tinygrad_llm import nn
from tinygrad_llm.data import evaluation_windows
from tinygrad_llm.exercises.language_models import sigmoid
from tinygrad_llm.metrics import perplexity

pytestmark = [pytest.mark.exercises, pytest.mark.lm]

LANGUAGE_MODEL_EXERCISES = ["shift_targets", "perplexity_from_losses", "rnn_forward_step", "lstm_cell_step",
                            "bptt_gradient"]

# ---- shift_targets ---------------------------------------------------------------------------------------

def shift_targets_unshifted(tokens, block_size):
    count = (len(tokens) - 1) // block_size
    inputs = tokens[:count * block_size].reshape(count, block_size)
    return inputs, inputs.copy()


def shift_targets_counts_windows_from_the_full_length(tokens, block_size):
    count = len(tokens) // block_size
    return (tokens[:count * block_size].reshape(count, block_size),
            tokens[1:count * block_size + 1].reshape(count, block_size))


def shift_targets_with_overlapping_windows(tokens, block_size):
    starts = np.arange(len(tokens) - block_size)
    offsets = starts[:, None] + np.arange(block_size)
    return tokens[offsets], tokens[offsets + 1]


# ---- perplexity_from_losses ------------------------------------------------------------------------------

def perplexity_averaged_per_document(token_losses):
    return float(np.exp(np.mean([losses.mean() for losses in token_losses])))


def perplexity_mean_of_document_perplexities(token_losses):
    return float(np.mean([np.exp(losses.mean()) for losses in token_losses]))


def perplexity_in_base_2_from_nats(token_losses):
    return float(2.0 ** np.concatenate(token_losses).mean())


def perplexity_exp_of_the_summed_loss(token_losses):
    return float(np.exp(np.concatenate(token_losses).sum()))


# ---- rnn_forward_step ------------------------------------------------------------------------------------

def rnn_step_without_tanh(x, h, W_ih, W_hh, b):
    return x @ W_ih.T + h @ W_hh.T + b


def rnn_step_tanh_on_the_input_term_only(x, h, W_ih, W_hh, b):
    return np.tanh(x @ W_ih.T) + h @ W_hh.T + b


def rnn_step_recurrent_weights_not_transposed(x, h, W_ih, W_hh, b):
    return np.tanh(x @ W_ih.T + h @ W_hh + b)


# ---- lstm_cell_step --------------------------------------------------------------------------------------

def _lstm(x, h, c, W_ih, W_hh, b, *, order="ifgo", forget=True, output_from_new_cell=True):
    blocks = dict(zip(order, np.split(x @ W_ih.T + h @ W_hh.T + b, 4, axis=-1)))
    kept = sigmoid(blocks["f"]) * c if forget else c
    c_new = kept + sigmoid(blocks["i"]) * np.tanh(blocks["g"])
    return sigmoid(blocks["o"]) * np.tanh(c_new if output_from_new_cell else c), c_new


def lstm_without_a_forget_gate(x, h, c, W_ih, W_hh, b):
    return _lstm(x, h, c, W_ih, W_hh, b, forget=False)


def lstm_output_from_the_old_cell(x, h, c, W_ih, W_hh, b):
    return _lstm(x, h, c, W_ih, W_hh, b, output_from_new_cell=False)


def lstm_output_gate_and_candidate_swapped(x, h, c, W_ih, W_hh, b):
    return _lstm(x, h, c, W_ih, W_hh, b, order="ifog")


def lstm_input_and_forget_gates_swapped(x, h, c, W_ih, W_hh, b):
    return _lstm(x, h, c, W_ih, W_hh, b, order="figo")


# ---- bptt_gradient ---------------------------------------------------------------------------------------

def _bptt(xs, h0, W_ih, W_hh, b, w_out, y, *, through_time=True, tanh_derivative=True, weight_from_new_state=False,
          transpose=True):
    states = [h0]
    for x in xs:
        states.append(np.tanh(W_ih @ x + W_hh @ states[-1] + b))
    dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), np.zeros_like(b)
    dh = (w_out @ states[-1] - y) * w_out
    for t in range(len(xs), 0, -1):
        da = dh * (1 - states[t] ** 2) if tanh_derivative else dh
        dW_ih += np.outer(da, xs[t - 1])
        dW_hh += np.outer(da, states[t] if weight_from_new_state else states[t - 1])
        db += da
        dh = (W_hh.T if transpose else W_hh) @ da
        if not through_time:
            dh = np.zeros_like(dh) if t > 1 else dh
    return dW_ih, dW_hh, db, dh


def bptt_through_the_last_step_only(xs, h0, W_ih, W_hh, b, w_out, y):
    return _bptt(xs, h0, W_ih, W_hh, b, w_out, y, through_time=False)


def bptt_without_the_tanh_derivative(xs, h0, W_ih, W_hh, b, w_out, y):
    return _bptt(xs, h0, W_ih, W_hh, b, w_out, y, tanh_derivative=False)


def bptt_weight_gradient_from_the_new_state(xs, h0, W_ih, W_hh, b, w_out, y):
    return _bptt(xs, h0, W_ih, W_hh, b, w_out, y, weight_from_new_state=True)


def bptt_state_gradient_through_W_hh_not_transposed(xs, h0, W_ih, W_hh, b, w_out, y):
    return _bptt(xs, h0, W_ih, W_hh, b, w_out, y, transpose=False)


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("shift_targets", shift_targets_unshifted, "FOLLOWS its input token"),
    ("shift_targets", shift_targets_counts_windows_from_the_full_length, "N = (len(tokens) - 1) // block_size"),
    ("shift_targets", shift_targets_with_overlapping_windows, "N = (len(tokens) - 1) // block_size"),
    ("perplexity_from_losses", perplexity_averaged_per_document, "splitting a document"),
    ("perplexity_from_losses", perplexity_mean_of_document_perplexities, "splitting a document"),
    ("perplexity_from_losses", perplexity_in_base_2_from_nats, "exactly V"),
    ("perplexity_from_losses", perplexity_exp_of_the_summed_loss, "exactly V"),
    ("rnn_forward_step", rnn_step_without_tanh, "[-1, 1]"),
    ("rnn_forward_step", rnn_step_tanh_on_the_input_term_only, "[-1, 1]"),
    ("rnn_forward_step", rnn_step_recurrent_weights_not_transposed, "matches the reference"),
    ("lstm_cell_step", lstm_without_a_forget_gate, "cell is erased"),
    ("lstm_cell_step", lstm_output_from_the_old_cell, "cell is erased"),
    ("lstm_cell_step", lstm_output_gate_and_candidate_swapped, "f open and i shut"),
    ("lstm_cell_step", lstm_input_and_forget_gates_swapped, "f open and i shut"),
    ("bptt_gradient", bptt_through_the_last_step_only, "finite differences"),
    ("bptt_gradient", bptt_without_the_tanh_derivative, "finite differences"),
    ("bptt_gradient", bptt_weight_gradient_from_the_new_state, "finite differences"),
    ("bptt_gradient", bptt_state_gradient_through_W_hh_not_transposed, "finite differences"),
]


def test_the_language_model_exercises_are_registered_each_with_two_wrong_answers():
    names = [name for name, _ in ex.list_exercises()]
    for name in LANGUAGE_MODEL_EXERCISES:
        assert name in names
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# ---- the references agree with the library ---------------------------------------------------------------

def test_shift_targets_equals_the_librarys_evaluation_windows():
    tokens = np.random.default_rng(0).integers(0, 50, 103)
    shift = ex.get_exercise("shift_targets").reference
    for block_size in (1, 2, 7, 51, 102):
        for mine, library in zip(shift(tokens, block_size), evaluation_windows(tokens, block_size)):
            np.testing.assert_array_equal(mine, library)


def test_perplexity_from_losses_is_exp_of_the_token_mean():
    rng = np.random.default_rng(1)
    documents = [rng.uniform(0, 5, size) for size in (1, 10, 100)]
    expected = perplexity(float(np.concatenate(documents).mean()))
    assert ex.get_exercise("perplexity_from_losses").reference(documents) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cell_class, name", [(nn.RNNCell, "rnn_forward_step"), (nn.LSTMCell, "lstm_cell_step")])
def test_cell_references_equal_the_library_cells(cell_class, name):
    tgl.manual_seed(0)
    cell = cell_class(3, 4).double()
    rng = np.random.default_rng(2)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    weights = (cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data + cell.bias_hh.data)
    step = ex.get_exercise(name).reference
    if cell_class is nn.LSTMCell:
        library = cell(x, (tgl.tensor(h), tgl.tensor(c)))
        for mine, theirs in zip(step(x, h, c, *weights), library):
            np.testing.assert_allclose(mine, theirs.data, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(step(x, h, *weights), cell(x, tgl.tensor(h)).data, rtol=1e-12, atol=1e-12)


def test_bptt_reference_equals_the_library_autograd():
    rng = np.random.default_rng(3)
    steps, inputs, hidden = 6, 3, 4
    arrays = {"xs": rng.standard_normal((steps, inputs)), "h0": rng.standard_normal(hidden),
              "W_ih": rng.standard_normal((hidden, inputs)) * 0.5, "W_hh": rng.standard_normal((hidden, hidden)) * 0.5,
              "b": rng.standard_normal(hidden) * 0.1, "w_out": rng.standard_normal(hidden)}
    y = 0.3
    leaves = {k: tgl.tensor(v, requires_grad=True) for k, v in arrays.items() if k in ("W_ih", "W_hh", "b", "h0")}
    h = leaves["h0"]
    for t in range(steps):
        h = (leaves["W_ih"] @ tgl.tensor(arrays["xs"][t]) + leaves["W_hh"] @ h + leaves["b"]).tanh()
    loss = ((tgl.tensor(arrays["w_out"]) * h).sum() - y) ** 2 * 0.5
    loss.backward()
    mine = ex.get_exercise("bptt_gradient").reference(**arrays, y=y)
    for gradient, key in zip(mine, ("W_ih", "W_hh", "b", "h0")):
        np.testing.assert_allclose(gradient, leaves[key].grad, rtol=1e-10, atol=1e-12, err_msg=key)
    assert math.isfinite(loss.item())
