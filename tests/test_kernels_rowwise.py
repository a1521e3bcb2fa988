"""Learning checks for the row-wise Numba kernels (softmax, fused cross-entropy, layer norm): each is held
to its NumPy reference in kernels/reference/, over shapes drawn by hypothesis, on both its serial and its
parallel (prange) path, in float32 and float64.

Tolerances (absolute + relative, per dtype), and why they are not 0: the Numba kernels add in a different
order (16 SIMD lanes, then across lanes) than NumPy's pairwise sums, and use a polynomial exp in float32.
    softmax, forward and backward   float32: 1e-6 + 1e-5 rel      float64: 1e-14 + 1e-12 rel
    cross-entropy                   float32: 2e-6 * (10 + max|x|) float64: 1e-12 * (10 + max|x|)
                                    (lse = max + log(sum) carries an error proportional to |max|)
    layer norm                      float32: 2e-5 * (1 + scale of the outputs), float64: 1e-11 * (...)
"""
import os
from contextlib import contextmanager
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_llm as tgl
import tinygrad_llm.kernels as kernels
from tinygrad_llm.kernels import reference as ref
from tinygrad_llm.kernels.numba_cpu import cross_entropy as nb_ce
from tinygrad_llm.kernels.numba_cpu import fast_math
from tinygrad_llm.kernels.numba_cpu import layer_norm as nb_ln
from tinygrad_llm.kernels.numba_cpu import softmax as nb_sm
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

import broken_kernels_rowwise as broken

pytestmark = pytest.mark.kernels

DTYPES = [np.float32, np.float64]
rows = st.integers(0, 40)
cols = st.integers(1, 300)
seeds = st.integers(0, 2**32 - 1)
scales = st.sampled_from([1e-3, 1.0, 30.0, 1e4])  # tiny, ordinary, past exp's float32 range, huge


# Run each check on the serial kernels and again on the prange kernels, whatever the input size.
paths = pytest.mark.parametrize("path", ["serial", "parallel"])


@contextmanager
def on_path(path):
    old = fast_math.PARALLEL_MIN_ELEMENTS
    fast_math.PARALLEL_MIN_ELEMENTS = 2**62 if path == "serial" else 0
    try:
        yield
    finally:
        fast_math.PARALLEL_MIN_ELEMENTS = old


def draw(seed, shape, dtype, scale=1.0, offset=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + offset * scale).astype(dtype)


def assert_unmodified(before, *after):
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b, err_msg="a kernel modified its input")


# ------------------------------------------------------------------ fast_exp
def test_fast_exp_matches_np_exp_over_the_float32_range():
    x = np.concatenate([
        np.linspace(-110, 88.3, 200_001, dtype=np.float32),
        np.array([-1e30, -1e4, -745, -104, -87.31, -87.3, -87.29, -1e-7, 0, 1e-7, 88.0], np.float32),
    ])
    got = fast_math.fast_exp_array(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    assert np.isfinite(got).all()
    normal = x >= np.float32(-87.3)
    rel = np.abs(got[normal] - want[normal]) / want[normal]
    assert rel.max() < 4e-7, f"fast_exp: relative error {rel.max():.3g} (about {rel.max() / 1.19e-7:.1f} ulp)"
    assert (got[~normal] == 0).all(), "below -87.3 fast_exp must flush to exactly 0 (never NaN, never garbage)"
    assert (got >= 0).all()
    x64 = np.linspace(-700, 700, 1001)
    np.testing.assert_allclose(fast_math.fast_exp_array(x64), np.exp(x64), rtol=1e-15)


# ------------------------------------------------------------------ softmax
def check_softmax_kernel(softmax_forward):
    """A softmax kernel agrees with the reference over drawn shapes, dtypes and magnitudes (1e4 included)."""

    @given(n=rows, c=cols, dtype=st.sampled_from(DTYPES), scale=scales, seed=seeds)
    @example(n=3, c=17, dtype=np.float32, scale=1e4, seed=0)
    @example(n=3, c=17, dtype=np.float64, scale=1e4, seed=0)
    def run(n, c, dtype, scale, seed):
        x = draw(seed, (n, c), dtype, scale)
        x_before = x.copy()
        y = softmax_forward(x)
        assert y.dtype == x.dtype and y.shape == x.shape
        assert np.isfinite(y).all(), f"softmax of logits of size {scale:g} is not finite"
        tol = dict(atol=1e-6, rtol=1e-5) if dtype == np.float32 else dict(atol=1e-14, rtol=1e-12)
        np.testing.assert_allclose(y, ref.softmax_forward(x), **tol)
        assert_unmodified([x_before], x)

    run()


@paths
def test_softmax_forward_matches_reference(path):
    with on_path(path):
        check_softmax_kernel(nb_sm.softmax_forward)


@paths
@given(n=rows, c=cols, dtype=st.sampled_from(DTYPES), scale=scales, seed=seeds)
def test_softmax_backward_matches_reference(path, n, c, dtype, scale, seed):
    with on_path(path):
        y = ref.softmax_forward(draw(seed, (n, c), dtype, scale))
        g = draw(seed + 1, (n, c), dtype)
        before = [y.copy(), g.copy()]
        dx = nb_sm.softmax_backward(y, g)
        assert dx.dtype == y.dtype
        tol = dict(atol=1e-6, rtol=1e-5) if dtype == np.float32 else dict(atol=1e-14, rtol=1e-12)
        np.testing.assert_allclose(dx, ref.softmax_backward(y, g), **tol)
        assert_unmodified(before, y, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_stays_finite_for_huge_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1], [-1e4, -1e4, -1e4, -1e4]], dtype=dtype)
    y = nb_sm.softmax_forward(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(y, ref.softmax_forward(x), atol=1e-6)


def check_online_softmax(online_softmax_forward):
    """Tiled online softmax equals the two-pass softmax, for any tile size."""

    @given(n=st.integers(1, 12), c=cols, block=st.integers(1, 310), scale=scales, seed=seeds)
    @example(n=1, c=8, block=2, scale=1.0, seed=0).via("a max that grows in a later tile")
    def run(n, c, block, scale, seed):
        x = draw(seed, (n, c), np.float32, scale)
        if seed == 0 and c == 8:
            x[0] = np.arange(8, dtype=np.float32)  # the running max changes at every tile
        np.testing.assert_allclose(online_softmax_forward(x, block), nb_sm.softmax_forward(x), atol=1e-6, rtol=1e-5)

    run()


def test_tiled_online_softmax_equals_the_two_pass_softmax():
    check_online_softmax(nb_sm.online_softmax_forward)


# ------------------------------------------------------------------ cross-entropy
@paths
@given(
    n=rows, c=cols, dtype=st.sampled_from(DTYPES), scale=scales, seed=seeds,
    weighted=st.booleans(), smoothing=st.sampled_from([0.0, 0.1, 0.37, 1.0]),
    ignore_index=st.sampled_from([-100, 0, 3]), ignored_fraction=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_cross_entropy_matches_reference(path, n, c, dtype, scale, seed, weighted, smoothing, ignore_index, ignored_fraction):
    with on_path(path):
        rng = np.random.default_rng(seed)
        x = draw(seed, (n, c), dtype, scale)
        targets = rng.integers(0, c, n)
        targets[rng.random(n) < ignored_fraction] = ignore_index
        weight = (rng.uniform(0.2, 2.0, c) if weighted else np.ones(c)).astype(dtype)
        grad_rows = rng.standard_normal(n).astype(dtype)
        before = [x.copy(), targets.copy(), weight.copy(), grad_rows.copy()]
        options = dict(ignore_index=ignore_index, label_smoothing=smoothing)

        losses, lse = nb_ce.cross_entropy_forward(x, targets, weight, **options)
        want_losses, want_lse = ref.cross_entropy_forward(x, targets, weight, **options)
        assert losses.dtype == lse.dtype == x.dtype
        size = 10 + (np.abs(x).max() if x.size else 0)
        tol = dict(atol=2e-6 * size, rtol=1e-5) if dtype == np.float32 else dict(atol=1e-12 * size, rtol=1e-12)
        assert np.isfinite(losses).all() and np.isfinite(lse).all()
        np.testing.assert_allclose(lse, want_lse, **tol)
        np.testing.assert_allclose(losses, want_losses, **tol)

        dx = nb_ce.cross_entropy_backward(x, lse, targets, weight, grad_rows, **options)
        assert dx.dtype == x.dtype and np.isfinite(dx).all()
        np.testing.assert_allclose(dx, ref.cross_entropy_backward(x, want_lse, targets, weight, grad_rows, **options), **tol)
        ignored = targets == ignore_index
        assert (losses[ignored] == 0).all(), "an ignored row must have loss exactly 0"
        assert (dx[ignored] == 0).all(), "an ignored row must get exactly zero gradient"
        assert_unmodified(before, x, targets, weight, grad_rows)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_stays_finite_for_huge_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    targets = np.array([1, 0, 2])
    losses, lse = nb_ce.cross_entropy_forward(x, targets, np.ones(3, dtype), label_smoothing=0.1)
    dx = nb_ce.cross_entropy_backward(x, lse, targets, np.ones(3, dtype), np.ones(3, dtype), label_smoothing=0.1)
    assert np.isfinite(losses).all() and np.isfinite(dx).all()
    want = ref.cross_entropy_forward(x, targets, np.ones(3, dtype), label_smoothing=0.1)[0]
    np.testing.assert_allclose(losses, want, rtol=1e-6, atol=2e-6 * 1e4 if dtype == np.float32 else 1e-12 * 1e4)


# ------------------------------------------------------------------ layer norm
def check_layer_norm_kernel(layer_norm_forward):
    """A layer norm kernel agrees with the reference (biased variance) in y, mean and rstd."""

    @given(n=rows, d=cols, dtype=st.sampled_from(DTYPES), scale=scales, offset=st.sampled_from([0.0, 10.0]), seed=seeds)
    @example(n=4, d=8, dtype=np.float64, scale=1.0, offset=0.0, seed=0)
    def run(n, d, dtype, scale, offset, seed):
        x = draw(seed, (n, d), dtype, scale, offset)
        w, b = draw(seed + 1, (d,), dtype), draw(seed + 2, (d,), dtype)
        before = [x.copy(), w.copy(), b.copy()]
        got = layer_norm_forward(x, w, b)
        want = ref.layer_norm_forward(x, w, b)
        out_size = 1 + np.abs(w).max() * 4 + np.abs(b).max()
        for name, g, r, size in zip(["y", "mean", "rstd"], got, want, [out_size, scale * (1 + offset), 1 / scale]):
            assert g.dtype == x.dtype, name
            tol = 2e-5 if dtype == np.float32 else 1e-11
            np.testing.assert_allclose(g, r, atol=tol * size, rtol=tol, err_msg=f"layer norm {name}")
        assert_unmodified(before, x, w, b)

    run()


@paths
def test_layer_norm_forward_matches_reference(path):
    with on_path(path):
        check_layer_norm_kernel(nb_ln.layer_norm_forward)


@paths
@given(n=rows, d=cols, dtype=st.sampled_from(DTYPES), scale=scales, seed=seeds)
def test_layer_norm_backward_matches_reference(path, n, d, dtype, scale, seed):
    with on_path(path):
        x = draw(seed, (n, d), dtype, scale)
        w, g = draw(seed + 1, (d,), dtype), draw(seed + 2, (n, d), dtype)
        _, mean, rstd = ref.layer_norm_forward(x, w, np.zeros(d, dtype))
        before = [g.copy(), x.copy(), w.copy(), mean.copy(), rstd.copy()]
        got = nb_ln.layer_norm_backward(g, x, w, mean, rstd)
        want = ref.layer_norm_backward(g, x, w, mean, rstd)
        tol = 2e-5 if dtype == np.float32 else 1e-11
        # dx ~ |g w| rstd (rstd = 1/sqrt(var + eps) reaches 316 when D = 1 or x is tiny); dw, db sum n rows
        sizes = [np.abs(w).max() * 4 * (rstd.max() if n else 1), 4 * (1 + n), 1 + n]
        for name, a, r, size in zip(["dx", "dweight", "dbias"], got, want, sizes):
            assert a.dtype == x.dtype and a.shape == r.shape, name
            np.testing.assert_allclose(a, r, atol=tol * size, rtol=tol, err_msg=f"layer norm backward {name}")
        assert_unmodified(before, g, x, w, mean, rstd)


def test_layer_norm_backward_has_no_race_on_dweight():
    """Thousands of rows on the prange path, repeated: a race on a shared dw/db accumulator would lose
    updates (differently on each run); per-chunk partial sums give the reference, and the same bits every time."""
    x, g = draw(1, (4000, 33), np.float64), draw(2, (4000, 33), np.float64)
    w = draw(3, (33,), np.float64)
    _, mean, rstd = ref.layer_norm_forward(x, w, w)
    want = ref.layer_norm_backward(g, x, w, mean, rstd)
    with on_path("parallel"):
        runs = [nb_ln.layer_norm_backward(g, x, w, mean, rstd) for _ in range(3)]
    for got in runs:
        for a, r in zip(got, want):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(got[1], runs[0][1])


# ------------------------------------------------------------------ the checks catch the broken kernels
@pytest.mark.broken
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("check, bug", [
    (check_softmax_kernel, broken.softmax_without_max_subtraction),
    (check_online_softmax, broken.online_softmax_without_rescaling),
    (check_layer_norm_kernel, broken.layer_norm_with_unbiased_variance),
], ids=lambda f: f.__name__)
def test_check_catches_broken_kernel(check, bug):
    with pytest.raises(AssertionError):
        check(bug)


# ------------------------------------------------------------------ gradients through the Numba kernels
@pytest.fixture
def numba_rowwise_kernels(monkeypatch):
    """The reference kernel set with softmax, cross-entropy and layer norm replaced by the Numba ones."""
    names = {name: getattr(ref, name) for name in ref.__all__}
    names.update(
        softmax_forward=nb_sm.softmax_forward, softmax_backward=nb_sm.softmax_backward,
        cross_entropy_forward=nb_ce.cross_entropy_forward, cross_entropy_backward=nb_ce.cross_entropy_backward,
        layer_norm_forward=nb_ln.layer_norm_forward, layer_norm_backward=nb_ln.layer_norm_backward,
    )
    namespace = SimpleNamespace(**names)
    monkeypatch.setattr(kernels, "active", lambda array=None: namespace)
    return namespace


def _leaf(seed, shape, scale=1.0):
    return tgl.Tensor(draw(seed, shape, np.float64, scale), requires_grad=True)


@paths
def test_softmax_gradcheck_through_numba_kernels(numba_rowwise_kernels, path):
    with on_path(path):
        x = _leaf(0, (3, 4, 5), 2.0)
        assert gradcheck(lambda t: F.softmax(t, axis=-1), x)
        assert gradcheck(lambda t: F.softmax(t, axis=1), x)


@paths
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_gradcheck_through_numba_kernels(numba_rowwise_kernels, path, smoothing):
    with on_path(path):
        logits = _leaf(1, (6, 7), 2.0)
        target = np.array([0, 3, -1, 6, 2, -1])
        weight = np.linspace(0.5, 2.0, 7)
        fn = lambda t: F.cross_entropy(t, target, weight=weight, ignore_index=-1, label_smoothing=smoothing)
        assert gradcheck(fn, logits)
        fn(logits).backward()
        assert (logits.grad[target == -1] == 0).all()


@paths
def test_layer_norm_gradcheck_through_numba_kernels(numba_rowwise_kernels, path):
    with on_path(path):
        x, w, b = _leaf(2, (2, 3, 9), 3.0), _leaf(3, (9,)), _leaf(4, (9,))
        assert gradcheck(lambda x, w, b: F.layer_norm(x, 9, w, b), x, w, b)


# ------------------------------------------------------------------ threads
def test_parallel_kernels_run_on_the_workqueue_threading_layer(monkeypatch):
    if os.environ.get("NUMBA_THREADING_LAYER", "workqueue") != "workqueue":
        pytest.skip("the user chose another Numba threading layer")
    monkeypatch.setattr(fast_math, "PARALLEL_MIN_ELEMENTS", 0)
    nb_sm.softmax_forward(np.ones((4, 3), np.float32))
    assert numba.threading_layer() == "workqueue"


def test_parallel_kernel_alternating_with_blas_matmul_stays_correct(monkeypatch):
    """The pattern of a training step: BLAS matmul, a Numba parallel kernel, matmul again (timings in
    the benchmark, not here)."""
    monkeypatch.setattr(fast_math, "PARALLEL_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((128, 128), np.float32), rng.standard_normal((128, 128), np.float32)
    for _ in range(20):
        logits = a @ b
        y = nb_sm.softmax_forward(logits)
        np.testing.assert_allclose(y, ref.softmax_forward(logits), atol=1e-6, rtol=1e-5)
        a = (y @ b).astype(np.float32)
        a /= np.abs(a).max()
