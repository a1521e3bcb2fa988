"""The chapter 15 exercises (online softmax, blocked matmul, attention backward, roofline): every reference passes
as printed, every starter reports "not implemented yet", and classic wrong answers are rejected by the property
that names their bug. The wrong answers are real functions, named after the bug (spot-the-bug material).
"""

import math

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.kernels import attention_output, attention_probabilities, two_pass_softmax
from tinygrad_llm.kernels.reference import attention as reference_attention

pytestmark = [pytest.mark.exercises, pytest.mark.kernels]

KERNEL_EXERCISES = ["online_softmax", "blocked_matmul", "attention_backward", "kernel_roofline"]

# ---- online_softmax --------------------------------------------------------------------------------------

def _streaming_softmax(x, chunk_size, *, rescale=True, update_max=True):
    """The one-pass softmax with a switch per classic bug; each wrong answer below flips one."""
    m = np.full(x.shape[:-1] + (1,), -np.inf)
    s = np.zeros(x.shape[:-1] + (1,))
    for start in range(0, x.shape[-1], chunk_size):
        chunk = x[..., start:start + chunk_size]
        m_new = np.maximum(m, chunk.max(axis=-1, keepdims=True)) if update_max or start == 0 else m
        shift = np.where(np.isfinite(m_new), m_new, 0.0)
        s = (s * np.exp(m - shift) if rescale else s) + np.exp(chunk - shift).sum(axis=-1, keepdims=True)
        m = m_new
    return np.exp(x - m) / s


def online_softmax_without_rescaling(x, chunk_size):
    return _streaming_softmax(x, chunk_size, rescale=False)


def online_softmax_max_from_first_chunk_only(x, chunk_size):
    return _streaming_softmax(x, chunk_size, update_max=False)


def online_softmax_nan_on_a_fully_masked_chunk(x, chunk_size):
    m = np.full(x.shape[:-1] + (1,), -np.inf)
    s = np.zeros(x.shape[:-1] + (1,))
    for start in range(0, x.shape[-1], chunk_size):
        chunk = x[..., start:start + chunk_size]
        m_new = np.maximum(m, chunk.max(axis=-1, keepdims=True))
        s = s * np.exp(m - m_new) + np.exp(chunk - m_new).sum(axis=-1, keepdims=True)
        m = m_new
    return np.exp(x - m) / s


# ---- blocked_matmul --------------------------------------------------------------------------------------

def blocked_matmul_drops_remainder(A, B, block):
    (M, K), N = A.shape, B.shape[1]
    C = np.zeros((M, N))
    for i in range(M // block):
        for j in range(N // block):
            for k in range(K // block):
                rows, cols, inner = (slice(b * block, (b + 1) * block) for b in (i, j, k))
                C[rows, cols] += A[rows, inner] @ B[inner, cols]
    return C


def blocked_matmul_overwrites_partial_sums(A, B, block):
    (M, K), N = A.shape, B.shape[1]
    C = np.zeros((M, N))
    for i in range(0, M, block):
        for j in range(0, N, block):
            for k in range(0, K, block):
                C[i:i + block, j:j + block] = A[i:i + block, k:k + block] @ B[k:k + block, j:j + block]
    return C


def blocked_matmul_k_loop_runs_to_M(A, B, block):
    (M, K), N = A.shape, B.shape[1]
    C = np.zeros((M, N))
    for i in range(0, M, block):
        for j in range(0, N, block):
            for k in range(0, M, block):
                C[i:i + block, j:j + block] += A[i:i + block, k:k + block] @ B[k:k + block, j:j + block]
    return C


# ---- attention_backward ----------------------------------------------------------------------------------

def _attention_backward(q, k, v, out, d_out, *, jacobian=True, scaled=True):
    scale = 1.0 / np.sqrt(q.shape[-1]) if scaled else 1.0
    p = attention_probabilities(q, k)
    dp = d_out @ v.T
    ds = p * (dp - (d_out * out).sum(axis=-1, keepdims=True)) if jacobian else p * dp
    return ds @ k * scale, ds.T @ q * scale, p.T @ d_out


def attention_backward_without_jacobian_term(q, k, v, out, d_out):
    return _attention_backward(q, k, v, out, d_out, jacobian=False)


def attention_backward_missing_scale(q, k, v, out, d_out):
    return _attention_backward(q, k, v, out, d_out, scaled=False)


def attention_backward_dv_not_transposed(q, k, v, out, d_out):
    dq, dk, _ = _attention_backward(q, k, v, out, d_out)
    return dq, dk, attention_probabilities(q, k) @ d_out


# ---- kernel_roofline -------------------------------------------------------------------------------------

def _roofline(kernel, shape, dtype_bytes, peak_flops, bandwidth, *, flops_per_term=2, inverted=False,
              memory_roof=True):
    if kernel == "matmul":
        m, k, n = shape
        flops, elements = flops_per_term * m * k * n, m * k + k * n + m * n
    else:
        rows, cols = shape
        flops, elements = 5 * rows * cols, 2 * rows * cols
    bytes_moved = dtype_bytes * elements
    intensity = bytes_moved / flops if inverted else flops / bytes_moved
    attainable = min(peak_flops, intensity * bandwidth) if memory_roof else peak_flops
    bound = "memory" if intensity * bandwidth < peak_flops else "compute"
    return flops, bytes_moved, intensity, attainable, bound


def roofline_counts_multiply_add_as_one_flop(kernel, shape, dtype_bytes, peak_flops, bandwidth):
    return _roofline(kernel, shape, dtype_bytes, peak_flops, bandwidth, flops_per_term=1)


def roofline_ignores_bandwidth(kernel, shape, dtype_bytes, peak_flops, bandwidth):
    return _roofline(kernel, shape, dtype_bytes, peak_flops, bandwidth, memory_roof=False)


def roofline_intensity_inverted(kernel, shape, dtype_bytes, peak_flops, bandwidth):
    return _roofline(kernel, shape, dtype_bytes, peak_flops, bandwidth, inverted=True)


def roofline_softmax_counts_reads_only(kernel, shape, dtype_bytes, peak_flops, bandwidth):
    flops, bytes_moved, _, _, _ = _roofline(kernel, shape, dtype_bytes, peak_flops, bandwidth)
    if kernel == "softmax":
        bytes_moved //= 2
    intensity = flops / bytes_moved
    return (flops, bytes_moved, intensity, min(peak_flops, intensity * bandwidth),
            "memory" if intensity * bandwidth < peak_flops else "compute")


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("online_softmax", online_softmax_without_rescaling, "rescaled by exp(m_old - m_new)"),
    ("online_softmax", online_softmax_max_from_first_chunk_only, "largest logit seen so far"),
    ("online_softmax", online_softmax_nan_on_a_fully_masked_chunk, "whole chunk is masked"),
    ("blocked_matmul", blocked_matmul_overwrites_partial_sums, "accumulates over the k blocks"),
    ("blocked_matmul", blocked_matmul_drops_remainder, "remainder blocks"),
    ("blocked_matmul", blocked_matmul_k_loop_runs_to_M, "accumulates over the k blocks"),
    ("attention_backward", attention_backward_without_jacobian_term, "dk sums to 0"),
    ("attention_backward", attention_backward_missing_scale, "finite differences"),
    ("attention_backward", attention_backward_dv_not_transposed, "shapes"),
    ("kernel_roofline", roofline_counts_multiply_add_as_one_flop, "2*M*K*N"),
    ("kernel_roofline", roofline_ignores_bandwidth, "both roofs"),
    ("kernel_roofline", roofline_intensity_inverted, "flops / bytes_moved"),
    ("kernel_roofline", roofline_softmax_counts_reads_only, "matches the reference counts"),
]


def test_the_kernel_exercises_are_registered():
    """Their reference solutions, starter code and WRONG_ANSWERS above are graded in test_exercises.py, with
    every other exercise of the bank."""
    names = [name for name, _ in ex.list_exercises()]
    assert all(name in names for name in KERNEL_EXERCISES)


def test_online_softmax_reference_equals_two_pass_for_every_chunk_size():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 11)) * 50
    x[0, :4] = -np.inf  # a fully masked first chunk for chunk sizes up to 4
    online = ex.get_exercise("online_softmax").reference
    for chunk_size in range(1, 13):
        np.testing.assert_allclose(online(x, chunk_size), two_pass_softmax(x), rtol=1e-12, atol=0)


def test_blocked_matmul_reference_equals_numpy_matmul():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(13, 7)), rng.normal(size=(7, 10))
    blocked = ex.get_exercise("blocked_matmul").reference
    for block in (1, 2, 3, 4, 5, 16):
        np.testing.assert_allclose(blocked(A, B, block), A @ B, rtol=1e-12, atol=1e-12)


def test_attention_backward_reference_matches_the_kernels_reference():
    rng = np.random.default_rng(2)
    q, k, v, d_out = (rng.normal(size=shape) for shape in ((5, 8), (7, 8), (7, 8), (5, 8)))
    out = attention_output(q, k, v)
    library_out, lse = reference_attention.attention_forward(q[None, None], k[None, None], v[None, None])
    np.testing.assert_allclose(library_out[0, 0], out, rtol=1e-12)
    expected = reference_attention.attention_backward(q[None, None], k[None, None], v[None, None], library_out,
                                                      lse, d_out[None, None])
    received = ex.get_exercise("attention_backward").reference(q, k, v, out, d_out)
    for want, got in zip(expected, received):
        np.testing.assert_allclose(got, want[0, 0], rtol=1e-10, atol=1e-12)


def test_roofline_reference_reproduces_the_statement_examples():
    roofline = ex.get_exercise("kernel_roofline").reference
    flops, bytes_moved, intensity, attainable, bound = roofline("matmul", (1024, 1024, 1024), 4, 2e11, 3e10)
    assert (flops, bytes_moved, bound) == (2147483648, 12582912, "compute")
    assert math.isclose(intensity, 512 / 3) and attainable == 2e11
    assert roofline("softmax", (4096, 1024), 4, 2e11, 3e10) == (20971520, 33554432, 0.625, 1.875e10, "memory")
    statement = ex.get_exercise("kernel_roofline").statement
    assert "(2147483648, 12582912, 170.67, 2e11, \"compute\")" in statement
    assert "(20971520, 33554432, 0.625, 1.875e10, \"memory\")" in statement


def test_roofline_grader_accepts_either_bound_exactly_at_the_ridge_point():
    def ridge_by_division(kernel, shape, dtype_bytes, peak_flops, bandwidth):
        flops, bytes_moved, intensity, attainable, _ = _roofline(kernel, shape, dtype_bytes, peak_flops, bandwidth)
        return flops, bytes_moved, intensity, attainable, "compute" if intensity >= peak_flops / bandwidth else "memory"

    assert ex.get_exercise("kernel_roofline").grade(ridge_by_division)


def test_other_correct_styles_pass():
    """A row-by-row online softmax with Python scalars and a skip for all-masked chunks; a matmul with min() bounds."""
    def online_row_by_row(x, chunk_size):
        rows = x.reshape(-1, x.shape[-1])
        out = np.empty_like(rows)
        for r, row in enumerate(rows):
            m, s = -np.inf, 0.0
            for start in range(0, len(row), chunk_size):
                chunk = row[start:start + chunk_size]
                m_new = max(m, chunk.max())
                if m_new == -np.inf:
                    continue
                s = s * np.exp(m - m_new) + np.exp(chunk - m_new).sum()
                m = m_new
            out[r] = np.exp(row - m) / s
        return out.reshape(x.shape)

    def blocked_with_min_bounds(A, B, block):
        (M, K), N = A.shape, B.shape[1]
        C = np.zeros((M, N))
        for i in range(0, M, block):
            for j in range(0, N, block):
                for k in range(0, K, block):
                    i1, j1, k1 = min(i + block, M), min(j + block, N), min(k + block, K)
                    C[i:i1, j:j1] += A[i:i1, k:k1] @ B[k:k1, j:j1]
        return C

    online = ex.get_exercise("online_softmax").grade(online_row_by_row)
    assert online, str(online)
    blocked = ex.get_exercise("blocked_matmul").grade(blocked_with_min_bounds)
    assert blocked, str(blocked)
