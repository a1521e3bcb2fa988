"""The learning checks as reusable functions.

Each `check_*` takes an implementation (a function, a Function class, an optimizer class) and raises
when it is wrong. `test_broken_variants.py` runs every check on the library (which must pass) and on
deliberately broken implementations (every one must be caught): a check that passes on a broken
implementation is not a check.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.nn import Parameter
from tinygrad_llm.testing import gradcheck

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


def arrays(shape_strategy, elements=finite, dtype=np.float64):
    return hnp.arrays(dtype, shape_strategy, elements=elements)


matrices = arrays(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=5))
huge_logits = arrays(hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=5), st.sampled_from([-1e4, 0.0, 1e4, 5e3]))


def reference_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def requires_grad(array) -> tgl.Tensor:
    return tgl.tensor(np.array(array, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------------ softmax family
def check_softmax(softmax):
    """softmax(x, axis=-1): each row is a distribution equal to the reference, also for logits of +-1e4."""

    @given(x=matrices | huge_logits)
    def rows_are_the_reference_distribution(x):
        out = softmax(tgl.tensor(x), axis=-1).data
        assert np.isfinite(out).all(), f"softmax is not finite for logits {x}"
        np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(out, reference_softmax(x), rtol=1e-6, atol=1e-12)

    rows_are_the_reference_distribution()


def check_log_softmax(log_softmax):
    """log_softmax == log(softmax) where finite, and finite (not -inf) even where softmax underflows to 0."""

    @given(x=matrices | huge_logits)
    def equals_log_of_reference(x):
        out = log_softmax(tgl.tensor(x), axis=-1).data
        assert np.isfinite(out).all(), f"log_softmax is not finite for logits {x}"
        shifted = x - x.max(axis=-1, keepdims=True)
        np.testing.assert_allclose(out, shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)), rtol=1e-6, atol=1e-9)

    equals_log_of_reference()


def check_cross_entropy(cross_entropy):
    """cross_entropy(logits, targets) == -mean log p[target] >= 0, gradient (softmax - one_hot) / N."""

    @given(data=st.data(), logits=matrices)
    def is_mean_negative_log_likelihood(data, logits):
        n, c = logits.shape
        targets = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
        x = requires_grad(logits)
        loss = cross_entropy(x, targets)
        p = reference_softmax(logits)
        expected = -np.log(p[np.arange(n), targets]).mean()
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-7, atol=1e-12)
        assert loss.item() >= 0
        loss.backward()
        one_hot = np.eye(c)[targets]
        np.testing.assert_allclose(x.grad, (p - one_hot) / n, rtol=1e-6, atol=1e-12)

    is_mean_negative_log_likelihood()


def check_cross_entropy_ignores_padding(cross_entropy):
    """Targets equal to ignore_index add no loss and get exactly zero gradient."""

    @given(logits=arrays(st.tuples(st.integers(2, 6), st.integers(2, 5))), data=st.data())
    def padding_is_invisible(logits, data):
        n, c = logits.shape
        targets = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
        padded = targets.copy()
        padded[-1] = -100
        x = requires_grad(logits)
        loss = cross_entropy(x, padded, ignore_index=-100)
        loss.backward()
        assert (x.grad[-1] == 0).all(), "an ignored position received gradient"
        p = reference_softmax(logits[:-1])
        expected = -np.log(p[np.arange(n - 1), targets[:-1]]).mean()
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-7)

    padding_is_invisible()


# ------------------------------------------------------------------ gradients of ops
def check_broadcast_add_gradient(add):
    """add(a, b) under broadcasting: gradcheck (each operand's gradient summed over its broadcast axes)."""

    @given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=3), data=st.data())
    def gradients_match_finite_differences(shapes, data):
        a_shape, b_shape = shapes.input_shapes
        a = requires_grad(data.draw(arrays(st.just(a_shape))))
        b = requires_grad(data.draw(arrays(st.just(b_shape))))
        gradcheck(add, a, b)

    gradients_match_finite_differences()


def check_matmul(matmul):
    """matmul(a, b) equals NumPy's and its gradients match finite differences (square shapes included)."""

    @given(dims=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)), batch=st.sampled_from([(), (2,)]), data=st.data())
    def values_and_gradients(dims, batch, data):
        n, k, m = dims
        a = requires_grad(data.draw(arrays(st.just(batch + (n, k)))))
        b = requires_grad(data.draw(arrays(st.just((k, m)))))
        np.testing.assert_allclose(matmul(a, b).data, a.data @ b.data, rtol=1e-10, atol=1e-12)
        gradcheck(matmul, a, b)

    values_and_gradients()


def check_activation_gradient(activation):
    """activation(x): gradcheck on points away from 0 (where ReLU-like kinks would blur the check)."""

    @given(x=arrays(hnp.array_shapes(max_dims=2, max_side=5), st.floats(0.05, 4) | st.floats(-4, -0.05)))
    def gradient_matches_finite_differences(x):
        gradcheck(activation, requires_grad(x))

    gradient_matches_finite_differences()


def check_reused_tensor_gradient(expression=lambda x: x * x + x.tanh() * x):
    """A tensor used several times receives the SUM of the gradients of its uses (d(x*x)/dx = 2x)."""

    @given(x=arrays(hnp.array_shapes(max_dims=2, max_side=4)))
    def uses_accumulate(x):
        gradcheck(expression, requires_grad(x))

    uses_accumulate()


# ------------------------------------------------------------------ normalisation and dropout
def check_layer_norm(layer_norm):
    """layer_norm(x, (d,)): each row has mean 0 and BIASED variance 1 (divide by d), and matches the reference."""

    @given(x=arrays(st.tuples(st.integers(1, 4), st.integers(2, 8)), st.floats(-5, 5)).filter(lambda a: (a.std(axis=-1) > 0.1).all()))
    def rows_are_standardised(x):
        out = layer_norm(tgl.tensor(x), (x.shape[-1],), eps=1e-5).data
        mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
        np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-6, atol=1e-9)

    rows_are_standardised()
    x = requires_grad(np.random.default_rng(0).standard_normal((3, 5)))
    gradcheck(lambda t: layer_norm(t, (5,)), x)


def check_dropout(dropout):
    """Eval mode is the identity; training mode keeps the expectation (survivors scaled by 1 / (1 - p))."""
    x = tgl.ones(200_000)
    assert np.array_equal(dropout(x, 0.3, training=False).data, x.data), "dropout in eval mode must be the identity"
    for p in (0.1, 0.5, 0.8):
        tgl.manual_seed(0)
        out = dropout(x, p, training=True).data
        # The mean of n scaled Bernoulli(1 - p) draws has std sqrt(p / ((1 - p) n)); allow 5 of them.
        tolerance = 5 * np.sqrt(p / ((1 - p) * x.numel()))
        assert abs(out.mean() - 1) < tolerance, f"dropout(p={p}) changed the mean to {out.mean():.4f}"


# ------------------------------------------------------------------ optimizers
def _params_and_grads(seed, shapes=((3, 4), (4,))):
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.standard_normal(s)) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(5)]
    return params, grads


def _run(optimizer, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.astype(p.dtype)
        optimizer.step()
    return [p.data.copy() for p in params]


def reference_sgd(w, grads, lr, momentum, weight_decay):
    """PyTorch's convention: weight decay joins the gradient BEFORE the momentum buffer."""
    v = None
    for g in grads:
        g = g + weight_decay * w
        v = g if v is None else momentum * v + g
        w = w - lr * v
    return w


def reference_adam(w, grads, lr, beta1, beta2, eps, weight_decay, decoupled):
    m = v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            w = w - lr * weight_decay * w
        else:
            g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def _check_against_reference(make_optimizer, reference, seeds=range(3)):
    for seed in seeds:
        params, grads = _params_and_grads(seed)
        start = [p.data.astype(np.float64) for p in params]
        got = _run(make_optimizer(params), params, grads)
        for i, (w, out) in enumerate(zip(start, got)):
            expected = reference(w, [g[i] for g in grads])
            np.testing.assert_allclose(out, expected, rtol=2e-5, atol=1e-6)


def check_sgd(sgd_class):
    """SGD with momentum 0.9 and weight decay 0.1 follows PyTorch's update rule."""
    _check_against_reference(
        lambda ps: sgd_class(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda w, gs: reference_sgd(w, gs, 0.1, 0.9, 0.1),
    )


def check_adam(adam_class):
    """Adam (L2 weight decay 0.1) follows the bias-corrected update; its first step moves each weight by ~lr."""
    _check_against_reference(
        lambda ps: adam_class(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
        lambda w, gs: reference_adam(w, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, decoupled=False),
    )
    p = Parameter(np.zeros(100))
    p.grad = np.random.default_rng(0).standard_normal(100).astype(p.dtype)
    adam_class([p], lr=0.01).step()
    np.testing.assert_allclose(np.abs(p.data), 0.01, rtol=1e-3)


def check_adamw(adamw_class):
    """AdamW decays weights by lr * wd * w whatever the gradient scale (decoupled), unlike Adam + L2."""
    _check_against_reference(
        lambda ps: adamw_class(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
        lambda w, gs: reference_adam(w, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, decoupled=True),
    )
    moves = []
    for scale in (1.0, 1000.0):
        p = Parameter(np.full(4, 2.0))
        opt = adamw_class([p], lr=0.01, weight_decay=0.1)
        for _ in range(3):
            p.grad = np.full(4, scale, dtype=p.dtype)
            opt.step()
        moves.append(p.data.copy())
    np.testing.assert_allclose(moves[0], moves[1], rtol=1e-5, err_msg="AdamW's decay changed with the gradient scale")


def check_clip_grad_norm(clip_grad_norm_):
    """After clipping, the JOINT norm of all gradients is <= max_norm and every direction is unchanged."""

    @given(a=arrays(st.just((3,)), st.floats(-100, 100)), b=arrays(st.just((2, 2)), st.floats(-100, 100)), max_norm=st.floats(0.1, 10))
    def global_norm_bounded_direction_kept(a, b, max_norm):
        params = [Parameter(np.zeros_like(a)), Parameter(np.zeros_like(b))]
        params[0].grad, params[1].grad = a.copy(), b.copy()
        before = np.concatenate([a.ravel(), b.ravel()])
        clip_grad_norm_(params, max_norm)
        after = np.concatenate([p.grad.ravel() for p in params])
        assert np.linalg.norm(after) <= max_norm * (1 + 1e-6)
        if np.linalg.norm(before) > max_norm:
            np.testing.assert_allclose(after * np.linalg.norm(before) / np.linalg.norm(after), before, rtol=1e-6, atol=1e-9)
        else:
            np.testing.assert_allclose(after, before)

    global_norm_bounded_direction_kept()
