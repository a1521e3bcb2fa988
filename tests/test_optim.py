"""Chapter 3 checks: optimizers, gradient clipping, learning-rate schedules, early stopping, proximal L1.

Every optimizer is held to a plain NumPy transcription of its update rule (always) and to torch.optim
(when PyTorch is installed). The rest are properties a learner should be able to state in an interview:
Adam's first step moves every coordinate by about lr, AdamW's decay ignores the gradient scale, clipping
keeps the direction, gradients accumulate until zeroed, schedules hit their stated values.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm import optim
from tinygrad_llm.nn import Parameter

try:
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.training


def torch_oracle(test):
    """Compare with PyTorch: marked `oracle`, skipped cleanly when torch is not installed."""
    return pytest.mark.oracle(pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")(test))


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
shapes = hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)


@st.composite
def weights_and_gradients(draw, min_steps=1, max_steps=5):
    """A float64 weight array and a few gradients of its shape, one per optimizer step."""
    shape = draw(shapes)
    steps = draw(st.integers(min_steps, max_steps))
    weights = draw(hnp.arrays(np.float64, shape, elements=finite))
    gradients = draw(hnp.arrays(np.float64, (steps, *shape), elements=finite))
    return weights, list(gradients)


# ---------------------------------------------------------------- plain NumPy transcriptions of each rule
def numpy_sgd(w, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    velocity = None
    for g in grads:
        g = g + weight_decay * w
        if momentum:
            velocity = g if velocity is None else momentum * velocity + (1 - dampening) * g
            g = g + momentum * velocity if nesterov else velocity
        w = w - lr * g
    return w


def numpy_adam(w, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g**2
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def numpy_adamw(w, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    return numpy_adam(w, grads, lr, betas, eps, weight_decay, decoupled=True)


def numpy_adagrad(w, grads, lr=1e-2, eps=1e-10, weight_decay=0.0, initial_accumulator_value=0.0):
    s = np.full_like(w, initial_accumulator_value)
    for g in grads:
        g = g + weight_decay * w
        s = s + g**2
        w = w - lr * g / (np.sqrt(s) + eps)
    return w


def numpy_rmsprop(w, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
    a, b = np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        g = g + weight_decay * w
        a = alpha * a + (1 - alpha) * g**2
        step = g / (np.sqrt(a) + eps)
        b = momentum * b + step
        w = w - lr * (b if momentum else step)
    return w


NUMPY_RULES = {"SGD": numpy_sgd, "Adam": numpy_adam, "AdamW": numpy_adamw, "Adagrad": numpy_adagrad,
               "RMSprop": numpy_rmsprop}

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=0.1, betas=(0.5, 0.9), weight_decay=0.3)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.9)),
]


def run_ours(name, kwargs, w, grads):
    param = Parameter(w.copy())
    optimizer = getattr(optim, name)([param], **kwargs)
    for g in grads:
        param.grad = g.copy()
        optimizer.step()
    return param.data


def run_torch(name, kwargs, w, grads):
    param = torch.nn.Parameter(torch.tensor(w))
    optimizer = getattr(torch.optim, name)([param], **kwargs)
    for g in grads:
        param.grad = torch.tensor(g)
        optimizer.step()
    return param.detach().numpy()


# ---------------------------------------------------------------- every optimizer against its rule
@given(case=weights_and_gradients())
def test_every_optimizer_matches_its_numpy_update_rule(case):
    w, grads = case
    for name, kwargs in CONFIGS:
        np.testing.assert_allclose(run_ours(name, kwargs, w, grads), NUMPY_RULES[name](w, grads, **kwargs),
                                   rtol=1e-9, atol=1e-9, err_msg=f"{name}({kwargs}) after {len(grads)} steps")


@torch_oracle
@given(case=weights_and_gradients())
def test_every_optimizer_matches_torch(case):
    w, grads = case
    for name, kwargs in CONFIGS:
        np.testing.assert_allclose(run_ours(name, kwargs, w, grads), run_torch(name, kwargs, w, grads),
                                   rtol=1e-7, atol=1e-9, err_msg=f"{name}({kwargs}) after {len(grads)} steps")


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_update_is_in_place_and_keeps_float32(name, kwargs):
    param = Parameter(np.ones((2, 3), dtype=np.float32))
    array_before = param.data
    optimizer = getattr(optim, name)([param], **kwargs)
    param.grad = np.full((2, 3), 0.5, dtype=np.float32)
    optimizer.step()
    assert param.data is array_before, "the update must write into p.data, not replace it"
    assert param.dtype == np.float32
    assert not np.array_equal(param.data, np.ones((2, 3)))


@given(case=weights_and_gradients(), lr=st.floats(1e-4, 1.0))
def test_sgd_without_momentum_is_plain_gradient_descent(case, lr):
    w, grads = case
    expected = w.copy()
    for g in grads:
        expected = expected - lr * g
    np.testing.assert_array_equal(run_ours("SGD", dict(lr=lr), w, grads), expected)


@given(case=weights_and_gradients(), lr=st.floats(1e-4, 1.0))
def test_adamw_without_weight_decay_is_adam(case, lr):
    w, grads = case
    np.testing.assert_array_equal(run_ours("AdamW", dict(lr=lr, weight_decay=0.0), w, grads),
                                  run_ours("Adam", dict(lr=lr, weight_decay=0.0), w, grads))


nonzero_gradient = st.one_of(st.floats(1e-3, 10), st.floats(-10, -1e-3), st.just(0.0))


@given(w=hnp.arrays(np.float64, shapes, elements=finite), data=st.data(), lr=st.floats(1e-4, 0.1))
def test_adam_first_step_moves_each_coordinate_by_about_lr(w, data, lr):
    """Adam is not gradient descent: m_hat / sqrt(v_hat) = g / |g| on step 1, whatever the size of g."""
    g = data.draw(hnp.arrays(np.float64, w.shape, elements=nonzero_gradient))
    moved = np.abs(run_ours("Adam", dict(lr=lr), w, [g]) - w)
    expected = np.where(g != 0, lr, 0.0)
    np.testing.assert_allclose(moved, expected, rtol=1e-4, atol=1e-12)


def decay_effect(name, grads, w0, weight_decay=0.1, lr=0.01):
    """How far weight decay moved the weights: final w with decay minus final w without it."""
    return run_ours(name, dict(lr=lr, weight_decay=weight_decay), w0, grads) - run_ours(
        name, dict(lr=lr, weight_decay=0.0), w0, grads)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1))
def test_adamw_decay_ignores_gradient_scale_but_adam_l2_does_not(seed):
    rng = np.random.default_rng(seed)
    w0 = rng.uniform(0.5, 2.0, size=16) * rng.choice([-1.0, 1.0], size=16)
    grads = list(rng.normal(0.0, 0.1, size=(30, 16)))
    big_grads = [1000 * g for g in grads]
    # One AdamW step = a decay term -lr*wd*w (no g in it at all) + an adaptive step that ignores g's scale.
    adaptive_steps = []
    for gradient in (grads[0], big_grads[0]):
        adamw_update = run_ours("AdamW", dict(lr=0.01, weight_decay=0.1), w0, [gradient]) - w0
        decay_term = adamw_update - (run_ours("Adam", dict(lr=0.01), w0, [gradient]) - w0)
        np.testing.assert_allclose(decay_term, -0.01 * 0.1 * w0, rtol=1e-9)
        adaptive_steps.append(adamw_update - decay_term)
    # The step is lr * g / (|g| + eps): scale-free up to a relative eps/|g| (eps = 1e-8), which a drawn entry
    # of g near 0 makes large: hence a bound per entry, not one tolerance for all.
    allowed = 2 * 0.01 * 1e-8 / np.abs(grads[0]) + 1e-12
    assert np.all(np.abs(adaptive_steps[1] - adaptive_steps[0]) <= allowed)
    # Over a run: AdamW's decay is the same at both scales; Adam+L2's is divided by sqrt(v) and all but vanishes.
    np.testing.assert_allclose(decay_effect("AdamW", big_grads, w0), decay_effect("AdamW", grads, w0), rtol=1e-4)
    l2_small, l2_big = decay_effect("Adam", grads, w0), decay_effect("Adam", big_grads, w0)
    assert np.linalg.norm(l2_big) < 0.05 * np.linalg.norm(l2_small), (
        f"Adam+L2's decay should shrink ~1000x with 1000x gradients: "
        f"{np.linalg.norm(l2_small)} -> {np.linalg.norm(l2_big)}")


@given(w=hnp.arrays(np.float64, shapes, elements=finite))
def test_two_backward_calls_without_zero_grad_double_the_gradient(w):
    param = Parameter(w)

    def loss():
        return (param * param).sum()

    loss().backward()
    once = param.grad.copy()
    loss().backward()
    np.testing.assert_allclose(param.grad, 2 * once, err_msg="gradients must accumulate until zero_grad()")
    optimizer = optim.SGD([param], lr=0.1)
    optimizer.zero_grad()
    assert param.grad is None
    loss().backward()
    np.testing.assert_allclose(param.grad, once)


def test_step_skips_parameters_without_gradient():
    used, unused = Parameter(np.ones(3)), Parameter(np.ones(2))
    optimizer = optim.Adam([used, unused], lr=0.1)
    used.grad = np.ones(3)
    optimizer.step()
    np.testing.assert_array_equal(unused.data, np.ones(2))
    assert unused not in optimizer.state and optimizer.state[used]["step"] == 1


def test_parameter_groups_have_their_own_hyperparameters():
    """Decay on matrices only: each group behaves like its own optimizer."""
    matrix, bias = Parameter(np.ones((2, 2))), Parameter(np.ones(2))
    optimizer = optim.AdamW([{"params": [matrix], "weight_decay": 0.5}, {"params": [bias], "weight_decay": 0.0}],
                            lr=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]
    assert all(g["lr"] == 0.1 and g["betas"] == (0.9, 0.999) for g in optimizer.param_groups)
    matrix.grad, bias.grad = np.ones((2, 2)), np.ones(2)
    optimizer.step()
    np.testing.assert_allclose(matrix.data, numpy_adamw(np.ones((2, 2)), [np.ones((2, 2))], lr=0.1, weight_decay=0.5))
    np.testing.assert_allclose(bias.data, numpy_adamw(np.ones(2), [np.ones(2)], lr=0.1, weight_decay=0.0))


def resume_halfway(name, kwargs, grads, n, w):
    """Run n steps, save, load into a fresh optimizer over a copy of the weights, run the rest."""
    param = Parameter(w.copy())
    optimizer = getattr(optim, name)([param], **kwargs)
    for g in grads[:n]:
        param.grad = g.copy()
        optimizer.step()
    saved, weights_at_save = optimizer.state_dict(), param.data.copy()
    assert all(isinstance(v, np.ndarray) for s in saved["state"].values() for v in s.values())
    param.grad = np.full_like(w, 123.0)
    optimizer.step()  # changes after saving must not leak into the saved copy

    resumed_param = Parameter(weights_at_save)  # a different Parameter object with the weights at save time
    resumed = getattr(optim, name)([resumed_param], lr=999.0)  # the hyperparameters come from the state dict
    resumed.load_state_dict(saved)
    for g in grads[n:]:
        resumed_param.grad = g.copy()
        resumed.step()
    return resumed_param.data


@given(case=weights_and_gradients(min_steps=2, max_steps=6), data=st.data())
def test_state_dict_resumes_bit_exactly(case, data):
    """N steps, save, load, M more steps == N + M steps straight, to the last bit, for every optimizer."""
    w, grads = case
    n = data.draw(st.integers(1, len(grads) - 1), label="steps before saving")
    for name, kwargs in CONFIGS:
        assert np.array_equal(resume_halfway(name, kwargs, grads, n, w), run_ours(name, kwargs, w, grads)), name


# ---------------------------------------------------------------- gradient clipping
@st.composite
def gradient_lists(draw):
    arrays = draw(st.lists(hnp.arrays(np.float64, shapes, elements=finite), min_size=1, max_size=4))
    params = [Parameter(np.zeros(a.shape)) for a in arrays]
    for param, grad in zip(params, arrays):
        param.grad = grad.copy()
    return params


def concatenated_grads(params):
    return np.concatenate([p.grad.ravel() for p in params if p.grad is not None])


@given(params=gradient_lists(), max_norm=st.floats(0.01, 50))
def test_clip_grad_norm_bounds_the_joint_norm_and_keeps_the_direction(params, max_norm):
    before = concatenated_grads(params)
    total = optim.clip_grad_norm_(params, max_norm)
    after = concatenated_grads(params)
    assert isinstance(total, float)
    assert math.isclose(total, np.linalg.norm(before), rel_tol=1e-9, abs_tol=1e-12)
    assert np.linalg.norm(after) <= max_norm * (1 + 1e-9)
    if total <= max_norm:
        np.testing.assert_array_equal(after, before)
    else:
        cosine = after @ before / (np.linalg.norm(after) * np.linalg.norm(before))
        assert math.isclose(cosine, 1.0, rel_tol=1e-9)


@given(params=gradient_lists(), max_norm=st.floats(0.01, 50))
def test_clip_grad_norm_with_inf_norm_uses_the_largest_entry(params, max_norm):
    largest = np.abs(concatenated_grads(params)).max()
    assert optim.clip_grad_norm_(params, max_norm, norm_type=math.inf) == largest
    assert np.abs(concatenated_grads(params)).max() <= max_norm * (1 + 1e-9)


def test_clip_grad_norm_uses_the_joint_norm_and_ignores_missing_grads():
    a, b, no_grad = Parameter(np.zeros(2)), Parameter(np.zeros(2)), Parameter(np.zeros(2))
    a.grad, b.grad = np.array([0.6, 0.6]), np.array([0.6, -0.6])  # each has norm 0.85 < 1, jointly 1.2 > 1
    total = optim.clip_grad_norm_([a, b, no_grad], max_norm=1.0)
    assert math.isclose(total, 1.2)
    assert math.isclose(np.linalg.norm(concatenated_grads([a, b])), 1.0, rel_tol=1e-5)
    assert no_grad.grad is None


@torch_oracle
@given(params=gradient_lists(), max_norm=st.floats(0.01, 50), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_matches_torch(params, max_norm, norm_type):
    torch_params = [torch.nn.Parameter(torch.zeros(p.shape, dtype=torch.float64)) for p in params]
    for tp, p in zip(torch_params, params):
        tp.grad = torch.tensor(p.grad)
    expected_total = float(torch.nn.utils.clip_grad_norm_(torch_params, max_norm, norm_type=norm_type))
    assert math.isclose(optim.clip_grad_norm_(params, max_norm, norm_type), expected_total, rel_tol=1e-9, abs_tol=1e-12)
    # torch always multiplies by min(1, max_norm / (total + 1e-6)), so it also shrinks by up to 1e-6/max_norm
    # when total is within 1e-6 below max_norm; here only a norm above max_norm is clipped.
    for tp, p in zip(torch_params, params):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-9 + 1e-6 / max_norm, atol=1e-12)


# ---------------------------------------------------------------- learning-rate schedules
def optimizer_with_lrs(*lrs):
    """An optimizer with one parameter group per learning rate."""
    return optim.SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def torch_optimizer_with_lrs(*lrs):
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


def lrs_over(scheduler, steps):
    """The first learning rate at steps 0, 1, ..., steps - 1."""
    values = []
    for _ in range(steps):
        values.append(scheduler.get_last_lr()[0])
        scheduler.step()
    return values


base_lrs = st.floats(1e-4, 1.0)


@given(base=base_lrs, step_size=st.integers(1, 10))
def test_step_lr_halves_every_step_size(base, step_size):
    lrs = lrs_over(optim.StepLR(optimizer_with_lrs(base), step_size=step_size, gamma=0.5), 2 * step_size + 1)
    assert lrs[:step_size] == [base] * step_size
    assert math.isclose(lrs[step_size], base / 2) and math.isclose(lrs[2 * step_size], base / 4)


@given(base=base_lrs, gamma=st.floats(0.5, 1.0), steps=st.integers(1, 30))
def test_exponential_lr_is_base_times_gamma_to_the_step(base, gamma, steps):
    lrs = lrs_over(optim.ExponentialLR(optimizer_with_lrs(base), gamma=gamma), steps)
    np.testing.assert_allclose(lrs, base * gamma ** np.arange(steps), rtol=1e-12)


@given(base=base_lrs, eta_min=st.floats(0, 1e-4), half=st.integers(1, 20))
def test_cosine_annealing_hits_base_midpoint_and_minimum(base, eta_min, half):
    lrs = lrs_over(optim.CosineAnnealingLR(optimizer_with_lrs(base), T_max=2 * half, eta_min=eta_min), 2 * half + 1)
    assert math.isclose(lrs[0], base)
    assert math.isclose(lrs[half], (base + eta_min) / 2)
    assert math.isclose(lrs[2 * half], eta_min, abs_tol=1e-15)


@given(base=base_lrs, warmup=st.integers(0, 10), decay=st.integers(1, 20), min_lr=st.floats(0, 1e-4))
def test_linear_warmup_cosine_hits_its_stated_values(base, warmup, decay, min_lr):
    total = warmup + 2 * decay
    lrs = lrs_over(optim.LinearWarmupCosine(optimizer_with_lrs(base), warmup, total, min_lr=min_lr), total + 5)
    np.testing.assert_allclose(lrs[:warmup], base * np.arange(1, warmup + 1) / (warmup + 1), rtol=1e-12)
    assert 0 < lrs[0] <= base
    assert math.isclose(lrs[warmup], base), "warmup ends at the base lr"
    assert math.isclose(lrs[warmup + decay], (base + min_lr) / 2), "cosine midpoint"
    assert math.isclose(lrs[total], min_lr, abs_tol=1e-15)
    assert lrs[total + 1:] == [min_lr] * 4, "flat after total_steps"


@given(base=base_lrs, steps=st.integers(1, 20))
def test_lambda_lr_multiplies_each_group_base_lr(base, steps):
    scheduler = optim.LambdaLR(optimizer_with_lrs(base, 2 * base), lambda step: 1 / (step + 1))
    for step in range(steps):
        assert np.allclose(scheduler.get_last_lr(), [base / (step + 1), 2 * base / (step + 1)])
        scheduler.step()


def torch_schedules():
    S = torch.optim.lr_scheduler
    return {
        "StepLR": (lambda o: optim.StepLR(o, step_size=3, gamma=0.5), lambda o: S.StepLR(o, step_size=3, gamma=0.5)),
        "ExponentialLR": (lambda o: optim.ExponentialLR(o, 0.9), lambda o: S.ExponentialLR(o, 0.9)),
        "CosineAnnealingLR": (lambda o: optim.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
                              lambda o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
        "LambdaLR": (lambda o: optim.LambdaLR(o, lambda s: 0.95**s + 0.1 * (s % 3)),
                     lambda o: S.LambdaLR(o, lambda s: 0.95**s + 0.1 * (s % 3))),
        # Linear warmup then cosine is torch's LinearLR(start 1/(W+1)) followed by CosineAnnealingLR(T - W).
        "LinearWarmupCosine": (lambda o: optim.LinearWarmupCosine(o, warmup_steps=4, total_steps=20, min_lr=0.01),
                               lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=1 / 5, total_iters=4),
                                                            S.CosineAnnealingLR(o, T_max=16, eta_min=0.01)],
                                                        milestones=[4])),
    }


@torch_oracle
@pytest.mark.parametrize("name", ["StepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR", "LinearWarmupCosine"])
def test_schedule_matches_torch(name):
    ours, theirs = torch_schedules()[name]
    scheduler = ours(optimizer_with_lrs(0.5, 0.1))
    torch_optimizer = torch_optimizer_with_lrs(0.5, 0.1)
    torch_scheduler = theirs(torch_optimizer)
    for step in range(21):  # the cosine one stops at total_steps, where torch's SequentialLR would turn back up
        np.testing.assert_allclose(scheduler.get_last_lr(), torch_scheduler.get_last_lr(), rtol=1e-10,
                                   err_msg=f"{name} at step {step}")
        torch_optimizer.step()
        torch_scheduler.step()
        scheduler.step()


def test_scheduler_state_dict_resumes_the_schedule():
    optimizer = optimizer_with_lrs(0.3)
    scheduler = optim.LinearWarmupCosine(optimizer, warmup_steps=3, total_steps=12)
    for _ in range(5):
        scheduler.step()
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()
    expected = lrs_over(scheduler, 10)
    resumed_optimizer = optimizer_with_lrs(0.3)
    resumed = optim.LinearWarmupCosine(resumed_optimizer, warmup_steps=3, total_steps=12)
    resumed_optimizer.load_state_dict(saved_optimizer)
    resumed.load_state_dict(saved_scheduler)
    assert resumed_optimizer.param_groups[0]["lr"] == expected[0]
    assert lrs_over(resumed, 10) == expected


# ---------------------------------------------------------------- ReduceLROnPlateau
@given(patience=st.integers(0, 5), factor=st.sampled_from([0.1, 0.5]))
def test_plateau_reduces_on_the_bad_epoch_after_patience(patience, factor):
    optimizer = optimizer_with_lrs(1.0)
    scheduler = optim.ReduceLROnPlateau(optimizer, factor=factor, patience=patience)
    scheduler.step(1.0)  # the first value is always an improvement on +inf
    for _ in range(patience):
        scheduler.step(1.0)
        assert scheduler.get_last_lr() == [1.0], "patience bad epochs are tolerated"
    scheduler.step(1.0)
    assert scheduler.get_last_lr() == [factor]


@given(patience=st.integers(0, 3), cooldown=st.integers(0, 3))
def test_plateau_waits_out_cooldown_and_never_goes_below_min_lr(patience, cooldown):
    scheduler = optim.ReduceLROnPlateau(optimizer_with_lrs(1.0), factor=0.5, patience=patience, cooldown=cooldown,
                                        min_lr=0.2)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(1 + 4 * (patience + cooldown + 1)):
        scheduler.step(3.0)
        lrs.append(scheduler.get_last_lr()[0])
    reductions = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1]]
    assert reductions[:2] == [patience + 2, patience + 2 + cooldown + patience + 1]
    assert min(lrs) == 0.2 and lrs[-1] == 0.2


@torch_oracle
@given(
    metrics=st.lists(st.sampled_from([1.0, 0.9, 0.95, 0.89999, 0.5, 2.0]), min_size=1, max_size=40),
    mode=st.sampled_from(["min", "max"]), threshold_mode=st.sampled_from(["rel", "abs"]),
    threshold=st.sampled_from([0.0, 1e-4, 0.05]), patience=st.integers(0, 4), cooldown=st.integers(0, 3),
    factor=st.sampled_from([0.1, 0.5, 0.9]), min_lr=st.sampled_from([0.0, 0.01]),
)
def test_plateau_matches_torch(metrics, mode, threshold_mode, threshold, patience, cooldown, factor, min_lr):
    kwargs = dict(mode=mode, factor=factor, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
                  cooldown=cooldown, min_lr=min_lr)
    scheduler = optim.ReduceLROnPlateau(optimizer_with_lrs(1.0, 0.05), **kwargs)
    torch_optimizer = torch_optimizer_with_lrs(1.0, 0.05)
    torch_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_optimizer, **kwargs)
    for i, metric in enumerate(metrics):
        scheduler.step(metric)
        torch_scheduler.step(metric)
        assert scheduler.get_last_lr() == torch_scheduler.get_last_lr(), f"after metric {i} = {metric}"


# ---------------------------------------------------------------- early stopping
@given(metrics=st.lists(st.sampled_from([3.0, 2.0, 1.5, 1.0, 1.2, 0.8]), min_size=1, max_size=30),
       patience=st.integers(1, 4))
def test_early_stopping_stops_after_patience_and_returns_the_best_weights(metrics, patience):
    model = tgl.nn.Linear(2, 2)
    stopper = optim.EarlyStopping(patience=patience)
    best, best_step, bad, stopped_at = math.inf, None, 0, None
    for step, metric in enumerate(metrics):
        model.weight.data[...] = step  # weights that say which step they come from
        best, best_step, bad = (metric, step, 0) if metric < best else (best, best_step, bad + 1)
        if stopper.step(metric, model):
            stopped_at = step
            break
    assert stopped_at == (step if bad >= patience else None)
    assert (stopper.best_metric, stopper.best_step) == (best, best_step)
    if stopped_at is None:
        stopper.restore(model)  # ran out of metrics before patience did: restore by hand
    np.testing.assert_array_equal(model.weight.data, np.full((2, 2), best_step))


def test_early_stopping_min_delta_and_max_mode():
    model = tgl.nn.Linear(1, 1)
    stopper = optim.EarlyStopping(patience=2, min_delta=0.1, mode="max")
    assert not stopper.step(0.5, model)
    assert not stopper.step(0.55, model), "an improvement smaller than min_delta is a bad step"
    assert stopper.step(0.59, model)
    assert (stopper.best_metric, stopper.best_step) == (0.5, 0)


# ---------------------------------------------------------------- proximal L1
@given(w=hnp.arrays(np.float64, shapes, elements=finite), lam=st.floats(0, 10), lr=st.floats(0, 1))
def test_l1_proximal_step_zeroes_small_weights_and_shrinks_the_rest(w, lam, lr):
    param = Parameter(w.copy())
    optim.l1_proximal_step_([param], lam=lam, lr=lr)
    small = np.abs(w) <= lam * lr
    assert np.all(param.data[small] == 0), "every |w| <= lam*lr must become exactly 0"
    np.testing.assert_allclose(param.data[~small], w[~small] - np.sign(w[~small]) * lam * lr, rtol=1e-12, atol=1e-12)
    assert np.all(np.sign(param.data[~small]) == np.sign(w[~small])), "shrinking never flips a sign"


# ---------------------------------------------------------------- bad input gets a message that teaches
def _param():
    return Parameter(np.ones(2))


def _optimizer_fed(grad_shape):
    param = _param()
    optimizer = optim.SGD([param], lr=0.1)
    param.grad = np.ones(grad_shape)
    return optimizer.step


def _load_into_two_groups():
    saved = optim.SGD([_param()], lr=0.1).state_dict()
    optim.SGD([{"params": [_param()]}, {"params": [_param()]}], lr=0.1).load_state_dict(saved)


def _nonfinite_clip():
    param = _param()
    param.grad = np.array([np.nan, 1.0])
    optim.clip_grad_norm_([param], 1.0, error_if_nonfinite=True)


BAD_INPUTS = {
    "no parameters": (lambda: optim.SGD([], lr=0.1), "empty parameter list"),
    "a single parameter": (lambda: optim.SGD(_param(), lr=0.1), "wrap it in a list"),
    "negative lr": (lambda: optim.Adam([_param()], lr=-1e-3), "lr=-0.001.*>= 0"),
    "frozen parameter": (lambda: optim.SGD([Parameter(np.ones(2), requires_grad=False)], lr=0.1),
                         "does not require grad"),
    "not a leaf": (lambda: optim.SGD([_param() * 2], lr=0.1), "not a leaf"),
    "not a tensor": (lambda: optim.SGD([np.ones(2)], lr=0.1), "only optimize Tensors"),
    "duplicate": (lambda: (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1))(_param()),
                  "more than once"),
    "typo in group": (lambda: optim.SGD([{"params": [_param()], "weight_dacay": 0.1}], lr=0.1),
                      r"unknown hyperparameter.*weight_dacay"),
    "betas out of range": (lambda: optim.Adam([_param()], betas=(0.9, 1.0)), "betas"),
    "negative weight decay": (lambda: optim.AdamW([_param()], weight_decay=-0.1), "weight_decay"),
    "nesterov without momentum": (lambda: optim.SGD([_param()], lr=0.1, nesterov=True), "Nesterov"),
    "gradient of the wrong shape": (_optimizer_fed((3,)), r"gradient of shape \(3,\)"),
    "state of another grouping": (_load_into_two_groups, "parameter group"),
    "non-positive max_norm": (lambda: optim.clip_grad_norm_([_param()], 0.0), "max_norm"),
    "NaN gradient": (_nonfinite_clip, "NaN or inf"),
    "scheduler without optimizer": (lambda: optim.StepLR([_param()], step_size=2), "needs an Optimizer"),
    "zero step_size": (lambda: optim.StepLR(optimizer_with_lrs(0.1), step_size=0), "step_size"),
    "warmup longer than training": (lambda: optim.LinearWarmupCosine(optimizer_with_lrs(0.1), 10, 5), "total_steps"),
    "plateau factor above 1": (lambda: optim.ReduceLROnPlateau(optimizer_with_lrs(0.1), factor=2.0), "factor"),
    "plateau unknown mode": (lambda: optim.ReduceLROnPlateau(optimizer_with_lrs(0.1), mode="minimum"), "mode"),
    "zero patience": (lambda: optim.EarlyStopping(patience=0), "patience"),
    "restore before any step": (lambda: optim.EarlyStopping(patience=2).restore(tgl.nn.Linear(1, 1)), "call step"),
    "negative L1 strength": (lambda: optim.l1_proximal_step_([_param()], lam=-1.0, lr=0.1), "lam"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_gets_a_clear_error(case):
    make_the_mistake, message = BAD_INPUTS[case]
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        make_the_mistake()
