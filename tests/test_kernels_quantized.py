"""Learning checks for the quantized kernels (kernels/reference/quantized_matmul.py and its Numba twin
kernels/numba_cpu/quantized_matmul.py), on both the serial and the parallel (prange) path.

int8_matmul is integer arithmetic: every kernel must equal the int64 product of the widened inputs EXACTLY,
over the full int8 range (-128 included, whose products overflow anything narrower than 16 bits and whose
sums overflow int16).

quantized_matmul is float arithmetic, held to x @ W.T computed in float64 from the integers themselves
(not through the library's unpacking), within a float32 rounding bound, elementwise:
    |out - exact| <= 2 (K + 2) eps32 (|x| @ (|s| (|q| + |z|)).T)
K + 2 roundings: K additions, the dequantized weight and the scale product. |q| + |z| and not |q - z|:
the Numba kernel takes the zero point out of the sum (sum x (q - z) = sum x q - z sum x), so its rounding
scales with each part, even where q - z is small.

activations="int16" first rounds each row of x to int16 (x ~ x_scale * x_q). Checked in two steps:
- the rounding itself: |x - x_scale x_q| <= x_scale / 2 (plus the rounding of x / x_scale), the largest |x_q| is 32767, and the Numba kernel
  rounds exactly as the reference does (the same integers, bit for bit);
- the product, held to x_scale * sum_g scale_g * (x_q . (q - z))_g computed here in float64 from the
  integers: the integer sums are exact in every kernel, so only the G + 2 float32 roundings of the scales
  remain, including at sizes whose integer sums overflow an int32;
- and against the float product: |out - x @ W.T| <= x_scale / 2 * sum_k |W[n, k]| (plus rounding), the
  price of the faster loop.
"""
import argparse
import importlib
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_llm.kernels as kernels
from tinygrad_llm.benchmarks import command
from tinygrad_llm.kernels import numba_cpu, reference
from tinygrad_llm.kernels.reference.int4_packing import pack_int4, unpack_int4

import broken_kernels_quantized as broken
import fake_gpu
from test_kernels_rowwise import on_path, paths

pytestmark = [pytest.mark.compression, pytest.mark.kernels]
# The modules, not the functions of the same name that the kernel sets export.
reference_quantized = importlib.import_module("tinygrad_llm.kernels.reference.quantized_matmul")
numba_quantized = importlib.import_module("tinygrad_llm.kernels.numba_cpu.quantized_matmul")

EPS32 = float(np.finfo(np.float32).eps)
INT_RANGE = {8: (-128, 127), 4: (-8, 7)}
seeds = st.integers(0, 2**32 - 1)


def draw_integers(rng, shape, low, high, fill):
    """Integers in low..high: uniform, only the two extremes, or all equal to `low` (the worst products)."""
    if fill == "extremes":
        return rng.choice(np.array([low, high]), size=shape)
    if fill == "lowest":
        return np.full(shape, low)
    return rng.integers(low, high + 1, size=shape)


def assert_unmodified(before, after):
    for was, now in zip(before, after):
        if was is not None:
            np.testing.assert_array_equal(was, now, err_msg="the kernel modified its input")


# ------------------------------------------------------------------ int8 x int8 -> int32
def check_int8_matmul(int8_matmul):
    """int8_matmul(a, b) == a @ b.T in int64, bit for bit, over drawn shapes and the whole int8 range."""

    @given(m=st.integers(1, 9), k=st.integers(1, 300), n=st.integers(1, 70),
           fill=st.sampled_from(["uniform", "extremes", "lowest"]), seed=seeds)
    @example(m=2, k=3, n=2, fill="lowest", seed=0)  # 3 * 16384 = 49152: past int16, inside int32
    def run(m, k, n, fill, seed):
        rng = np.random.default_rng(seed)
        a = draw_integers(rng, (m, k), -128, 127, fill).astype(np.int8)
        b = draw_integers(rng, (n, k), -128, 127, fill).astype(np.int8)
        before = (a.copy(), b.copy())
        out = int8_matmul(a, b)
        assert out.dtype == np.int32 and out.shape == (m, n), f"got {out.dtype} {out.shape}, want int32 {(m, n)}"
        exact = a.astype(np.int64) @ b.astype(np.int64).T
        wrong = out != exact
        assert not wrong.any(), (f"{int(wrong.sum())} of {wrong.size} sums differ from the exact integers, e.g. "
                                 f"{out[wrong][0]} instead of {exact[wrong][0]}")
        assert_unmodified(before, (a, b))

    run()


@pytest.mark.parametrize("kernel_set", [reference, numba_cpu], ids=["reference", "numba"])
@paths
def test_int8_matmul_is_the_exact_integer_product(kernel_set, path):
    with on_path(path):
        check_int8_matmul(kernel_set.int8_matmul)


@paths
@given(m=st.integers(0, 9), k=st.integers(0, 300), n=st.integers(0, 70), seed=seeds)
def test_numba_int8_matmul_equals_the_reference_bit_for_bit(path, m, k, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-128, 128, (m, k), dtype=np.int8), rng.integers(-128, 128, (n, k), dtype=np.int8)
    with on_path(path):
        np.testing.assert_array_equal(numba_cpu.int8_matmul(a, b), reference.int8_matmul(a, b))


# ------------------------------------------------------------------ float32 x quantized weight
@st.composite
def quantized_problems(draw):
    """(x, values, scales, zero_points, bits, group_size) in the quantized weight format, and the
    float64 weight W the integers stand for, computed here from the unpacked integers."""
    bits = draw(st.sampled_from([8, 4]))
    low, high = INT_RANGE[bits]
    symmetric = draw(st.booleans())
    granularity = draw(st.sampled_from(["tensor", "channel", "group"]))
    if granularity == "group":
        group_size = draw(st.sampled_from([2, 4, 8, 32, 64, 128] if bits == 4 else [1, 3, 8, 32, 64, 128]))
        k = group_size * draw(st.integers(1, max(1, 300 // group_size)))
    else:
        k = draw(st.integers(1, 150)) * (2 if bits == 4 else 1) + (0 if bits == 4 else draw(st.integers(0, 1)))
        group_size = k
    m, n = draw(st.integers(1, 9)), draw(st.integers(1, 70))
    rng = np.random.default_rng(draw(seeds))
    fill = draw(st.sampled_from(["uniform", "extremes"]))
    scale_rows = 1 if granularity == "tensor" else n
    q = draw_integers(rng, (n, k), -high if symmetric else low, high, fill)
    scales = (rng.lognormal(-4, 2, (scale_rows, k // group_size))).astype(np.float32)
    zero_points = None if symmetric else rng.integers(low, high + 1, (scale_rows, k // group_size)).astype(np.int8)
    x = (rng.standard_normal((m, k)) * 10.0 ** draw(st.integers(-3, 3))).astype(np.float32)
    values = q.astype(np.int8) if bits == 8 else pack_int4(q)

    columns_scale = np.repeat(scales.astype(np.float64), group_size, axis=1)
    columns_zero = 0 if symmetric else np.repeat(zero_points.astype(np.float64), group_size, axis=1)
    weight = columns_scale * (q - columns_zero)
    magnitude = columns_scale * (np.abs(q) + np.abs(columns_zero))  # |s| (|q| + |z|), see the docstring
    return (x, values, scales, zero_points, bits, group_size), weight, magnitude


def check_quantized_matmul(quantized_matmul):
    """quantized_matmul(...) == x @ W.T (W from the integers, float64) within the float32 bound above."""

    @given(problem=quantized_problems())
    def run(problem):
        args, weight, magnitude = problem
        x, values, scales, zero_points, bits, group_size = args
        before = [a.copy() if a is not None else None for a in (x, values, scales, zero_points)]
        out = quantized_matmul(*args)
        assert out.dtype == np.float32 and out.shape == (x.shape[0], values.shape[0]), \
            f"got {out.dtype} {out.shape}, want float32 {(x.shape[0], values.shape[0])}"
        exact = x.astype(np.float64) @ weight.T
        bound = 2 * (x.shape[1] + 2) * EPS32 * (np.abs(x).astype(np.float64) @ magnitude.T)
        bad = np.abs(out - exact) > bound
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(f"bits={bits}, group_size={group_size}, scales {scales.shape}, zero points "
                                 f"{'none' if zero_points is None else zero_points.shape}: {int(bad.sum())} of "
                                 f"{bad.size} outputs off; at {where}: {out[where]!r}, exact {exact[where]!r}, "
                                 f"bound {bound[where]:.3g}")
        assert_unmodified(before, (x, values, scales, zero_points))

    run()


@pytest.mark.parametrize("kernel_set", [reference, numba_cpu], ids=["reference", "numba"])
@paths
def test_quantized_matmul_is_x_times_the_dequantized_weight(kernel_set, path):
    with on_path(path):
        check_quantized_matmul(kernel_set.quantized_matmul)


# ------------------------------------------------------------------ int16 activations (W8A16 / W4A16)
# Half a step, plus the float32 rounding of x / x_scale (a value up to 32767, so 32767 eps32 of a step).
HALF_STEP = 0.5 + reference_quantized.INT16_LEVELS * EPS32
def check_activation_rounding(round_rows):
    """round_rows(x) -> (x_q int16 (M, K), x_scale float32 (M, 1) or (M,)): half a step at most, full range."""

    @given(m=st.integers(1, 6), k=st.integers(1, 200), seed=seeds, magnitude=st.integers(-30, 30),
           zero_row=st.booleans())
    def run(m, k, seed, magnitude, zero_row):
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((m, k)) * 2.0 ** magnitude).astype(np.float32)
        if zero_row:
            x[0] = 0
        x_q, x_scale = round_rows(x)
        x_scale = np.asarray(x_scale).reshape(m, 1).astype(np.float64)
        assert x_q.dtype == np.int16 and x_q.shape == (m, k)
        error = np.abs(x - x_scale * x_q)
        assert (error <= x_scale * HALF_STEP).all(), f"rounded {error.max():.3g} away, half a step is {x_scale.max() / 2:.3g}"
        peaks = np.abs(x_q).max(axis=1)
        assert (peaks[np.abs(x).max(axis=1) > 0] == reference_quantized.INT16_LEVELS).all(), \
            "each nonzero row's largest value must map to 32767 (the whole int16 range used)"
        if zero_row:
            assert (x_q[0] == 0).all() and x_scale[0, 0] == 1

    run()


def test_activation_rounding_uses_half_a_step_and_the_whole_int16_range():
    check_activation_rounding(reference_quantized.quantize_activation_rows)


@given(m=st.integers(1, 6), k=st.integers(0, 200), seed=seeds, magnitude=st.integers(-30, 30))
def test_numba_rounds_activations_exactly_like_the_reference(m, k, seed, magnitude):
    x = (np.random.default_rng(seed).standard_normal((m, k)) * 2.0 ** magnitude).astype(np.float32)
    want_q, want_scale = reference_quantized.quantize_activation_rows(x)
    got_q, got_scale = numba_quantized._activation_rows_int16(x)
    np.testing.assert_array_equal(got_q, want_q)
    np.testing.assert_array_equal(got_scale, want_scale[:, 0])


def _integer_product(x, problem_args):
    """x_scale * sum_g scale_g * (x_q . (q - z))_g in float64 from the integers, and its float32 bound."""
    _, values, scales, zero_points, bits, group_size = problem_args
    x_q, x_scale = reference_quantized.quantize_activation_rows(x)
    q = (values if bits == 8 else unpack_int4(values)).astype(np.int64)
    m, k, n = x.shape[0], x.shape[1], q.shape[0]
    groups = k // group_size
    x_groups = x_q.astype(np.int64).reshape(m, groups, group_size)
    sums = np.einsum("mgk,ngk->mng", x_groups, q.reshape(n, groups, group_size))
    if zero_points is not None:
        sums = sums - x_groups.sum(axis=2)[:, None, :] * zero_points.astype(np.int64)[None, :, :]
    weighted = sums * scales.astype(np.float64)[None, :, :]
    exact = x_scale.astype(np.float64) * weighted.sum(axis=2)
    bound = 2 * (groups + 3) * EPS32 * x_scale.astype(np.float64) * np.abs(weighted).sum(axis=2)
    return exact, bound + 1e-37


def check_int16_activations(quantized_matmul):
    """quantized_matmul(..., activations="int16") == the integer formula above within G + 3 float32 roundings,
    and within x_scale / 2 * sum |W| of the float product; plus sums far past the int32 range."""

    def compare(args, weight):
        x = args[0]
        out = quantized_matmul(*args, activations="int16")
        assert out.dtype == np.float32 and out.shape == (x.shape[0], args[1].shape[0])
        exact, bound = _integer_product(x, args)
        bad = np.abs(out - exact) > bound
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(f"bits={args[4]}, group_size={args[5]}: {int(bad.sum())} of {bad.size} outputs "
                                 f"off the integer sums; at {where}: {out[where]!r}, exact {exact[where]!r}")
        x_scale = np.abs(x).max(axis=1, keepdims=True).astype(np.float64) / reference_quantized.INT16_LEVELS
        float_product = x.astype(np.float64) @ weight.T
        price = x_scale * HALF_STEP * np.abs(weight).sum(axis=1) * (1 + 1e-6) + bound
        assert (np.abs(out - float_product) <= price).all(), "int16 rounding moved the output by more than half a step"

    @given(problem=quantized_problems())
    def run(problem):
        args, weight, _ = problem
        before = [a.copy() if a is not None else None for a in args[:4]]
        compare(args, weight)
        assert_unmodified(before, args[:4])

    run()
    # Past the int32 range: every product at its largest, summed over a whole row (int8: 4096 columns per
    # channel, |sum| = 4096 * 32767 * 128 ~ 1.7e10; int4: 16400 columns per channel, ~4.3e9).
    for bits, k, lowest in ((8, 4096, -128), (4, 16400, -8)):
        q = np.full((2, k), lowest)
        values = q.astype(np.int8) if bits == 8 else pack_int4(q)
        scales = np.ones((2, 1), np.float32)
        x = np.full((1, k), 3.0, np.float32)
        compare((x, values, scales, None, bits, k), q.astype(np.float64))


@pytest.mark.parametrize("kernel_set", [reference, numba_cpu], ids=["reference", "numba"])
@paths
def test_int16_activations_are_the_exact_integer_sums_scaled(kernel_set, path):
    with on_path(path):
        check_int16_activations(kernel_set.quantized_matmul)


def _peak_traced_bytes(call) -> int:
    """Peak bytes NumPy allocated during call() (arrays register with tracemalloc)."""
    call()  # compile first: the JIT's own allocations are not the kernel's
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_numba_kernel_never_builds_the_float32_weight():
    """The point of the kernel: reading 1 byte per weight, not 4. The reference materialises the float32 W
    (N x K x 4 bytes); the Numba kernel's allocations stay far below one W."""
    rng = np.random.default_rng(0)
    n = k = 512
    x = rng.standard_normal((1, k), dtype=np.float32)
    values = rng.integers(-127, 128, (n, k), dtype=np.int8)
    scales = rng.random((n, 1), dtype=np.float32)
    weight_bytes = n * k * 4
    args = (x, values, scales, None, 8, k)
    assert _peak_traced_bytes(lambda: reference.quantized_matmul(*args)) >= weight_bytes  # the probe sees W
    for activations in ("float32", "int16"):
        assert _peak_traced_bytes(lambda: numba_cpu.quantized_matmul(*args, activations=activations)) < weight_bytes // 8


# ------------------------------------------------------------------ the kernels behind the dispatch
def test_a_half_precision_input_is_upcast_and_integer_outputs_stay_integers():
    """kernels.active(float16 array) computes in float32 and rounds back; int8_matmul's int32 sums stay int32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8)).astype(np.float16)
    values = rng.integers(-127, 128, (3, 8), dtype=np.int8)
    scales = rng.random((3, 1), dtype=np.float32)
    half_set = kernels.active(x)
    out = half_set.quantized_matmul(x, values, scales, None, 8, 8)
    assert out.dtype == np.float16
    want = reference.quantized_matmul(x.astype(np.float32), values, scales, None, 8, 8)
    np.testing.assert_allclose(out, want, rtol=2e-3, atol=1e-3)
    product = half_set.int8_matmul(values, values)
    assert product.dtype == np.int32
    np.testing.assert_array_equal(product, reference.int8_matmul(values, values))


@pytest.mark.parametrize("activations", ["float32", "int16"])
@pytest.mark.parametrize("bits", [8, 4])
def test_the_reference_runs_on_gpu_arrays_without_host_copies(monkeypatch, bits, activations):
    """The cupy set runs these reference functions on GPU arrays: on the strict fake GPU they must never
    build a host (NumPy) array, and the result stays on the device."""
    rng = np.random.default_rng(bits)
    q = rng.integers(-7, 8, (5, 8))
    host = dict(x=rng.standard_normal((2, 8), dtype=np.float32),
                values=q.astype(np.int8) if bits == 8 else pack_int4(q),
                scales=rng.random((5, 2), dtype=np.float32), zero_points=rng.integers(-7, 8, (5, 2)).astype(np.int8))
    want = reference.quantized_matmul(host["x"], host["values"], host["scales"], host["zero_points"], bits, 4,
                                      activations)
    want_int = reference.int8_matmul(q.astype(np.int8), q.astype(np.int8))
    cupy = fake_gpu.install(monkeypatch)
    device = {name: cupy.asarray(array) for name, array in host.items()}
    out = kernels.active(device["x"]).quantized_matmul(device["x"], device["values"], device["scales"],
                                                       device["zero_points"], bits, 4, activations)
    assert isinstance(out, fake_gpu.FakeDeviceArray)
    np.testing.assert_allclose(out.get(), want, rtol=1e-6, atol=1e-6)
    q_device = cupy.asarray(q.astype(np.int8))
    np.testing.assert_array_equal(kernels.active(q_device).int8_matmul(q_device, q_device).get(), want_int)


# ------------------------------------------------------------------ errors that teach
X = np.zeros((2, 8), np.float32)
Q8 = np.zeros((3, 8), np.int8)
Q4 = np.zeros((3, 4), np.uint8)
S = np.ones((3, 1), np.float32)
BAD_QUANTIZED_CALLS = [
    ((X.astype(np.float64), Q8, S, None, 8, 8), "x must be a 2-D float32"),
    ((X[0], Q8, S, None, 8, 8), "x must be a 2-D float32"),
    ((X, Q8, S, None, 3, 8), "bits must be 8 or 4"),
    ((X, Q8.astype(np.int16), S, None, 8, 8), r"values must be int8 of shape \(N, 8\)"),
    ((X, Q8, S, None, 4, 8), r"values must be uint8 of shape \(N, 4\)"),
    ((X, Q8[:, :6], S, None, 8, 8), r"values must be int8 of shape \(N, 8\)"),
    ((X, Q8, np.ones((3, 3), np.float32), None, 8, 3), "group_size must be a positive divisor of K = 8"),
    ((X, Q4, np.ones((3, 8), np.float32), None, 4, 1), "positive divisor of K = 8 and even"),
    ((X, Q8, np.ones((2, 1), np.float32), None, 8, 8), r"scales must be float32 of shape \(1, 1\)"),
    ((X, Q8, S.astype(np.float64), None, 8, 8), r"scales must be float32"),
    ((X, Q8, S, np.zeros((3, 1), np.int32), 8, 8), "zero_points must be None"),
    ((X, Q8, S, np.zeros((1, 1), np.int8), 8, 8), "zero_points must be None"),
    ((X, Q8, S, None, 8, 8, "int8"), "activations must be 'float32'.*or 'int16'"),
]
BAD_INT8_CALLS = [
    ((Q8.astype(np.float32), Q8), "a must be a 2-D int8 array, got float32"),
    ((Q8, Q8[0]), "b must be a 2-D int8 array"),
    ((Q8, Q8[:, :5]), "their K must agree"),
    ((np.zeros((1, 140_000), np.int8), np.zeros((1, 140_000), np.int8)), "could overflow the int32 sum"),
]


@pytest.mark.parametrize("kernel_set", [reference, numba_cpu], ids=["reference", "numba"])
@pytest.mark.parametrize("args, message", BAD_QUANTIZED_CALLS)
def test_quantized_matmul_rejects_a_malformed_weight_with_a_message(kernel_set, args, message):
    with pytest.raises(ValueError, match="quantized_matmul: .*" + message):
        kernel_set.quantized_matmul(*args)


@pytest.mark.parametrize("kernel_set", [reference, numba_cpu], ids=["reference", "numba"])
@pytest.mark.parametrize("args, message", BAD_INT8_CALLS)
def test_int8_matmul_rejects_bad_operands_with_a_message(kernel_set, args, message):
    with pytest.raises(ValueError, match="int8_matmul: .*" + message):
        kernel_set.int8_matmul(*args)


# ------------------------------------------------------------------ the checks catch the broken kernels
@pytest.mark.broken
@pytest.mark.parametrize("check, bug", [
    (check_int8_matmul, broken.int8_matmul_with_int16_accumulator),
    (check_quantized_matmul, broken.quantized_matmul_with_nibbles_swapped),
    (check_int16_activations, broken.quantized_matmul_with_nibbles_swapped),
    (check_int16_activations, broken.quantized_matmul_with_int16_activations_summed_in_int32),
], ids=lambda f: f.__name__)
def test_check_catches_broken_kernel(check, bug):
    with pytest.raises(AssertionError):
        check(bug)


# ------------------------------------------------------------------ the benchmark's harness (no timings asserted)
def test_bench_quantized_tiny_writes_every_field_and_the_plot(tmp_path):
    parser = argparse.ArgumentParser(prog="python -m tinygrad_llm")
    command.register(parser.add_subparsers(dest="command", required=True))
    out, plot = tmp_path / "quantized.json", tmp_path / "roofline.png"
    args = parser.parse_args(["bench", "quantized", "--tiny", "--out", str(out), "--plot", str(plot)])
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"meta", "machine", "roof", "decode", "gemm", "target", "plot"} and plot.exists()
    assert report["meta"]["mode"] == "tiny" and [(c["batch"], c["d"]) for c in report["decode"]] == \
        [(1, 64), (2, 64), (1, 128), (2, 128)]
    for case in report["decode"] + report["gemm"]:
        for name, result in case["results"].items():
            fields = {"median_ms", "gflops", "gbs", "intensity", "attainable_gflops", "fraction_of_roof"}
            assert fields <= set(result), name
            assert name in ("blas", "blas sgemm") or "speedup_vs_blas" in result, name
    decode = report["decode"][0]["results"]
    # compulsory bytes: 4 per float32 weight, 1 per int8 weight, half per int4 weight (+ scales, x and output)
    assert decode["blas"]["bytes"] > decode["numba int8"]["bytes"] > decode["numba int4"]["bytes"]
    assert decode["numba w8a16"]["bytes"] == decode["numba int8"]["bytes"]  # same weight, other loop
    assert report["target"]["kernel"] == "numba w8a16"
    assert report["target"]["met"] is None, "the tiny sizes have no d >= 2048 case to judge the target on"
