"""Kernel-set switching and the attention op (here on the reference kernels; numba is held to these
results in the test_kernels_* files)."""
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_llm as tgl
from tinygrad_llm import kernels
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

pytestmark = pytest.mark.kernels


def leaf(shape, seed):
    return tgl.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


@pytest.fixture
def reference_kernels():
    previous = kernels.get_kernels()
    yield kernels.set_kernels("reference")
    kernels.set_kernels(previous)


def test_unknown_kernel_set_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown kernel set 'cuda'.*choose one of"):
        tgl.set_kernels("cuda")


def test_environment_variable_chooses_the_kernel_set():
    code = "import tinygrad_llm as tgl; print(tgl.get_kernels())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "TGL_KERNELS": "reference"})
    assert out.stdout.strip() == "reference"


@pytest.mark.attention
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_gradients_match_finite_differences(reference_kernels, causal, padded):
    q, k, v = leaf((2, 2, 3, 4), 0), leaf((2, 2, 5, 4), 1), leaf((2, 2, 5, 4), 2)
    padding = np.zeros((2, 5), dtype=bool)
    if padded:
        padding[1, 3:] = True
    gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=causal, padding_mask=padding), q, k, v)


@pytest.mark.attention
def test_attention_equals_softmax_of_scaled_scores(reference_kernels):
    q, k, v = leaf((1, 2, 4, 8), 3), leaf((1, 2, 4, 8), 4), leaf((1, 2, 4, 8), 5)
    scores = F.softmax((q @ k.transpose(-2, -1)) / np.sqrt(8), axis=-1)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v).data, (scores @ v).data, rtol=1e-12)


@pytest.mark.attention
def test_a_query_that_sees_no_key_gets_zeros_not_nan(reference_kernels):
    q, k, v = leaf((1, 1, 2, 3), 6), leaf((1, 1, 2, 3), 7), leaf((1, 1, 2, 3), 8)
    out = F.scaled_dot_product_attention(q, k, v, padding_mask=np.array([[True, True]]))
    assert np.array_equal(out.data, np.zeros((1, 1, 2, 3)))
    out.sum().backward()
    assert np.isfinite(q.grad).all() and np.isfinite(k.grad).all()


@pytest.mark.attention
@pytest.mark.parametrize("shapes, mask, match", [
    (((2, 4, 8), (1, 2, 4, 8), (1, 2, 4, 8)), None, r"must be \(B, H, T, D\)"),
    (((1, 2, 4, 8), (1, 2, 4, 6), (1, 2, 4, 6)), None, "must share B, H and D"),
    (((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 4, 8)), None, "must share B, H and D"),
    (((1, 2, 4, 8), (1, 2, 4, 8), (1, 2, 4, 8)), np.zeros((1, 3), dtype=bool), r"padding_mask must be \(B, Tk\)"),
])
def test_attention_bad_shapes_name_the_problem(shapes, mask, match):
    q, k, v = (tgl.zeros(*s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        F.scaled_dot_product_attention(q, k, v, padding_mask=mask)


def test_numba_kernels_run_as_plain_python_with_the_jit_disabled():
    """NUMBA_DISABLE_JIT=1 turns every Numba kernel into ordinary Python, to step through in a debugger."""
    code = """
import numpy as np
from tinygrad_llm.kernels import numba_cpu as N, reference as R
from tinygrad_llm.kernels.numba_cpu.blocked_matmul import matmul
rng = np.random.default_rng(0)
x, w = rng.standard_normal((3, 5)), np.ones(5)
t, g = np.array([0, 4, 2]), np.full(3, 1 / 3)
q, k, v, do = (rng.standard_normal((1, 2, 4, 3)) for _ in range(4))
pairs = [
    (N.softmax_forward(x), R.softmax_forward(x)),
    (N.cross_entropy_forward(x, t, w)[0], R.cross_entropy_forward(x, t, w)[0]),
    (N.layer_norm_forward(x, w, w)[0], R.layer_norm_forward(x, w, w)[0]),
    (matmul(x, x.T), x @ x.T),
]
out, lse = N.attention_forward(q, k, v, causal=True)
pairs += [(out, R.attention_forward(q, k, v, causal=True)[0])]
pairs += list(zip(N.attention_backward(q, k, v, out, lse, do, causal=True),
                  R.attention_backward(q, k, v, out, lse, do, causal=True)))
print(max(float(np.abs(a - b).max()) for a, b in pairs))
"""
    env = {**__import__("os").environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout) < 1e-9
