"""Exercises on kernels and performance (chapter 15): online softmax, a blocked matmul, the attention
backward pass, and placing a kernel on the roofline.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import HUGE_LOGIT, float_arrays


def online_softmax(x: np.ndarray, chunk_size: int) -> np.ndarray:
    """Softmax of float64 `x` (1-D, or 2-D with one softmax per row) along the last axis, in ONE streaming pass.

    Reads x[..., start:start + chunk_size] left to right keeping a running max m and running sum s per row,
    then normalises. Returns an array of x's shape.
    """
    m = np.full(x.shape[:-1] + (1,), -np.inf)
    s = np.zeros(x.shape[:-1] + (1,))
    for start in range(0, x.shape[-1], chunk_size):
        chunk = x[..., start:start + chunk_size]
        m_new = np.maximum(m, chunk.max(axis=-1, keepdims=True))
        shift = np.where(np.isfinite(m_new), m_new, 0.0)  # a row with only -inf so far: s stays 0, no nan
        s = s * np.exp(m - shift) + np.exp(chunk - shift).sum(axis=-1, keepdims=True)
        m = m_new
    return np.exp(x - m) / s


def blocked_matmul(A: np.ndarray, B: np.ndarray, block: int) -> np.ndarray:
    """C = A @ B for float64 A (M, K) and B (K, N), computed one (block x block) tile at a time.

    Loops over blocks of rows i, of columns j and of the inner dimension k; sizes need not be multiples of
    `block`. Returns C of shape (M, N).
    """
    (M, K), N = A.shape, B.shape[1]
    C = np.zeros((M, N))
    for i in range(0, M, block):
        for j in range(0, N, block):
            for k in range(0, K, block):
                C[i:i + block, j:j + block] += A[i:i + block, k:k + block] @ B[k:k + block, j:j + block]
    return C


def attention_probabilities(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P = softmax(q @ k.T / sqrt(D)) over the keys (each row), for q (Tq, D) and k (Tk, D): shape (Tq, Tk)."""
    scores = q @ k.T / np.sqrt(q.shape[-1])
    exps = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def attention_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray,
                       d_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of out = softmax(q @ k.T / sqrt(D)) @ v (one head, no mask) given d_out = dL/dout.

    q (Tq, D), k and v (Tk, D), out and d_out (Tq, D), all float64. Returns (dq, dk, dv) with the shapes of
    q, k and v.
    """
    scale = 1.0 / np.sqrt(q.shape[-1])
    p = attention_probabilities(q, k)
    dv = p.T @ d_out
    dp = d_out @ v.T
    ds = p * (dp - (d_out * out).sum(axis=-1, keepdims=True))
    return ds @ k * scale, ds.T @ q * scale, dv


def kernel_roofline(kernel: str, shape: tuple[int, ...], dtype_bytes: int, peak_flops: float,
                    bandwidth: float) -> tuple[int, int, float, float, str]:
    """Place a kernel on the roofline: "matmul" with shape (M, K, N) or "softmax" with shape (rows, cols).

    dtype_bytes is the size of one element, peak_flops in FLOP/s, bandwidth in bytes/s.
    Returns (flops, bytes_moved, intensity, attainable_flops, bound) with bound "compute" or "memory".
    """
    if kernel == "matmul":
        m, k, n = shape
        flops, elements = 2 * m * k * n, m * k + k * n + m * n
    elif kernel == "softmax":
        rows, cols = shape
        flops, elements = 5 * rows * cols, 2 * rows * cols
    else:
        raise ValueError(f"unknown kernel {kernel!r}: expected 'matmul' or 'softmax'")
    bytes_moved = dtype_bytes * elements
    intensity = flops / bytes_moved
    attainable_flops = min(peak_flops, intensity * bandwidth)
    bound = "memory" if intensity * bandwidth < peak_flops else "compute"
    return flops, bytes_moved, intensity, attainable_flops, bound


# ---- online_softmax --------------------------------------------------------------------------------------

def two_pass_softmax(x: np.ndarray) -> np.ndarray:
    """The textbook softmax (max first, then sum): what the one-pass version must equal."""
    exps = np.exp(x - x.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def _two_pass(x: np.ndarray, chunk_size: int) -> np.ndarray:
    return two_pass_softmax(x)


@st.composite
def online_softmax_inputs(draw, low: float = -10.0, high: float = 10.0, ascending: bool = False,
                          masked: bool = False) -> dict:
    """x of shape (n,) or (rows, n) with n <= 8, and a chunk size from 1 to n + 2 (so also longer than x).

    `ascending` sorts each row and makes chunks shorter than n, so the max grows from chunk to chunk.
    `masked` sets some entries to -inf, keeping one finite entry per row.
    """
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8).filter(
        lambda shape: not ascending or shape[-1] >= 2))
    x = draw(float_arrays(shape, low, high))
    if ascending:
        return {"x": np.sort(x, axis=-1), "chunk_size": draw(st.integers(1, shape[-1] - 1))}
    if masked:
        mask = draw(hnp.arrays(np.bool_, shape))
        mask[..., draw(st.integers(0, shape[-1] - 1))] = False
        x = np.where(mask, -np.inf, x)
    return {"x": x, "chunk_size": draw(st.integers(1, shape[-1] + 2))}


RESCALES = ("exact when the max grows from chunk to chunk (rows sorted ascending): the running sum must be "
            "rescaled by exp(m_old - m_new)")

# ---- blocked_matmul --------------------------------------------------------------------------------------


@st.composite
def blocked_matmul_inputs(draw, multiples: bool = False) -> dict:
    """A (M, K), B (K, N) and a block size. With `multiples`, every size is a multiple of block and K spans at
    least two blocks (so only the accumulation over k is tested); otherwise sizes 1..7 and block 1..8."""
    if multiples:
        block = draw(st.integers(1, 3))
        M, N, K = block * draw(st.integers(1, 2)), block * draw(st.integers(1, 2)), block * draw(st.integers(2, 3))
    else:
        block = draw(st.integers(1, 8))
        M, K, N = (draw(st.integers(1, 7)) for _ in range(3))
    return {"A": draw(float_arrays((M, K), -5.0, 5.0)), "B": draw(float_arrays((K, N), -5.0, 5.0)), "block": block}


# ---- attention_backward ----------------------------------------------------------------------------------

def attention_output(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    return attention_probabilities(q, k) @ v


@st.composite
def attention_inputs(draw) -> dict:
    """q (Tq, D), k and v (Tk, D) with sides 1..4, the forward output and an upstream gradient."""
    queries, keys, dim = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    q = draw(float_arrays((queries, dim), -2.0, 2.0))
    k = draw(float_arrays((keys, dim), -2.0, 2.0))
    v = draw(float_arrays((keys, dim), -2.0, 2.0))
    return {"q": q, "k": k, "v": v, "out": attention_output(q, k, v),
            "d_out": draw(float_arrays((queries, dim), -2.0, 2.0))}


ATTENTION_NAMES = ("dq", "dk", "dv")
KEYS_SUM_TO_ZERO = ("dk sums to 0 over the keys (adding one vector to every key shifts a query's scores by a "
                    "constant, which softmax ignores)")
FINITE_DIFFERENCES = "matches central finite differences of L = sum(d_out * out) in every entry of q, k and v"


def _dk_sums_to_zero(learner, drawn: dict) -> None:
    gradients = call_learner(learner, drawn, KEYS_SUM_TO_ZERO)
    expect_close(KEYS_SUM_TO_ZERO, drawn, attention_backward(**drawn), gradients, None, None, ATTENTION_NAMES)
    sums = gradients[1].sum(axis=0)
    if not np.allclose(sums, 0.0, rtol=0, atol=1e-9):
        raise PropertyFailed(KEYS_SUM_TO_ZERO, drawn, np.zeros_like(sums), sums,
                             "these are the sums of your dk over the keys (axis 0); each must be 0. The softmax "
                             "Jacobian subtracts each query's rowsum(d_out * out) from dP")


def _numeric_gradients(drawn: dict, step: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central differences of L(q, k, v) = sum(d_out * attention(q, k, v)), one entry at a time."""
    inputs = {name: drawn[name] for name in ("q", "k", "v")}
    gradients = []
    for name, array in inputs.items():
        gradient = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            losses = []
            for sign in (1.0, -1.0):
                moved = {**inputs, name: array.copy()}
                moved[name][index] += sign * step
                losses.append(np.sum(drawn["d_out"] * attention_output(**moved)))
            gradient[index] = (losses[0] - losses[1]) / (2 * step)
        gradients.append(gradient)
    return tuple(gradients)


def _matches_finite_differences(learner, drawn: dict) -> None:
    gradients = call_learner(learner, drawn, FINITE_DIFFERENCES)
    expect_close(FINITE_DIFFERENCES, drawn, attention_backward(**drawn), gradients, None, None, ATTENTION_NAMES)
    expect_close(FINITE_DIFFERENCES, drawn, _numeric_gradients(drawn), gradients, 1e-5, 1e-7, ATTENTION_NAMES)


# ---- kernel_roofline -------------------------------------------------------------------------------------

# (peak FLOP/s, bandwidth bytes/s): this course's 2-core CPU with BLAS at fp32, the same with AVX-512 kernels,
# an H100's dense bf16 and fp32 tensor-core peaks with HBM3, and a round 1 TFLOP/s, 100 GB/s machine.
MACHINES = ((2e11, 3e10), (3.5e11, 3e10), (9.89e14, 3.35e12), (6.7e13, 3.35e12), (1e12, 1e11))
ROOFLINE_FIELDS = ("flops", "bytes_moved", "intensity", "attainable_flops", "bound")


@st.composite
def roofline_inputs(draw, kernel: str | None = None) -> dict:
    kernel = kernel or draw(st.sampled_from(["matmul", "softmax"]))
    shape = tuple(draw(st.integers(1, 8192)) for _ in range(3 if kernel == "matmul" else 2))
    peak_flops, bandwidth = draw(st.sampled_from(MACHINES))
    return {"kernel": kernel, "shape": shape, "dtype_bytes": draw(st.sampled_from([4, 2, 8, 1])),
            "peak_flops": peak_flops, "bandwidth": bandwidth}


def _roofline_of(learner, drawn: dict, name: str) -> tuple[tuple, tuple]:
    """(expected, received) after checking that the learner returned five items: four numbers and a bound."""
    expected = kernel_roofline(**drawn)
    received = call_learner(learner, drawn, name)
    if not isinstance(received, (tuple, list)) or len(received) != 5:
        raise PropertyFailed(name, drawn, expected, received,
                             f"return a tuple ({', '.join(ROOFLINE_FIELDS)})")
    expect_close(name, drawn, expected[:4], tuple(received[:4]), None, None, ROOFLINE_FIELDS[:4])
    if received[4] not in ("compute", "memory"):
        raise PropertyFailed(name, drawn, {"bound": expected[4]}, {"bound": received[4]},
                             'bound must be the string "compute" or "memory"')
    return expected, tuple(received)


def _expect_bound(name: str, drawn: dict, intensity: float, received: tuple) -> None:
    """bound names the lower roof; exactly at the ridge point (to rounding) either answer is accepted."""
    memory_roof, peak = intensity * drawn["bandwidth"], drawn["peak_flops"]
    if abs(memory_roof - peak) <= 1e-9 * peak:
        return
    wanted = "memory" if memory_roof < peak else "compute"
    if received[4] != wanted:
        raise PropertyFailed(name, drawn, {"bound": wanted}, {"bound": received[4]},
                             f"intensity * bandwidth = {memory_roof:.6g} FLOP/s against a peak of {peak:.6g}: "
                             f"the lower roof is {wanted}'s")


BOTH_ROOFS = ("attainable FLOP/s is under both roofs: min(peak_flops, intensity * bandwidth), and bound names "
              "the lower one")
MULTIPLY_ADD = "a matmul (M, K, N) costs 2*M*K*N flops: one multiply AND one add per term"
INTENSITY = "intensity = flops / bytes_moved (FLOP per byte)"
ROOFLINE_EXACT = "matches the reference counts exactly (flops and bytes as integers, rates to rtol=1e-12)"


def _under_both_roofs(learner, drawn: dict) -> None:
    _, received = _roofline_of(learner, drawn, BOTH_ROOFS)
    intensity = received[2]
    roof = min(drawn["peak_flops"], intensity * drawn["bandwidth"])
    expect_close(BOTH_ROOFS, drawn, {"attainable_flops": roof}, {"attainable_flops": received[3]}, 1e-12, 0.0)
    _expect_bound(BOTH_ROOFS, drawn, intensity, received)


def _counts_multiply_add(learner, drawn: dict) -> None:
    expected, received = _roofline_of(learner, drawn, MULTIPLY_ADD)
    expect_close(MULTIPLY_ADD, drawn, {"flops": expected[0]}, {"flops": received[0]}, 1e-12, 0.0)


def _intensity_is_a_ratio(learner, drawn: dict) -> None:
    _, received = _roofline_of(learner, drawn, INTENSITY)
    flops, bytes_moved, intensity = received[:3]
    expect_close(INTENSITY, drawn, {"intensity": flops / bytes_moved}, {"intensity": intensity}, 1e-12, 0.0)


def _roofline_exact(learner, drawn: dict) -> None:
    expected, received = _roofline_of(learner, drawn, ROOFLINE_EXACT)
    expect_close(ROOFLINE_EXACT, drawn, expected[:4], received[:4], 1e-12, 0.0, ROOFLINE_FIELDS[:4])
    _expect_bound(ROOFLINE_EXACT, drawn, expected[2], received)


ONLINE_SOFTMAX = Exercise(
    name="online_softmax",
    title="Online softmax: one streaming pass with a running max and a rescaled running sum",
    statement=(
        "Flash attention sees the keys one block at a time, so it cannot find the max first and sum second.\n"
        "Implement online_softmax(x, chunk_size): softmax of float64 x (1-D, or 2-D with one softmax per row)\n"
        "along the last axis, reading the chunks x[..., start:start + chunk_size] left to right in ONE pass\n"
        "that keeps, per row, a running max m and a running sum s = sum of exp(x_j - m) over the entries seen\n"
        "so far. When a chunk raises the max from m_old to m_new, the old sum was measured against m_old and\n"
        "must be rescaled by exp(m_old - m_new). After the pass, return exp(x - m) / s (x's shape).\n"
        "The last chunk may be shorter and chunk_size may exceed the length. The result must equal the\n"
        "two-pass softmax for every chunk size, stay finite for logits anywhere in [-1e4, 1e4], and give\n"
        "probability 0 to masked logits (-inf), even when a whole chunk is masked (every row keeps at least\n"
        "one finite logit). Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=online_softmax,
    hints=(
        "Start each row with m = -inf and s = 0. For each chunk: m_new = max(m, max of the chunk); move s to "
        "the new reference point; add the chunk's sum of exp(chunk - m_new); set m = m_new.",
        "Each old term exp(x_j - m_old) must become exp(x_j - m_new): multiply s by exp(m_old - m_new) (that "
        "is 1 when the max did not change). If a row has seen only -inf, m_new is -inf and m_old - m_new is "
        "-inf - (-inf) = nan: take the exponentials against 0 instead (s is still 0, so nothing changes).",
        "Per chunk: the new max is the larger of the running max and the chunk's max; rescale the running sum by "
        "exp(old max - new max) (using 0 as the reference while the max is still -inf), and add the chunk's "
        "exponentials taken against the new max. At the end, exponentiate x against the final max and divide by the "
        "sum.",
    ),
    checks=(
        has_reference_shapes(online_softmax, online_softmax_inputs(), "returns an array of x's shape"),
        matches_reference(_two_pass, online_softmax_inputs(ascending=True), rtol=1e-9, atol=1e-12, name=RESCALES),
        matches_reference(_two_pass, online_softmax_inputs(), rtol=1e-9, atol=1e-12,
                          name="equals the two-pass softmax for every chunk size (1 to beyond the length)"),
        matches_reference(_two_pass, online_softmax_inputs(-HUGE_LOGIT, HUGE_LOGIT), rtol=1e-9, atol=1e-12,
                          name="stays finite and exact for logits anywhere in [-1e4, 1e4] (the running max must "
                               "follow the largest logit seen so far)"),
        matches_reference(online_softmax, online_softmax_inputs(masked=True), rtol=1e-9, atol=1e-12,
                          name="gives masked logits (-inf) probability 0, even when a whole chunk is masked"),
    ),
)

BLOCKED_MATMUL = Exercise(
    name="blocked_matmul",
    title="Blocked (tiled) matrix multiply, the way BLAS keeps tiles in cache",
    statement=(
        "Implement blocked_matmul(A, B, block) for float64 A (M, K) and B (K, N), returning C = A @ B (M, N).\n"
        "Work tile by tile: loop over blocks of rows i, blocks of columns j and blocks of the inner dimension\n"
        "k, each at most `block` long, and add A[i-block, k-block] @ B[k-block, j-block] into the (i, j)\n"
        "block of C. Use @ only on tiles. Sizes need not be multiples of block (the last block of each loop\n"
        "is shorter) and block may exceed every size. Tolerance: rtol=1e-9, atol=1e-10."
    ),
    reference=blocked_matmul,
    hints=(
        "Start C at zeros (M, N). Three nested loops over block starts: for i in range(0, M, block), then j "
        "over N, then k over K.",
        "NumPy slices stop at the end of the array, so A[i:i + block] already is the short last block; a loop "
        "over range(M // block) loses it. The (i, j) tile of C is a SUM over all k tiles: +=, not =.",
        "Inside the three loops, the (i, j) block of C gains the product of A's (i, k) block and B's (k, j) block; "
        "each block is a slice of `block` rows and columns starting at the loop index.",
    ),
    checks=(
        has_reference_shapes(blocked_matmul, blocked_matmul_inputs(), "returns C of shape (M, N)"),
        matches_reference(blocked_matmul, blocked_matmul_inputs(multiples=True), rtol=1e-9, atol=1e-10,
                          name="accumulates over the k blocks: tile C[i, j] = sum over k of A[i, k] @ B[k, j] "
                               "(sizes multiples of block, K of at least two blocks)"),
        matches_reference(blocked_matmul, blocked_matmul_inputs(), rtol=1e-9, atol=1e-10,
                          name="equals A @ B when sizes are not multiples of block or block exceeds them "
                               "(the remainder blocks)"),
    ),
)

ATTENTION_BACKWARD = Exercise(
    name="attention_backward",
    title="Backward pass of scaled dot-product attention (one head, no mask)",
    statement=(
        "One attention head without a mask: S = q @ k.T * scale with scale = 1 / sqrt(D), P = softmax(S)\n"
        "over the keys (each row), out = P @ v. q is (Tq, D), k and v are (Tk, D), all float64. Given q, k, v,\n"
        "the forward output out (Tq, D) and the upstream gradient d_out = dL/dout (Tq, D), return\n"
        "(dq, dk, dv) with the shapes of q, k and v. Rebuild P from q and k, as a flash-attention kernel does\n"
        "(it never stores the Tq x Tk matrix). Tolerance: rtol=1e-7, atol=1e-10 against the reference, and\n"
        "rtol=1e-5 against central finite differences of L = sum(d_out * out)."
    ),
    reference=attention_backward,
    helpers=(attention_probabilities,),
    hints=(
        "Walk the forward backwards one line at a time: out = P v gives dv and dP; P = softmax(S) gives dS; "
        "S = q k^T * scale gives dq and dk. Each gradient has its variable's shape.",
        "dv = P^T d_out and dP = d_out v^T. Through the row softmax dS = P * (dP - rowsum(dP * P)), and "
        "rowsum(dP * P) = rowsum(d_out * out), which is how kernels compute it. S carries the scale, so dq and "
        "dk both carry it too.",
        "Recompute P with the helper. dv is P transposed times d_out; dP is d_out times v transposed; dS is P times "
        "(dP minus the row sums of d_out * out). dq is dS times k and dk is dS transposed times q, both times the "
        "scale 1 / sqrt(D).",
    ),
    checks=(
        has_reference_shapes(attention_backward, attention_inputs(), "returns (dq, dk, dv) with the shapes of q, k, v",
                             names=ATTENTION_NAMES),
        Check(KEYS_SUM_TO_ZERO, attention_inputs(), _dk_sums_to_zero),
        Check(FINITE_DIFFERENCES, attention_inputs(), _matches_finite_differences, max_examples=20),
        matches_reference(attention_backward, attention_inputs(), rtol=1e-7, atol=1e-10, names=ATTENTION_NAMES),
    ),
)

KERNEL_ROOFLINE = Exercise(
    name="kernel_roofline",
    title="FLOPs, bytes and arithmetic intensity: is a kernel compute-bound or memory-bound? (Q40)",
    statement=(
        "Place a kernel on the roofline. kernel is \"matmul\" with shape (M, K, N) (C = A @ B with A (M, K),\n"
        "B (K, N)) or \"softmax\" with shape (rows, cols) (along the last axis). dtype_bytes is the size of one\n"
        "element (4 for float32); peak_flops (FLOP/s) and bandwidth (bytes/s) describe the machine. Return\n"
        "(flops, bytes_moved, intensity, attainable_flops, bound) counted this way:\n"
        "  matmul:  flops = 2*M*K*N (a multiply and an add per term);\n"
        "           bytes_moved = dtype_bytes * (M*K + K*N + M*N): read A and B once, write C once.\n"
        "  softmax: flops = 5 per element (max, subtract, exp, add to the sum, divide);\n"
        "           bytes_moved = dtype_bytes * 2 * rows * cols: read x once, write y once (one fused kernel).\n"
        "  intensity = flops / bytes_moved; attainable_flops = min(peak_flops, intensity * bandwidth);\n"
        "  bound = \"memory\" if intensity * bandwidth < peak_flops else \"compute\".\n"
        "Example, on a CPU with peak 2e11 FLOP/s and 3e10 bytes/s: matmul (1024, 1024, 1024) in float32 gives\n"
        "(2147483648, 12582912, 170.67, 2e11, \"compute\"); softmax (4096, 1024) in float32 gives\n"
        "(20971520, 33554432, 0.625, 1.875e10, \"memory\"). flops and bytes_moved are exact; rates rtol=1e-12."
    ),
    reference=kernel_roofline,
    hints=(
        "Count the arithmetic (FLOPs) and the traffic to slow memory (bytes) separately, then divide: intensity "
        "is FLOP per byte. The two roofs are the compute peak and intensity * bandwidth.",
        "Each of the M*N outputs of a matmul is a sum of K products: K multiplies and K adds, 2*M*K*N in all. "
        "You get the LOWER roof, never just the peak: softmax does 5 FLOPs per 2*dtype_bytes bytes, far below "
        "any machine's ridge point peak_flops / bandwidth.",
        "Bytes moved are dtype_bytes times the elements read and written; intensity is FLOPs over bytes; the "
        "attainable FLOP/s is the smaller of the peak and intensity times bandwidth, and the kernel is memory-bound "
        "exactly when the bandwidth roof is the lower one.",
    ),
    checks=(
        Check(MULTIPLY_ADD, roofline_inputs("matmul"), _counts_multiply_add),
        Check(INTENSITY, roofline_inputs(), _intensity_is_a_ratio),
        Check(BOTH_ROOFS, roofline_inputs(), _under_both_roofs),
        Check(ROOFLINE_EXACT, roofline_inputs(), _roofline_exact, max_examples=60),
    ),
)

EXERCISES = (ONLINE_SOFTMAX, BLOCKED_MATMUL, ATTENTION_BACKWARD, KERNEL_ROOFLINE)
