"""Learning checks for knowledge distillation: the KD loss is >= 0 and exactly 0 (soft part) when the student's
logits equal the teacher's; alpha mixes a soft and a hard term and alpha = 0 is plain cross-entropy; its
gradient is the closed form alpha * T * (softmax(z_s/T) - softmax(z_t/T)) / N + (1 - alpha) * (softmax(z_s) -
onehot) / N, matches central differences, reaches the student only, and keeps its size as T grows (the T^2
factor); soft targets are distributions whose entropy grows with T towards the uniform one.
tests/broken_compression.py keeps a loss without T^2 that these checks must catch."""
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.compression.distillation import distillation_loss, soft_targets
from tinygrad_llm.experiments.distillation import agreement, student_config, teacher_config
from tinygrad_llm.nn import GPT
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

import broken_compression as broken

pytestmark = pytest.mark.compression

UNSHRUNK = settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))  # a broken variant fails at once

temperatures = st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0])
alphas = st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0])


@st.composite
def logits_pairs(draw, scale: float = 4.0):
    """(student logits, teacher logits, targets) in float64, (N, V) or (B, T, V)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = draw(st.sampled_from([(3, 5), (1, 2), (6, 11), (2, 3, 7)]))
    student, teacher = (scale * rng.standard_normal(shape) for _ in range(2))
    return student, teacher, rng.integers(0, shape[-1], shape[:-1])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def student_gradient(loss_fn, student, teacher, targets, temperature, alpha) -> np.ndarray:
    logits = tgl.tensor(student, dtype=np.float64, requires_grad=True)
    loss_fn(logits, teacher, targets, temperature, alpha).backward()
    return logits.grad


# ------------------------------------------------------------------ the gradient
def check_kd_gradient_is_the_closed_form(loss_fn):
    @given(logits_pairs(), temperatures, alphas)
    @UNSHRUNK
    def closed_form(pair, temperature, alpha):
        student, teacher, targets = pair
        tokens = targets.size
        onehot = np.eye(student.shape[-1])[targets]
        expected = (alpha * temperature * (softmax(student / temperature) - softmax(teacher / temperature))
                    + (1 - alpha) * (softmax(student) - onehot)) / tokens
        np.testing.assert_allclose(student_gradient(loss_fn, student, teacher, targets, temperature, alpha), expected,
                                   atol=1e-12, err_msg=f"T={temperature}, alpha={alpha}")

    closed_form()


def check_soft_gradient_keeps_its_size_as_t_grows(loss_fn):
    """With T^2 the soft term's gradient tends to (centred z_s - centred z_t) / (V N) as T grows: at T = 10 and
    T = 20 its norms agree within 25%. Without T^2 it would fall 4x."""
    @given(logits_pairs(scale=2.0))
    @UNSHRUNK
    def same_size(pair):
        student, teacher, _ = pair
        norms = [np.linalg.norm(student_gradient(loss_fn, student, teacher, None, t, 1.0)) for t in (10.0, 20.0)]
        assert 0.8 <= norms[1] / norms[0] <= 1.25, f"gradient norm {norms[0]:.3g} at T=10 but {norms[1]:.3g} at T=20"

    same_size()


def test_the_kd_gradient_is_the_closed_form():
    check_kd_gradient_is_the_closed_form(distillation_loss)


def test_the_soft_gradient_keeps_its_size_as_the_temperature_grows():
    check_soft_gradient_keeps_its_size_as_t_grows(distillation_loss)


@pytest.mark.broken
@pytest.mark.parametrize("check", [check_kd_gradient_is_the_closed_form, check_soft_gradient_keeps_its_size_as_t_grows])
def test_the_gradient_checks_catch_kd_without_t_squared(check):
    with pytest.raises(AssertionError):
        check(broken.distillation_loss_without_t_squared)


@given(logits_pairs(scale=2.0), temperatures, alphas)
@settings(max_examples=10)
def test_the_kd_gradient_matches_central_differences(pair, temperature, alpha):
    student, teacher, targets = pair
    logits = tgl.tensor(student, dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda s: distillation_loss(s, teacher, targets, temperature, alpha), logits)


@given(logits_pairs(), temperatures)
def test_the_teacher_is_a_constant(pair, temperature):
    student, teacher, targets = pair
    student_logits = tgl.tensor(student, requires_grad=True)
    teacher_logits = tgl.tensor(teacher, requires_grad=True)
    distillation_loss(student_logits, teacher_logits, targets, temperature, 0.5).backward()
    assert teacher_logits.grad is None and np.isfinite(student_logits.grad).all()


# ------------------------------------------------------------------ the value
@given(logits_pairs(), temperatures, st.sampled_from([np.float32, np.float64]))
def test_the_soft_loss_is_nonnegative_and_zero_when_the_logits_match(pair, temperature, dtype):
    student, teacher, _ = pair
    soft = distillation_loss(tgl.tensor(student, dtype=dtype), teacher, None, temperature, alpha=1.0).item()
    assert soft >= -1e-6
    assert distillation_loss(tgl.tensor(teacher, dtype=dtype), teacher, None, temperature, alpha=1.0).item() == 0.0


@given(logits_pairs(), temperatures, alphas)
def test_alpha_mixes_a_soft_and_a_hard_term(pair, temperature, alpha):
    """alpha = 0 is plain cross-entropy with the labels; any alpha is the straight mix of alpha = 1 and 0."""
    student, teacher, targets = pair
    loss = lambda a: distillation_loss(tgl.tensor(student), teacher, targets, temperature, a).item()
    assert loss(0.0) == F.cross_entropy(tgl.tensor(student), targets).item()
    np.testing.assert_allclose(loss(alpha), alpha * loss(1.0) + (1 - alpha) * loss(0.0), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the soft targets
@given(logits_pairs())
def test_soft_targets_get_more_uniform_as_the_temperature_grows(pair):
    """Rows sum to 1, the entropy never falls as T rises, and at a huge T every probability is 1/V."""
    logits = pair[0]
    temperatures_up = [0.25, 0.5, 1, 2, 4, 8, 16, 64]
    entropies = []
    for temperature in temperatures_up:
        p = soft_targets(logits, temperature)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
        entropies.append(-(p * np.log(np.maximum(p, 1e-300))).sum(-1))
    assert np.all(np.diff(np.stack(entropies), axis=0) >= -1e-12), "entropy fell as the temperature rose"
    np.testing.assert_allclose(soft_targets(logits, 1e6), 1 / logits.shape[-1], rtol=1e-4)


def test_bad_distillation_arguments_get_errors_that_name_the_fix():
    student, teacher = tgl.tensor(np.zeros((2, 3))), np.zeros((2, 3))
    with pytest.raises(ValueError, match="distillation_loss: temperature must be a number > 0"):
        distillation_loss(student, teacher, np.array([0, 1]), temperature=0)
    with pytest.raises(ValueError, match=r"distillation_loss: alpha .* must be in \[0, 1\]"):
        distillation_loss(student, teacher, np.array([0, 1]), alpha=1.5)
    with pytest.raises(ValueError, match="must have the same shape"):
        distillation_loss(student, np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="targets are needed"):
        distillation_loss(student, teacher, None, alpha=0.5)
    with pytest.raises(ValueError, match="soft_targets: temperature"):
        soft_targets(teacher, -1.0)


# ------------------------------------------------------------------ the experiment's pieces
def test_a_model_agrees_with_itself_everywhere_and_the_student_is_narrower():
    tgl.manual_seed(0)
    model = GPT(11, context_size=8, embed_dim=8, num_heads=2, num_layers=1).eval()
    ids = np.random.default_rng(0).integers(0, 11, 50)
    assert agreement(model, model, ids, 8) == 1.0
    for fast in (True, False):
        teacher = teacher_config(fast)
        student = student_config(teacher, fast)
        assert student.embed_dim < teacher.embed_dim and student.num_layers <= teacher.num_layers
        assert (student.steps, student.max_chars, student.seed, student.batch_size) == \
            (teacher.steps, teacher.max_chars, teacher.seed, teacher.batch_size)
