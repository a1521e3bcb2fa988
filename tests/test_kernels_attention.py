"""The flash-style Numba attention kernel (kernels/numba_cpu/attention.py) held to the NumPy reference.

Every check here is a function of an implementation, run on the reference, on the Numba kernel and on
the broken variants of tests/broken_kernels_attention.py (each of which must fail it).

Tolerances, against the reference evaluated in float64 on the same inputs (the oracle), with
S = max |score| (scores grow with the inputs' magnitude, and so does their rounding error):
    float64: |out - oracle| <= 1e-13 (1 + S) max|V|     gradients: 1e-13 (1 + S) times a bound on their size
    float32: |out - oracle| <= 2e-6  (1 + S) max|V|     gradients: 2e-6  (1 + S) times the same bound
(600 drawn cases used at most 1/6 of these.)
lse: the same with max|V| replaced by 1. Fully masked queries: out exactly 0, lse exactly -inf, grads 0.
"""
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
import tinygrad_llm.kernels as kernels
from tinygrad_llm import device
from tinygrad_llm.kernels import reference
from tinygrad_llm.kernels.numba_cpu import attention as numba_attention
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

import broken_kernels_attention as broken

pytestmark = pytest.mark.kernels

TOL = {np.float64: (1e-13, 1e-13), np.float32: (2e-6, 2e-6)}   # (forward, gradients), see the docstring


# ------------------------------------------------------------------ implementations, one calling convention
# forward(q, k, v, causal, padding_mask, tiles) -> (out, lse); tiles = (block_q, block_k) for tiled ones.
def reference_forward(q, k, v, causal, padding_mask, tiles):
    return reference.attention_forward(q, k, v, causal, padding_mask)


def numba_forward(q, k, v, causal, padding_mask, tiles):
    return numba_attention.attention_forward(q, k, v, causal, padding_mask, block_q=tiles[0], block_k=tiles[1])


def reference_backward(q, k, v, out, lse, g, causal, padding_mask, tiles):
    return reference.attention_backward(q, k, v, out, lse, g, causal, padding_mask)


def numba_backward(q, k, v, out, lse, g, causal, padding_mask, tiles):
    return numba_attention.attention_backward(q, k, v, out, lse, g, causal, padding_mask,
                                              block_q=tiles[0], block_k=tiles[1])


def numpy_tiled_forward(q, k, v, causal, padding_mask, tiles):
    return broken.tiled_attention_forward(q, k, v, causal, padding_mask, block_k=tiles[1])


def _contract_only(fn):
    """A broken forward that knows nothing of tiles."""
    return lambda q, k, v, causal, padding_mask, tiles: fn(q, k, v, causal, padding_mask)


def _on_gpu(fn, *arrays, padding_mask=None, **options):
    """fn (a GPU kernel) on device copies of the NumPy arrays and mask; results back on the host."""
    cupy = device.cupy_module()
    mask = None if padding_mask is None else cupy.asarray(padding_mask)
    result = fn(*(cupy.asarray(a) for a in arrays), padding_mask=mask, **options)
    return tuple(cupy.asnumpy(r) for r in result)


def cupy_forward(q, k, v, causal, padding_mask, tiles):
    """The CUDA kernel (its tile sizes are fixed in kernels/cuda/attention.cu: `tiles` does not apply)."""
    return _on_gpu(kernels._gpu_kernels().attention_forward, q, k, v, causal=causal, padding_mask=padding_mask)


def cupy_backward(q, k, v, out, lse, g, causal, padding_mask, tiles):
    return _on_gpu(kernels._gpu_kernels().attention_backward, q, k, v, out, lse, g, causal=causal,
                   padding_mask=padding_mask)


FORWARDS = {"reference": reference_forward, "numba": numba_forward, "cupy": cupy_forward}
BACKWARDS = {"reference": reference_backward, "numba": numba_backward, "cupy": cupy_backward}


# ------------------------------------------------------------------ inputs
@st.composite
def cases(draw, causal=None, padding=None, dtype=None, square=False):
    """A dict of inputs; arrays come from a drawn seed (fast to draw, shrinks to small shapes)."""
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    Tq, Tk, D = draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 24))
    if square:
        Tk = Tq = max(Tq, 2)
    dtype = draw(st.sampled_from([np.float32, np.float64])) if dtype is None else dtype
    causal = draw(st.booleans()) if causal is None else causal
    magnitude = draw(st.sampled_from([1e-3, 1.0, 1.0, 8.0]))
    # Small tiles (not dividing T) exercise many tiles, partial tiles and the online rescaling.
    tiles = draw(st.sampled_from([(64, 64), (1, 1), (3, 5), (4, 4), (7, 3), (16, 8)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q, k, v, g = (rng.standard_normal(shape) * magnitude for shape in
                  [(B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, D), (B, H, Tq, D)])
    if draw(st.booleans()):      # keys of increasing score: the running max rises tile after tile
        k = k + np.linspace(0, 4 * magnitude, Tk)[None, None, :, None] * np.sign(q.mean(axis=2, keepdims=True))
    padding_mask = None
    if padding if padding is not None else draw(st.booleans()):
        padding_mask = rng.random((B, Tk)) < draw(st.sampled_from([0.2, 0.5, 1.0]))
    return dict(q=q.astype(dtype), k=k.astype(dtype), v=v.astype(dtype), g=g.astype(dtype), causal=causal,
                padding_mask=padding_mask, tiles=tiles, dtype=dtype)


def oracle(c):
    """The reference, in float64, on the same (possibly float32) inputs."""
    q, k, v, g = (c[n].astype(np.float64) for n in "qkvg")
    out, lse = reference.attention_forward(q, k, v, c["causal"], c["padding_mask"])
    grads = reference.attention_backward(q, k, v, out, lse, g, c["causal"], c["padding_mask"])
    return out, lse, grads


def score_size(c):
    q, k = c["q"].astype(np.float64), c["k"].astype(np.float64)
    return float(np.abs(q @ np.swapaxes(k, -1, -2)).max()) / np.sqrt(q.shape[-1])


def assert_close(name, got, expected, atol):
    assert got.shape == expected.shape, f"{name}: shape {got.shape}, expected {expected.shape}"
    assert np.all(np.isfinite(got) | np.isneginf(expected)), f"{name}: non-finite values"
    with np.errstate(invalid="ignore"):
        err = np.abs(np.where(np.isfinite(expected), got.astype(np.float64) - expected, 0))
    assert err.max(initial=0) <= atol, f"{name}: max error {err.max():.3g} > tolerance {atol:.3g}"


# ------------------------------------------------------------------ the checks (functions of an implementation)
def check_forward(forward):
    @given(cases())
    def run(c):
        out, lse = forward(c["q"], c["k"], c["v"], c["causal"], c["padding_mask"], c["tiles"])
        assert out.dtype == c["dtype"] and lse.dtype == c["dtype"]
        ref_out, ref_lse, _ = oracle(c)
        tol = TOL[c["dtype"]][0] * (1 + score_size(c))
        assert_close("out", out, ref_out, tol * np.abs(c["v"]).max())
        assert_close("lse", lse, ref_lse, tol)
        assert np.array_equal(np.isneginf(lse), np.isneginf(ref_lse)), "lse must be -inf exactly where a query sees no key"
    run()


def check_backward(backward):
    @given(cases())
    def run(c):
        ref_out, ref_lse, ref_grads = oracle(c)
        dt = c["dtype"]
        grads = backward(c["q"], c["k"], c["v"], ref_out.astype(dt), ref_lse.astype(dt), c["g"], c["causal"],
                         c["padding_mask"], c["tiles"])
        q, k, v, g = (np.abs(c[n]).max() for n in "qkvg")
        B, H, Tq, D = c["q"].shape
        Tk = c["k"].shape[2]
        d_scores = 2 * g * v * D               # |dP - D_i| bound; dS = P (dP - D_i)
        bounds = (d_scores * Tk * k / np.sqrt(D), d_scores * Tq * q / np.sqrt(D), g * Tq)  # dq, dk, dv
        tol = TOL[dt][1] * (1 + score_size(c))
        for name, got, expected, bound in zip(("dq", "dk", "dv"), grads, ref_grads, bounds):
            assert got.dtype == dt
            assert_close(name, got, expected, tol * bound)
    run()


def check_causal_prefix(forward):
    """Outputs at positions <= t do not depend on tokens after t."""
    @given(cases(causal=True, padding=False, square=True), st.data())
    def run(c, data):
        q, k, v = c["q"], c["k"], c["v"]
        t = data.draw(st.integers(0, q.shape[2] - 2))
        out, _ = forward(q, k, v, True, None, c["tiles"])
        q2, k2, v2 = q.copy(), k.copy(), v.copy()
        for x in (q2, k2, v2):
            x[:, :, t + 1:] = np.random.default_rng(t).standard_normal(x[:, :, t + 1:].shape) * 10
        out2, _ = forward(q2, k2, v2, True, None, c["tiles"])
        np.testing.assert_allclose(out2[:, :, :t + 1], out[:, :, :t + 1], rtol=1e-5, atol=1e-6 * np.abs(v).max())
    run()


def check_key_permutation(forward):
    """Unmasked attention is equivariant to permuting keys and values together: the output is unchanged."""
    @given(cases(causal=False), st.data())
    def run(c, data):
        perm = data.draw(st.permutations(range(c["k"].shape[2])))
        pm = c["padding_mask"]
        out, _ = forward(c["q"], c["k"], c["v"], False, pm, c["tiles"])
        out2, _ = forward(c["q"], c["k"][:, :, perm], c["v"][:, :, perm], False,
                          None if pm is None else pm[:, perm], c["tiles"])
        np.testing.assert_allclose(out2, out, rtol=1e-4, atol=1e-5 * (1 + score_size(c)) * np.abs(c["v"]).max())
    run()


def check_padding_ignored(forward):
    """Padded keys are ignored entirely: their values change nothing, and the output equals attention over
    the unpadded keys only (a query that sees none gives zeros)."""
    @given(cases(padding=True), st.data())
    def run(c, data):
        q, k, v, pm = c["q"], c["k"], c["v"], c["padding_mask"]
        out, _ = forward(q, k, v, c["causal"], pm, c["tiles"])
        k2, v2 = k.copy(), v.copy()
        k2[np.broadcast_to(pm[:, None, :, None], k.shape)] = 1e3
        v2[np.broadcast_to(pm[:, None, :, None], v.shape)] = -1e3
        out2, _ = forward(q, k2, v2, c["causal"], pm, c["tiles"])
        assert np.array_equal(out, out2) or np.allclose(out, out2, rtol=1e-6, atol=1e-7 * np.abs(v).max())
        if not c["causal"]:
            for b in range(q.shape[0]):
                keep = ~pm[b]
                if keep.any():
                    sub, _ = forward(q[b:b + 1], k[b:b + 1, :, keep], v[b:b + 1, :, keep], False, None, c["tiles"])
                    expected = sub[0]
                else:
                    expected = np.zeros_like(out[b])
                np.testing.assert_allclose(out[b], expected, rtol=1e-4, atol=1e-5 * (1 + score_size(c)) * np.abs(v).max())
    run()


def check_fully_masked_queries(forward, backward):
    """A query that sees no key gets zeros (not NaN), lse = -inf, and zero gradients."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        # causal with Tq > Tk: queries 0..Tq-Tk-1 come before every key
        q, g = (rng.standard_normal((2, 2, 7, 5)).astype(dtype) for _ in range(2))
        k, v = (rng.standard_normal((2, 2, 3, 5)).astype(dtype) for _ in range(2))
        pm = np.zeros((2, 3), dtype=bool)
        pm[1] = True                              # batch 1: every key is padding
        for causal, mask in ((True, None), (False, pm), (True, pm)):
            out, lse = forward(q, k, v, causal, mask, (2, 2))
            hidden = np.zeros((2, 2, 7), dtype=bool)
            if causal:
                hidden[:, :, :4] = True
            if mask is not None:
                hidden[1] = True
            assert not np.isnan(out).any() and not np.isnan(lse).any()
            assert np.all(out[hidden] == 0) and np.all(np.isneginf(lse[hidden])) and np.isfinite(lse[~hidden]).all()
            dq, dk, dv = backward(q, k, v, out, lse, g, causal, mask, (2, 2))
            assert all(np.isfinite(x).all() for x in (dq, dk, dv))
            assert np.all(dq[hidden] == 0)
            if mask is not None:
                assert np.all(dk[1] == 0) and np.all(dv[1] == 0)


# ------------------------------------------------------------------ the kernel and the reference pass them
# The GPU kernel is held to the same checks on a machine with CUDA (skipped elsewhere, with the reason).
IMPLS = ["reference", "numba", pytest.param("cupy", marks=pytest.mark.skipif(
    not device.cuda_is_available(), reason="no usable GPU (CuPy, a driver and a visible device are needed)"))]


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_the_reference(impl):
    check_forward(FORWARDS[impl])


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_matches_the_reference(impl):
    check_backward(BACKWARDS[impl])


def test_numpy_tiled_online_softmax_matches_the_two_pass_softmax():
    check_forward(numpy_tiled_forward)


@pytest.mark.attention
@pytest.mark.parametrize("impl", IMPLS)
def test_causal_outputs_do_not_see_later_tokens(impl):
    check_causal_prefix(FORWARDS[impl])


@pytest.mark.attention
@pytest.mark.parametrize("impl", IMPLS)
def test_unmasked_attention_is_equivariant_to_permuting_keys(impl):
    check_key_permutation(FORWARDS[impl])


@pytest.mark.attention
@pytest.mark.parametrize("impl", IMPLS)
def test_padded_keys_are_ignored_entirely(impl):
    check_padding_ignored(FORWARDS[impl])


@pytest.mark.attention
@pytest.mark.parametrize("impl", IMPLS)
def test_fully_masked_queries_give_zeros_not_nan(impl):
    check_fully_masked_queries(FORWARDS[impl], BACKWARDS[impl])


@pytest.fixture
def numba_attention_active(monkeypatch):
    """Every op on the reference kernels except attention, which runs the Numba kernel."""
    kernel_set = types.SimpleNamespace(**{name: getattr(reference, name) for name in reference.__all__})
    kernel_set.attention_forward = numba_attention.attention_forward
    kernel_set.attention_backward = numba_attention.attention_backward
    monkeypatch.setattr(kernels, "active", lambda array=None: kernel_set)


@pytest.mark.parametrize("causal, padded, tq, tk", [(False, False, 3, 4), (True, False, 4, 4), (True, True, 3, 5)])
def test_gradients_through_the_numba_kernel_pass_gradcheck(numba_attention_active, causal, padded, tq, tk):
    rng = np.random.default_rng(tq * 10 + tk)
    q, k, v = (tgl.tensor(rng.standard_normal(shape), requires_grad=True) for shape in [(1, 2, tq, 3), (1, 2, tk, 3), (1, 2, tk, 3)])
    mask = np.array([[False, True] + [False] * (tk - 2)]) if padded else None
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=causal, padding_mask=mask), q, k, v)


def test_the_kernel_keeps_the_dtype_and_rejects_mixed_dtypes():
    q = np.ones((1, 1, 2, 3), dtype=np.float32)
    out, lse = numba_attention.attention_forward(q, q, q)
    assert out.dtype == lse.dtype == np.float32
    with pytest.raises(TypeError, match="float32 or all float64"):
        numba_attention.attention_forward(q, q.astype(np.float64), q)


# ------------------------------------------------------------------ ... and every broken variant fails them
BROKEN = [
    (check_forward, _contract_only(broken.attention_without_scaling)),
    (check_forward, _contract_only(broken.causal_mask_off_by_one)),
    (check_causal_prefix, _contract_only(broken.causal_mask_off_by_one)),
    (check_forward, lambda q, k, v, causal, pm, tiles: broken.online_softmax_without_rescaling(q, k, v, causal, pm, block_k=tiles[1])),
    (check_backward, lambda q, k, v, out, lse, g, causal, pm, tiles: broken.attention_backward_without_softmax_jacobian(q, k, v, out, lse, g, causal, pm)),
]
BROKEN_NAMES = ["missing_scale", "causal_off_by_one", "causal_off_by_one_prefix", "no_rescaling", "no_softmax_jacobian"]


@pytest.mark.broken
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("check, broken_impl", BROKEN, ids=BROKEN_NAMES)
def test_the_checks_catch_the_broken_variant(check, broken_impl):
    with pytest.raises(AssertionError):
        check(broken_impl)
