"""The Numba GELU kernel is held to the NumPy reference (both curves, forward and backward, float32 and
float64, tiny to huge inputs), and the GELU op's gradient passes the float64 gradient check on every kernel
set. The kernel computes in float64 and rounds once, so it is compared with the reference evaluated in
float64 (in float32 the reference's own 1 - tanh^2 cancels badly for large |x|). Tolerances: float32
1e-6 + 1e-5 relative; float64 1e-13 + 1e-12 relative."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.kernels import reference as ref
from tinygrad_llm.kernels.numba_cpu import gelu as nb_gelu
from tinygrad_llm.testing import gradcheck

pytestmark = pytest.mark.kernels

TOLERANCE = {np.float32: (1e-6, 1e-5), np.float64: (1e-13, 1e-12)}


def inputs(dtype):
    scale = st.sampled_from([1e-4, 1.0, 5.0, 1e4])
    shape = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40)
    return st.tuples(shape, scale, st.integers(0, 2**32 - 1)).map(
        lambda t: (np.random.default_rng(t[2]).standard_normal(t[0]) * t[1]).astype(dtype))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_numba_gelu_matches_the_reference(approximate, dtype, data):
    x = data.draw(inputs(dtype))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    atol, rtol = TOLERANCE[dtype]
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    out = nb_gelu.gelu_forward(x, approximate)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, ref.gelu_forward(x64, approximate), atol=atol, rtol=rtol)
    np.testing.assert_allclose(nb_gelu.gelu_backward(x, g, approximate), ref.gelu_backward(x64, g64, approximate),
                               atol=atol, rtol=rtol)


@pytest.mark.parametrize("kernel_set", ["reference", "numba"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradient_passes_the_gradient_check_on_every_kernel_set(kernel_set, approximate):
    previous = tgl.get_kernels()
    tgl.set_kernels(kernel_set)
    try:
        x = tgl.tensor(np.random.default_rng(0).standard_normal((3, 7)) * 3, requires_grad=True)
        assert gradcheck(lambda a: a.gelu(approximate=approximate), x)
    finally:
        tgl.set_kernels(previous)


def test_a_wrong_curve_name_says_which_exist():
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        nb_gelu.gelu_forward(np.zeros(3), "erf")
