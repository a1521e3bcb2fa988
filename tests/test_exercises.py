"""The exercise bank: every reference passes, every starter reports "not implemented yet", and classic wrong
answers are rejected by the property that names their bug. The wrong answers below are real functions, named
after the bug, and double as spot-the-bug material.
"""

import sys

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.backprop import Q01_INPUTS, Q01_TABLE, sigmoid
from tinygrad_llm.exercises.optimizers import global_norm
from test_exercises_kernels import WRONG_ANSWERS as KERNEL_WRONG_ANSWERS  # the chapter-15 exercises, kept in their own file
from test_exercises_attention import WRONG_ANSWERS as ATTENTION_WRONG_ANSWERS  # chapter 6
from test_exercises_inference import WRONG_ANSWERS as INFERENCE_WRONG_ANSWERS  # chapter 9
from test_exercises_compression import WRONG_ANSWERS as COMPRESSION_WRONG_ANSWERS  # chapter 9, compression
from test_exercises_language_models import WRONG_ANSWERS as LANGUAGE_MODEL_WRONG_ANSWERS  # chapter 5
from test_exercises_tokenization import WRONG_ANSWERS as TOKENIZATION_WRONG_ANSWERS  # chapter 4
from test_exercises_seq2seq import WRONG_ANSWERS as SEQ2SEQ_WRONG_ANSWERS  # chapter 7
from test_exercises_evaluation import WRONG_ANSWERS as EVALUATION_WRONG_ANSWERS  # chapter 8
from test_exercises_scaling import WRONG_ANSWERS as SCALING_WRONG_ANSWERS  # chapter 10
from test_exercises_pretraining import WRONG_ANSWERS as PRETRAINING_WRONG_ANSWERS  # chapter 11
from test_exercises_interpretability import WRONG_ANSWERS as INTERPRETABILITY_WRONG_ANSWERS  # chapter 12
from test_exercises_tuning import WRONG_ANSWERS as TUNING_WRONG_ANSWERS  # chapter 13
from test_exercises_responsible import WRONG_ANSWERS as RESPONSIBLE_WRONG_ANSWERS  # chapter 14
from tinygrad_llm.exercises.probabilities import softmax

pytestmark = pytest.mark.exercises

# ---- softmax ---------------------------------------------------------------------------------------------

def softmax_without_max_subtraction(x, axis=-1):
    exps = np.exp(x)
    return exps / exps.sum(axis=axis, keepdims=True)


def softmax_over_wrong_axis(x, axis=-1):
    exps = np.exp(x - x.max(axis=0, keepdims=True))
    return exps / exps.sum(axis=0, keepdims=True)


def softmax_over_whole_array(x, axis=-1):
    exps = np.exp(x - x.max())
    return exps / exps.sum()


def softmax_subtracting_the_global_max(x, axis=-1):
    """Right along `axis`, but one max for the whole array: a slice far below it underflows to 0 / 0."""
    exps = np.exp(x - x.max())
    return exps / exps.sum(axis=axis, keepdims=True)


# ---- softmax_backward ------------------------------------------------------------------------------------

def softmax_backward_diagonal_only(y, g):
    return g * y * (1 - y)


def softmax_backward_sums_over_whole_array(y, g):
    return y * (g - (g * y).sum())


# ---- cross_entropy ---------------------------------------------------------------------------------------

def cross_entropy_summed_not_averaged(logits, targets):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets].sum()


def cross_entropy_log_of_softmax(logits, targets):
    probabilities = softmax(logits, axis=1)
    return -np.log(probabilities[np.arange(len(targets)), targets]).mean()


def cross_entropy_picks_a_column_per_target(logits, targets):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[:, targets].mean()


# ---- cross_entropy_grad ----------------------------------------------------------------------------------

def _one_hot(targets, classes):
    return np.eye(classes)[targets]


def cross_entropy_grad_missing_divide_by_n(logits, targets):
    return softmax(logits) - _one_hot(targets, logits.shape[1])


def cross_entropy_grad_sign_flipped(logits, targets):
    return (_one_hot(targets, logits.shape[1]) - softmax(logits)) / len(targets)


def cross_entropy_grad_without_max_subtraction(logits, targets):
    return (softmax_without_max_subtraction(logits) - _one_hot(targets, logits.shape[1])) / len(targets)


# ---- sigmoid_backward and tanh_backward ------------------------------------------------------------------

def sigmoid_backward_using_input_not_output(y, g):
    s = sigmoid(y)
    return g * s * (1 - s)


def sigmoid_backward_ignores_upstream_grad(y, g):
    return y * (1 - y)


def tanh_backward_not_squared(y, g):
    return g * (1 - y)


def tanh_backward_using_input_not_output(y, g):
    return g * (1 - np.tanh(y) ** 2)


# ---- linear_backward -------------------------------------------------------------------------------------

def linear_backward_wrong_transpose(x, W, g):
    return g @ W, x.T @ g, g.sum(axis=0)


def linear_backward_bias_grad_averaged(x, W, g):
    return g @ W, g.T @ x, g.mean(axis=0)


def linear_backward_dx_through_W_transposed(x, W, g):
    return g @ W.T, g.T @ x, g.sum(axis=0)


# ---- unbroadcast -----------------------------------------------------------------------------------------

def unbroadcast_forgets_size1_dims(grad, shape):
    return grad.sum(axis=tuple(range(grad.ndim - len(shape))))


def unbroadcast_drops_size1_dims(grad, shape):
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    return grad.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1))


def unbroadcast_averages_instead_of_summing(grad, shape):
    grad = grad.mean(axis=tuple(range(grad.ndim - len(shape))))
    return grad.mean(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


# ---- two_layer_network -----------------------------------------------------------------------------------

def _two_layer(x, W1, b1, W2, b2, y, *, dz2_sign=1.0, hidden_derivative=True, dW1_transposed=False,
               dW2_from_x=False):
    """The Q01 network with a switch per classic bug; each wrong answer below flips one."""
    h = sigmoid(W1 @ x + b1)
    p = sigmoid(W2 @ h + b2)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    dz2 = dz2_sign * (p - y)
    dz1 = dz2 * W2 * (h * (1 - h) if hidden_derivative else 1.0)
    return {"loss": loss, "dW1": np.outer(x, dz1) if dW1_transposed else np.outer(dz1, x), "db1": dz1,
            "dW2": dz2 * (x if dW2_from_x else h), "db2": dz2}


def two_layer_dW1_missing_sigmoid_derivative(x, W1, b1, W2, b2, y):
    return _two_layer(x, W1, b1, W2, b2, y, hidden_derivative=False)


def two_layer_dz2_sign_flipped(x, W1, b1, W2, b2, y):
    return _two_layer(x, W1, b1, W2, b2, y, dz2_sign=-1.0)


def two_layer_dW1_transposed(x, W1, b1, W2, b2, y):
    return _two_layer(x, W1, b1, W2, b2, y, dW1_transposed=True)


def two_layer_dW2_uses_x_not_hidden(x, W1, b1, W2, b2, y):
    return _two_layer(x, W1, b1, W2, b2, y, dW2_from_x=True)


# ---- sgd_momentum_step -----------------------------------------------------------------------------------

def momentum_before_weight_decay(w, grad, velocity, lr, momentum, weight_decay):
    new_velocity = momentum * velocity + grad
    return w - lr * (new_velocity + weight_decay * w), new_velocity


def sgd_momentum_with_dampening(w, grad, velocity, lr, momentum, weight_decay):
    new_velocity = momentum * velocity + (1 - momentum) * (grad + weight_decay * w)
    return w - lr * new_velocity, new_velocity


def sgd_momentum_steps_with_old_velocity(w, grad, velocity, lr, momentum, weight_decay):
    new_velocity = momentum * velocity + grad + weight_decay * w
    return w - lr * velocity, new_velocity


# ---- adam_step -------------------------------------------------------------------------------------------

def adam_without_bias_correction(w, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad**2
    return w - lr * new_m / (np.sqrt(new_v) + eps), new_m, new_v


def adam_second_moment_of_momentum(w, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * new_m**2
    return w - lr * (new_m / (1 - beta1**t)) / (np.sqrt(new_v / (1 - beta2**t)) + eps), new_m, new_v


def adam_bias_correction_counts_from_zero(w, grad, m, v, t, lr, beta1, beta2, eps):
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad**2
    m_hat, v_hat = new_m / (1 - beta1 ** (t - 1)), new_v / (1 - beta2 ** (t - 1))
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), new_m, new_v


def adam_without_eps(w, grad, m, v, t, lr, beta1, beta2, eps):
    """Right whenever v > 0, but a weight whose gradient has always been 0 gets 0 / 0 = nan."""
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad**2
    return w - lr * (new_m / (1 - beta1**t)) / np.sqrt(new_v / (1 - beta2**t)), new_m, new_v


# ---- clip_grad_norm --------------------------------------------------------------------------------------

def clip_per_tensor_not_global(grads, max_norm):
    clipped = [g * min(1.0, max_norm / np.linalg.norm(g)) if np.linalg.norm(g) > 0 else g for g in grads]
    return clipped, global_norm(grads)


def clip_returns_norm_after_clipping(grads, max_norm):
    total = global_norm(grads)
    scale = max_norm / total if total > max_norm else 1.0
    return [g * scale for g in grads], total * scale


def clip_always_rescales_to_max_norm(grads, max_norm):
    total = global_norm(grads)
    return [g * max_norm / max(total, 1e-12) for g in grads], total


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("softmax", softmax_without_max_subtraction, "+-1e4"),
    ("softmax", softmax_over_wrong_axis, "probability distribution"),
    ("softmax", softmax_over_whole_array, "probability distribution"),
    ("softmax", softmax_subtracting_the_global_max, "+-1e4"),
    ("softmax_backward", softmax_backward_diagonal_only, "sums to 0"),
    ("softmax_backward", softmax_backward_sums_over_whole_array, "sums to 0"),
    ("cross_entropy", cross_entropy_summed_not_averaged, "mean over the batch"),
    ("cross_entropy", cross_entropy_log_of_softmax, "+-1e4"),
    ("cross_entropy", cross_entropy_picks_a_column_per_target, "matches the reference"),
    ("cross_entropy_grad", cross_entropy_grad_missing_divide_by_n, "halves every row"),
    ("cross_entropy_grad", cross_entropy_grad_sign_flipped, "matches the reference"),
    ("cross_entropy_grad", cross_entropy_grad_without_max_subtraction, "+-1e4"),
    ("sigmoid_backward", sigmoid_backward_using_input_not_output, "central difference"),
    ("sigmoid_backward", sigmoid_backward_ignores_upstream_grad, "central difference"),
    ("tanh_backward", tanh_backward_not_squared, "central difference"),
    ("tanh_backward", tanh_backward_using_input_not_output, "central difference"),
    ("linear_backward", linear_backward_wrong_transpose, "shapes"),
    ("linear_backward", linear_backward_bias_grad_averaged, "matches the reference"),
    ("linear_backward", linear_backward_dx_through_W_transposed, "shapes"),
    ("unbroadcast", unbroadcast_forgets_size1_dims, "exactly `shape`"),
    ("unbroadcast", unbroadcast_drops_size1_dims, "exactly `shape`"),
    ("unbroadcast", unbroadcast_averages_instead_of_summing, "adjoint"),
    ("two_layer_network", two_layer_dW1_missing_sigmoid_derivative, "question Q01"),
    ("two_layer_network", two_layer_dz2_sign_flipped, "question Q01"),
    ("two_layer_network", two_layer_dW1_transposed, "question Q01"),
    ("two_layer_network", two_layer_dW2_uses_x_not_hidden, "question Q01"),
    ("sgd_momentum_step", momentum_before_weight_decay, "matches the reference"),
    ("sgd_momentum_step", sgd_momentum_with_dampening, "matches the reference"),
    ("sgd_momentum_step", sgd_momentum_steps_with_old_velocity, "plain SGD"),
    ("adam_step", adam_without_bias_correction, "first step"),
    ("adam_step", adam_second_moment_of_momentum, "first step"),
    ("adam_step", adam_bias_correction_counts_from_zero, "first step"),
    ("adam_step", adam_without_eps, "eps keeps the step finite"),
    ("clip_grad_norm", clip_per_tensor_not_global, "at most max_norm"),
    ("clip_grad_norm", clip_returns_norm_after_clipping, "before clipping"),
    ("clip_grad_norm", clip_always_rescales_to_max_norm, "same factor"),
]

NAMES = [name for name, _ in ex.list_exercises()]
ALL_WRONG_ANSWERS = (WRONG_ANSWERS + KERNEL_WRONG_ANSWERS + TOKENIZATION_WRONG_ANSWERS + LANGUAGE_MODEL_WRONG_ANSWERS
                     + ATTENTION_WRONG_ANSWERS + INFERENCE_WRONG_ANSWERS + COMPRESSION_WRONG_ANSWERS
                     + SEQ2SEQ_WRONG_ANSWERS + EVALUATION_WRONG_ANSWERS + SCALING_WRONG_ANSWERS
                     + PRETRAINING_WRONG_ANSWERS + INTERPRETABILITY_WRONG_ANSWERS + TUNING_WRONG_ANSWERS
                     + RESPONSIBLE_WRONG_ANSWERS)


def test_the_bank_has_at_least_ten_exercises_each_with_two_wrong_answers():
    assert len(NAMES) >= 10
    for name in NAMES:
        assert sum(exercise == name for exercise, _, _ in ALL_WRONG_ANSWERS) >= 2, name


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_passes_as_printed(name):
    """The solution a learner is shown (with the helpers it calls) runs on its own and passes the grader."""
    exercise = ex.get_exercise(name)
    namespace = {}
    exec(exercise.solution_code, namespace)
    assert namespace[exercise.function_name].__code__.co_code == exercise.reference.__code__.co_code
    result = exercise.grade(namespace[exercise.function_name])
    assert result, str(result)
    assert str(result).startswith("PASS")


@pytest.mark.parametrize("name, wrong, caught_by", ALL_WRONG_ANSWERS, ids=[w.__name__ for _, w, _ in ALL_WRONG_ANSWERS])
def test_classic_wrong_answer_is_rejected(name, wrong, caught_by):
    result = ex.get_exercise(name).grade(wrong)
    assert not result
    message = str(result)
    assert message.startswith("FAIL")
    assert caught_by in result.failure.property_name, message
    assert "Minimal failing input:" in message, message
    assert ("Expected:" in message and "Received:" in message) or " raised " in message, message


@pytest.mark.parametrize("name", NAMES)
def test_starter_code_reports_not_implemented_yet(name):
    exercise = ex.get_exercise(name)
    result = exercise.grade(exercise.starter_function())
    assert not result
    assert "not implemented yet" in str(result)


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_has_statement_starter_hints_and_hidden_solution(name, capsys):
    exercise = ex.get_exercise(name)
    assert exercise.title and exercise.statement
    assert 2 <= len(exercise.hints) <= 3
    assert exercise.signature.startswith(f"def {exercise.function_name}(")
    assert exercise.signature in " ".join(line.strip() for line in exercise.starter_code.splitlines())
    assert exercise.starter_code.rstrip().endswith("raise NotImplementedError")
    assert '"""' in exercise.starter_code

    ex.show(name)
    shown = capsys.readouterr().out
    assert exercise.statement in shown and exercise.starter_code in shown
    solution_body = exercise.solution_code.rstrip().splitlines()[-1]
    assert solution_body not in shown  # the answer is shown only when asked for

    ex.solution(name)
    assert solution_body in capsys.readouterr().out


def test_q01_reference_matches_the_worked_table():
    gradients = ex.get_exercise("two_layer_network").reference(**Q01_INPUTS)
    for key, value in Q01_TABLE.items():
        np.testing.assert_allclose(gradients[key], value, rtol=0, atol=1e-6, err_msg=key)
    stepped = {**Q01_INPUTS, **{p: Q01_INPUTS[p] - 0.1 * gradients["d" + p] for p in ("W1", "b1", "W2", "b2")}}
    np.testing.assert_allclose(stepped["b1"], [0.400437, 0.500169], atol=1e-6)
    np.testing.assert_allclose(stepped["W2"], [0.130782, 0.235005], atol=1e-6)
    np.testing.assert_allclose(stepped["b2"], 0.335870, atol=1e-6)
    np.testing.assert_allclose(ex.get_exercise("two_layer_network").reference(**stepped)["loss"], 0.410690, atol=1e-6)


def test_failure_report_shows_the_minimal_input_and_is_the_same_every_run():
    first = ex.get_exercise("softmax").grade(softmax_without_max_subtraction)
    second = ex.get_exercise("softmax").grade(softmax_without_max_subtraction)
    assert str(first) == str(second)
    assert first.failure.inputs["x"].size == 1  # shrunk to a single logit
    assert abs(first.failure.inputs["x"]).max() >= 700  # ...that is large enough to overflow exp
    assert "nan" in str(first)


def test_learner_exceptions_become_feedback_not_tracebacks():
    def softmax_with_a_typo(x, axis=-1):
        return np.exp(x) / np.exp(x).summ(axis=axis)

    result = ex.get_exercise("softmax").grade(softmax_with_a_typo)
    assert not result
    assert "raised AttributeError" in str(result) and "Traceback" not in str(result)
    assert "summ" in str(result)  # the learner's own line is quoted


def test_a_function_with_hidden_state_is_called_out():
    calls = []

    def softmax_that_drifts(x, axis=-1):
        calls.append(1)
        return softmax(x, axis) * (2.0 if len(calls) % 7 == 0 else 1.0)

    result = ex.get_exercise("softmax").grade(softmax_that_drifts)
    assert not result and "not deterministic" in str(result)


@pytest.mark.parametrize("returned, complaint", [
    (lambda x, axis=-1: None, "should be an array"),
    (lambda x, axis=-1: x.sum(axis=axis), "shape"),
    (lambda x, axis=-1: softmax(x, axis).astype(np.float32), "dtype"),
])
def test_wrong_return_shape_or_dtype_is_named(returned, complaint):
    result = ex.get_exercise("softmax").grade(returned)
    assert not result
    assert complaint in str(result)


def test_missing_tuple_items_are_named():
    result = ex.get_exercise("linear_backward").grade(lambda x, W, g: (g @ W, g.T @ x))
    assert not result
    assert "(dx, dW, db)" in str(result)


def test_an_in_place_update_is_graded_on_its_result():
    def sgd_in_place(w, grad, velocity, lr, momentum, weight_decay):
        velocity *= momentum
        velocity += grad + weight_decay * w
        w -= lr * velocity
        return w, velocity

    assert ex.get_exercise("sgd_momentum_step").grade(sgd_in_place)


def test_pytorch_style_clipping_epsilon_is_accepted():
    def clip_like_pytorch(grads, max_norm):
        total = global_norm(grads)
        return [g * min(1.0, max_norm / (total + 1e-6)) for g in grads], total

    assert ex.get_exercise("clip_grad_norm").grade(clip_like_pytorch)


def test_notebook_api(capsys):
    assert ("softmax", ex.get_exercise("softmax").title) in ex.list_exercises()
    result = ex.check("softmax", softmax)
    assert result and "PASS" in capsys.readouterr().out
    failed = ex.check("softmax", softmax_without_max_subtraction)
    assert not failed and "FAIL" in capsys.readouterr().out
    ex.hint("softmax", level=2)
    assert "Hint 2/3" in capsys.readouterr().out


def test_notebook_api_errors_name_the_fix():
    with pytest.raises(ValueError, match="level=1..3"):
        ex.hint("softmax", level=4)
    with pytest.raises(ex.UnknownExercise, match="Did you mean 'softmax'"):
        ex.show("sofmax")
    with pytest.raises(TypeError, match="pass the function itself"):
        ex.check("softmax", "softmax")
