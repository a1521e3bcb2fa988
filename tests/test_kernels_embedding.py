"""The embedding backward (scatter-add by token id): the Numba kernel is held to the NumPy reference, repeated
ids add up, and the embedding op's gradient passes the gradient check on every kernel set. Sums of the same
numbers in the same order: float32 to 1e-5, float64 to 1e-12."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.kernels import reference as ref
from tinygrad_llm.kernels.numba_cpu import embedding as nb_embedding
from tinygrad_llm.nn import functional as F
from tinygrad_llm.testing import gradcheck

pytestmark = pytest.mark.kernels

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12), rows=st.integers(1, 9),
       width=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_numba_embedding_backward_matches_the_reference(dtype, shape, rows, width, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, rows, shape)                      # few rows: ids repeat
    grad_out = rng.standard_normal(shape + (width,)).astype(dtype)
    got = nb_embedding.embedding_backward(ids, grad_out, rows)
    assert got.dtype == dtype and got.shape == (rows, width)
    np.testing.assert_allclose(got, ref.embedding_backward(ids, grad_out, rows), atol=TOLERANCE[dtype],
                               rtol=TOLERANCE[dtype])


@pytest.mark.parametrize("kernel_set", ["reference", "numba"])
def test_a_repeated_token_gets_the_sum_of_its_gradients(kernel_set):
    """Token 2 appears three times: its row's gradient is the sum of three rows of the upstream gradient, not the
    last one (what `grad[ids] = g` and `grad[ids] += g` would give)."""
    kernels = {"reference": ref, "numba": nb_embedding}[kernel_set]
    ids = np.array([[2, 0, 2], [2, 1, 0]])
    grad_out = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    grad = kernels.embedding_backward(ids, grad_out, 4)
    np.testing.assert_array_equal(grad, [[2 + 10, 3 + 11], [8, 9], [0 + 4 + 6, 1 + 5 + 7], [0, 0]])


@pytest.mark.parametrize("kernel_set", ["reference", "numba"])
def test_embedding_gradient_passes_the_gradient_check_and_equals_plain_indexing(kernel_set):
    previous = tgl.get_kernels()
    tgl.set_kernels(kernel_set)
    try:
        rng = np.random.default_rng(0)
        weight = tgl.tensor(rng.standard_normal((5, 3)), requires_grad=True)
        ids = rng.integers(0, 5, (4, 6))
        assert gradcheck(lambda w: (F.embedding(ids, w) ** 2).sum(), weight)
        upstream = rng.standard_normal((4, 6, 3))
        weight.grad = None                                      # gradcheck's own backward left one
        (F.embedding(ids, weight) * tgl.tensor(upstream)).sum().backward()
        through_op = weight.grad.copy()
        weight.grad = None
        (weight[ids] * tgl.tensor(upstream)).sum().backward()   # the generic indexing op's np.add.at
        np.testing.assert_allclose(through_op, weight.grad, atol=1e-12)
    finally:
        tgl.set_kernels(previous)


def test_embedding_refuses_a_table_that_is_not_two_dimensional():
    with pytest.raises(ValueError, match=r"\(num_embeddings, embedding_dim\)"):
        F.embedding(np.array([0]), tgl.tensor(np.zeros(4)))
