"""Learning checks for the Numba matmul (kernels/numba_cpu/blocked_matmul.py) and its teaching ladder
(kernels/numba_cpu/matmul_ladder.py): every one is held to the NumPy reference, never modifies its
inputs, and gives correct gradients through the library's MatMul op. A kernel with a data race
(tests/broken_kernels_matmul.py) must be caught.

Tolerances, per dtype. A dot product of length K summed in float arithmetic, in any order, is within
K * eps * sum_k |a_ik| |b_kj| of the exact value (eps: 1.2e-7 for float32, 2.2e-16 for float64). The
kernel and the reference (BLAS) each make such an error, in different orders, so they may differ by
twice that:
    float32: |C - C_ref| <= 2 K eps32 (|A| @ |B|)           elementwise
    float64: |C - C_ref| <= max(1e-12, 4 K eps64) (|A| @ |B|)
"""
import types

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
import tinygrad_llm.kernels
from tinygrad_llm.kernels import reference
from tinygrad_llm.kernels.numba_cpu import matmul_ladder as ladder
from tinygrad_llm.kernels.numba_cpu.blocked_matmul import matmul
from tinygrad_llm.testing import gradcheck

import broken_kernels_matmul as broken

pytestmark = pytest.mark.kernels

# The library kernel and the teaching steps (ladder.matmul_packed_parallel IS `matmul`).
KERNELS = [matmul, ladder.matmul_naive, ladder.matmul_ikj, ladder.matmul_blocked]
IDS = ["numba", "ladder_naive", "ladder_ikj", "ladder_blocked"]


def tolerance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The elementwise bound on |kernel - reference| stated in the module docstring."""
    k = a.shape[-1]
    eps = np.finfo(a.dtype).eps
    factor = 2 * k * eps if a.dtype == np.float32 else max(1e-12, 4 * k * eps)
    return factor * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))


def assert_matches_reference(kernel, a: np.ndarray, b: np.ndarray):
    a_before, b_before = a.copy(), b.copy()
    out = kernel(a, b)
    expected = reference.matmul(a, b)
    assert out.shape == expected.shape, f"{kernel.__name__}: shape {out.shape}, expected {expected.shape}"
    assert out.dtype == expected.dtype, f"{kernel.__name__}: dtype {out.dtype}, expected {expected.dtype}"
    err = np.abs(out.astype(np.float64) - expected)
    bound = tolerance(a, b)
    bad = err > bound
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{kernel.__name__} on {a.shape} @ {b.shape} ({a.dtype}): {int(bad.sum())} of {bad.size} elements "
            f"differ from the reference beyond the rounding bound; at {where}: got {out[where]!r}, expected "
            f"{expected[where]!r}, bound {bound[where]:.3g}"
        )
    assert np.array_equal(a, a_before) and np.array_equal(b, b_before), f"{kernel.__name__} modified its inputs"


def make_operand(rng, shape, layout, dtype, scale):
    """An array of `shape` laid out as asked: "C" contiguous, "T" a transposed view (what the backward pass
    passes), or "strided" every other column of a wider array."""
    *batch, rows, cols = shape
    base = {"C": shape, "T": (*batch, cols, rows), "strided": (*batch, rows, 2 * cols)}[layout]
    x = (rng.standard_normal(base) * scale).astype(dtype)
    return {"C": x, "T": np.swapaxes(x, -1, -2) if x.ndim else x, "strided": x[..., ::2]}[layout]


@st.composite
def operands(draw):
    m, k, n = (draw(st.integers(0, 70)) for _ in range(3))  # 0, sizes below and above the 4x4 and 64 tiles
    batch = draw(st.sampled_from([(), (0,), (1,), (3,)]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale_a, scale_b = (10.0 ** draw(st.integers(-4, 4)) for _ in range(2))
    a = make_operand(rng, batch + (m, k), draw(st.sampled_from(["C", "T", "strided"])), dtype, scale_a)
    b = make_operand(rng, batch + (k, n), draw(st.sampled_from(["C", "T", "strided"])), dtype, scale_b)
    return a, b


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
@given(ab=operands())
def test_kernel_matches_reference(kernel, ab):
    assert_matches_reference(kernel, *ab)


# Bigger products: several 128 x 64 cache blocks, k longer than one k slice (1024), the parallel path
# (the first two: more than 2**25 multiply-adds), edges.
BIG = [((131, 1030), (1030, 261)), ((4, 200, 300), (4, 300, 150)), ((2, 67, 2051), (2, 2051, 5)), ((3, 129, 70), (3, 70, 133)), ((1, 1), (1, 300))]


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", BIG, ids=lambda s: f"{s[0]}@{s[1]}")
def test_kernel_matches_reference_on_bigger_products(kernel, dtype, shapes):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    assert_matches_reference(kernel, a, b)
    assert_matches_reference(kernel, np.swapaxes(np.swapaxes(a, -1, -2).copy(), -1, -2), b)  # a transposed view


def check_long_reduction(kernel, attempts: int = 10):
    """ones(16, K) @ ones(K, 16) == K exactly (float64, K = 2**16), checked `attempts` times.

    Why this catches a race: a kernel that splits the k loop over threads has both threads adding into the
    same 256 elements of C, 2**16 terms each. An update is lost only when the two threads' read-modify-writes
    of one element overlap in time, so a race need not fire on every run, least of all on a busy 2-core
    machine where the second thread may start late. Here each run keeps the threads busy for tens of
    milliseconds on the same elements, each lost update changes a sum by a whole number (the float64 bound is
    ~4e-6), and the check runs 10 times: one lost update in any run fails it. (Measured with the machine's 2
    cores loaded by 4 other processes: the race fired on 20 runs of 20.)"""
    k = 2**16
    a, b = np.ones((16, k)), np.ones((k, 16))
    for _ in range(attempts):
        assert_matches_reference(kernel, a, b)


@pytest.mark.parametrize("kernel", KERNELS[:1] + KERNELS[2:], ids=IDS[:1] + IDS[2:])  # not naive: slow and serial
def test_long_reduction_check_passes_on_the_kernels(kernel):
    check_long_reduction(kernel)


@pytest.mark.broken
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="a race needs two threads (NUMBA_NUM_THREADS < 2)")
def test_long_reduction_check_catches_a_race_on_a_shared_accumulator():
    with pytest.raises(AssertionError, match="beyond the rounding bound"):
        check_long_reduction(broken.matmul_with_race_on_shared_accumulator)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")  # inf - inf, on purpose
@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inf_and_nan_propagate_like_the_reference(kernel, dtype):
    """fastmath={"reassoc", "contract"} may reorder sums but does not assume "no inf, no nan" (fastmath=True
    would): an inf or a nan in A reaches exactly the elements of C it reaches with BLAS."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((9, 37)).astype(dtype), rng.standard_normal((37, 11)).astype(dtype)
    a[1, 5], a[6, 30], a[6, 31], a[7, 0] = np.inf, np.inf, -np.inf, np.nan
    b[5, 2] = 0.0  # inf * 0 = nan in column 2 of row 1
    out, expected = kernel(a, b), reference.matmul(a, b)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert (np.abs(out - expected)[finite] <= tolerance(np.nan_to_num(a), b)[finite]).all()


def test_kernel_rejects_shapes_it_does_not_handle():
    with pytest.raises(ValueError, match="matmul kernel"):
        matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="matmul kernel"):
        matmul(np.ones((2, 2, 3)), np.ones((3, 3, 2)))  # unequal batches: broadcasting is the op's job


# ------------------------------------------------------------------ gradients through the kernel
GRAD_CASES = [
    ((3, 4), (4, 5)),  # 2-D
    ((2, 3, 4), (2, 4, 5)),  # batched
    ((2, 3, 4), (4, 5)),  # batch @ matrix: one (6, 4) @ (4, 5) product, and a (4, 6) @ (6, 5) weight gradient
    ((3, 4), (2, 4, 5)),  # broadcast batch on the right
    ((2, 1, 3, 4), (3, 4, 2)),  # broadcast batch on both sides
    ((4,), (4, 5)),  # vector @ matrix
    ((3, 4), (4,)),  # matrix @ vector
    ((4,), (4,)),  # dot product
    ((6, 5), (5, 6)),  # more than one 4x4 tile, with edges
]


@pytest.fixture
def numba_matmul_active(monkeypatch):
    """Make every op use this module's matmul (and the reference for the other kernels); count the calls."""
    calls = []

    def counted_matmul(a, b):
        calls.append((a.shape, b.shape))
        return matmul(a, b)

    kernel_set = types.SimpleNamespace(**{name: getattr(reference, name) for name in reference.__all__})
    kernel_set.matmul = counted_matmul
    monkeypatch.setattr(tinygrad_llm.kernels, "active", lambda array=None: kernel_set)
    return calls


@pytest.mark.parametrize("shapes", GRAD_CASES, ids=lambda s: f"{s[0]}@{s[1]}")
def test_gradients_through_the_numba_matmul(numba_matmul_active, shapes):
    rng = np.random.default_rng(len(shapes[0]) * 10 + len(shapes[1]))
    a, b = (tgl.tensor(rng.standard_normal(s), dtype=np.float64, requires_grad=True) for s in shapes)
    assert gradcheck(lambda x, y: x @ y, a, b)
    assert numba_matmul_active, "the op never called the kernel: the check would be vacuous"


def test_gradients_through_a_transposed_operand(numba_matmul_active):
    """x.T is a non-contiguous view all the way down to the kernel."""
    rng = np.random.default_rng(1)
    a = tgl.tensor(rng.standard_normal((5, 3)), dtype=np.float64, requires_grad=True)
    b = tgl.tensor(rng.standard_normal((5, 6)), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda x, y: x.T @ y, a, b)


def test_numba_kernel_set_matmul_works_after_this_module_is_imported():
    """The numba set routes matmul to BLAS (kernels/numba_cpu/__init__.py says why); importing the Numba
    matmul's own module, as this file, the ladder and the benchmark do, must not change that. (A submodule
    named `matmul` would: importing it rebinds the package attribute `matmul` to the module.)"""
    previous = tgl.get_kernels()
    try:
        kernel_set = tgl.set_kernels("numba")
        assert callable(kernel_set.matmul), (
            f"tinygrad_llm.kernels.numba_cpu.matmul is {kernel_set.matmul!r}, not a function: no submodule of "
            "kernels/numba_cpu/ may be named after a kernel function"
        )
        rng = np.random.default_rng(2)
        a, b = rng.standard_normal((2, 5, 7)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)
        np.testing.assert_allclose((tgl.tensor(a) @ tgl.tensor(b)).data, a @ b, rtol=1e-5, atol=1e-5)
    finally:
        tgl.set_kernels(previous)
