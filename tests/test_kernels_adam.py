"""The fused Numba Adam/AdamW update is held to the NumPy reference (float32 and float64, any shape, with and
without decoupled decay, early and late steps), updates its buffers in place, and falls back to the reference
for non-contiguous parameters. Float32 to 1e-6 absolute + 1e-5 relative (fastmath may reorder), float64 to 1e-12."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinygrad_llm.kernels import reference as ref
from tinygrad_llm.kernels.numba_cpu import adam as nb_adam

pytestmark = pytest.mark.kernels

TOLERANCE = {np.float32: (1e-6, 1e-5), np.float64: (1e-12, 1e-12)}


def state(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    param, grad = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    exp_avg = (0.1 * rng.standard_normal(shape)).astype(dtype)
    exp_avg_sq = (0.1 * rng.standard_normal(shape) ** 2).astype(dtype)
    return param, grad, exp_avg, exp_avg_sq


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=20), seed=st.integers(0, 2**32 - 1),
       step=st.sampled_from([1, 2, 10, 1000]), weight_decay=st.sampled_from([0.0, 0.1]),
       lr=st.sampled_from([1e-4, 1e-3, 3e-2]))
def test_fused_adam_matches_the_reference(dtype, shape, seed, step, weight_decay, lr):
    expected = [a.copy() for a in state(shape, dtype, seed)]
    got = [a.copy() for a in state(shape, dtype, seed)]
    ref.adam_update(*expected, lr, 0.9, 0.99, 1e-8, step, weight_decay)
    nb_adam.adam_update(*got, lr, 0.9, 0.99, 1e-8, step, weight_decay)
    atol, rtol = TOLERANCE[dtype]
    for name, e, g in zip(("param", "grad", "exp_avg", "exp_avg_sq"), expected, got):
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g, e, atol=atol, rtol=rtol, err_msg=name)


def test_the_first_step_moves_every_coordinate_by_about_lr():
    """Bias correction: at step 1, m_hat / sqrt(v_hat) = g / |g|, so each weight moves by lr (eps aside)."""
    param, grad = np.zeros(5, dtype=np.float32), np.array([3.0, -0.01, 1e3, -2.0, 0.5], dtype=np.float32)
    nb_adam.adam_update(param, grad, np.zeros(5, np.float32), np.zeros(5, np.float32), 1e-3, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_allclose(param, -1e-3 * np.sign(grad), rtol=1e-4)


def test_a_non_contiguous_parameter_is_still_updated_in_place():
    param, grad, exp_avg, exp_avg_sq = state((6, 4), np.float64, 0)
    expected = [a.copy() for a in (param, grad, exp_avg, exp_avg_sq)]
    ref.adam_update(expected[0].T, expected[1].T, expected[2].T, expected[3].T, 1e-2, 0.9, 0.99, 1e-8, 3, 0.1)
    nb_adam.adam_update(param.T, grad.T, exp_avg.T, exp_avg_sq.T, 1e-2, 0.9, 0.99, 1e-8, 3, 0.1)
    np.testing.assert_allclose(param, expected[0], atol=1e-12)
    np.testing.assert_allclose(exp_avg_sq, expected[3], atol=1e-12)
