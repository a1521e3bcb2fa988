"""The GPU kernel set: CUDA sources in kernels/cuda/, launched by kernels/cupy_gpu.py.

Without a GPU (CI and this project's machines) the sources are still checked:
    - every .cu file compiles with nvcc for sm_80 (A100) and sm_90 (H100), warnings and register spills
      treated as errors (skipped where nvcc is absent);
    - every kernel name cupy_gpu.py launches exists in the sources as NAME_f32 and NAME_f64, no kernel
      is left unlaunched, and the launch constants cupy_gpu.py sizes shared memory with match the sources;
    - importing cupy_gpu without CuPy is an ImportError that says what to install.
With CuPy and a GPU, every kernel is held to the NumPy reference (kernels/reference/) over shapes drawn by
hypothesis, computed in float64 on the same inputs. Tolerances, with eps = 1e-6 for float32 and 1e-13 for
float64 (float32 and float64 machine epsilons with headroom for sums taken in a different order and
for expf/erff, which are within 2 ulp):
    softmax, GELU, matmul      |got - want| <= 10 eps * (1 + |want|)
    cross-entropy              |got - want| <= 2 eps * (10 + max|logits|) * (1 + max|w|)
    layer norm                 |got - want| <= 20 eps * (1 + max|want|)
    attention, S = max|score|  forward: 2 eps (1 + S) max|v|; gradients: 2 eps (1 + S) (1 + max|want|)
Fully masked queries: out exactly 0, lse exactly -inf, gradients exactly 0.
"""
import ast
import importlib
import importlib.util
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.kernels import cuda_launch, reference

pytestmark = pytest.mark.kernels

KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
CUDA_DIR = KERNELS_DIR / "cuda"
LAUNCHER = KERNELS_DIR / "cupy_gpu.py"
SOURCES = sorted(CUDA_DIR.glob("*.cu"))
NVCC = shutil.which("nvcc")


def launcher_constant(name):
    """A literal assigned at the top level of cupy_gpu.py, read without importing it (that needs CuPy)."""
    for node in ast.parse(LAUNCHER.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"cupy_gpu.py defines no {name}")


def defined_kernels(source):
    """The extern "C" kernel names a .cu file defines."""
    return set(re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(', source.read_text(encoding="utf-8")))


# ------------------------------------------------------------------ without a GPU
def test_there_is_one_source_per_kernel_family():
    assert {s.name for s in SOURCES} == set(launcher_constant("KERNELS")), \
        "kernels/cuda/*.cu and cupy_gpu.KERNELS must list the same files"


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_launched_kernel_exists_in_both_precisions(source):
    names = launcher_constant("KERNELS")[source.name]
    expected = {f"{name}_{suffix}" for name in names for suffix in launcher_constant("SUFFIXES").values()}
    defined = defined_kernels(source)
    assert expected <= defined, f"{source.name} lacks kernels that cupy_gpu.py looks up: {sorted(expected - defined)}"
    assert defined <= expected, f"{source.name} defines kernels cupy_gpu.py never launches: {sorted(defined - expected)}"


def test_every_kernel_the_launcher_calls_is_listed():
    """A name passed to _kernel(...) or _launch_attention(...) must be in KERNELS (a typo fails here, not on a GPU)."""
    listed = {name for names in launcher_constant("KERNELS").values() for name in names}
    called = {
        node.args[0].value
        for node in ast.walk(ast.parse(LAUNCHER.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("_kernel", "_launch_attention")
        and node.args and isinstance(node.args[0], ast.Constant)
    }
    assert called, "found no kernel launches in cupy_gpu.py"
    assert called <= listed, f"cupy_gpu.py launches unlisted kernels: {sorted(called - listed)}"
    assert called == listed, f"listed but never launched: {sorted(listed - called)}"


def cuda_int_constants(source):
    """constexpr int NAME = EXPR; of common.cuh and then `source`, evaluated in order."""
    values = {}
    for path in (CUDA_DIR / "common.cuh", source):
        for name, expr in re.findall(r"constexpr\s+int\s+(\w+)\s*=\s*([^;]+);", path.read_text(encoding="utf-8")):
            values[name] = eval(expr.replace("/", "//"), {"__builtins__": {}}, dict(values))
    return values


def test_launch_constants_match_the_sources():
    for source, constants in cuda_launch.CUDA_CONSTANTS.items():
        in_source = cuda_int_constants(CUDA_DIR / source)
        for name, value in constants.items():
            assert in_source.get(name) == value, \
                f"cuda_launch.CUDA_CONSTANTS[{source!r}][{name!r}] = {value}, but {source} says {in_source.get(name)}"


@given(n_rows=st.integers(1, 10_000), n_cols=st.integers(1, 100_000))
def test_row_launches_are_whole_warps_within_the_limit(n_rows, n_cols):
    grid, block = cuda_launch.row_launch(n_rows, n_cols)
    assert grid == (n_rows,) and block[0] % cuda_launch.WARP == 0 and cuda_launch.WARP <= block[0] <= 1024
    # each thread handles about COLUMNS_PER_THREAD columns, unless the block is already at 1024 threads
    assert block[0] == 1024 or block[0] * cuda_launch.COLUMNS_PER_THREAD >= n_cols


@given(rows=st.integers(1, 5000), heads=st.integers(1, 64), head_dim=st.integers(1, 128), itemsize=st.sampled_from([4, 8]))
def test_attention_launches_cover_every_row_and_fit_the_documented_shared_memory(rows, heads, head_dim, itemsize):
    grid, block, shared = cuda_launch.attention_launch(rows, heads, head_dim, itemsize)
    per_head = grid[0] // heads
    assert grid[0] % heads == 0 and (per_head - 1) * cuda_launch.ATTENTION["BLOCK_ROWS"] < rows <= per_head * 8
    assert block == (cuda_launch.ATTENTION_THREADS,)
    assert shared == (2 * 8 * head_dim + 2 * 32 * (head_dim + 1) + 2 * 32) * itemsize   # attention.cu's header
    if itemsize == 4:   # the header: float32 fits the default 48 KiB at every head dim up to 128
        assert shared <= cuda_launch.DEFAULT_SHARED_LIMIT


def test_the_gpu_set_has_every_function_of_the_kernel_contract():
    """The ops call any function of kernels/reference on whatever set their data's device picks."""
    from tinygrad_llm.kernels import reference

    tree = ast.parse(LAUNCHER.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    assert set(reference.__all__) <= defined, f"cupy_gpu.py lacks {sorted(set(reference.__all__) - defined)}"


def test_sources_include_nothing_nvrtc_lacks():
    """CuPy compiles with NVRTC, which has no standard headers; the one include is the shared header."""
    def includes(path):
        return re.findall(r"^\s*#\s*include\s*(\S+)", path.read_text(encoding="utf-8"), flags=re.M)
    for source in SOURCES:
        assert includes(source) == ['"common.cuh"'], \
            f"{source.name} includes {includes(source)}; only \"common.cuh\" is allowed"
    assert includes(CUDA_DIR / "common.cuh") == [], "common.cuh must include nothing"


def compile_all(arch, out_dir):
    """(source name, nvcc's return code and messages) for every source, two compiles at a time."""
    def one(source):
        result = subprocess.run(
            [NVCC, f"-arch={arch}", "-cubin", "-std=c++17", "-Werror", "all-warnings",
             "-Xptxas", "-warn-spills,-warn-lmem-usage,-Werror", "-o", str(out_dir / f"{source.stem}.cubin"),
             str(source)],
            capture_output=True, text=True,
        )
        return source.name, result.returncode, result.stdout + result.stderr
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, SOURCES))


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_source_compiles_without_warnings(arch, tmp_path):
    """-cubin runs the whole device compile (front end and ptxas); spills to local memory count as failures
    because every kernel here is meant to keep its working set in registers and shared memory."""
    failures = [f"{name}:\n{messages}" for name, code, messages in compile_all(arch, tmp_path) if code or messages.strip()]
    assert not failures, f"nvcc -arch={arch}:\n" + "\n".join(failures)


def test_import_without_cupy_is_a_clear_import_error():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: the import succeeds or fails for a device reason")
    with pytest.raises(ImportError, match=r"needs CuPy.*pip install -e '\.\[gpu\]'"):
        importlib.import_module("tinygrad_llm.kernels.cupy_gpu")


# ------------------------------------------------------------------ with a GPU
@pytest.fixture(scope="module")
def gpu():
    """(cupy, the cupy kernel set); skips without CuPy or without a usable GPU."""
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("CuPy sees no GPU")
    except RuntimeError as error:
        pytest.skip(f"CuPy cannot start CUDA: {error}")
    return cupy, importlib.import_module("tinygrad_llm.kernels.cupy_gpu")


DTYPES = [np.float32, np.float64]
EPS = {np.float32: 1e-6, np.float64: 1e-13}
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
rows = st.integers(0, 40)
cols = st.integers(1, 300) | st.integers(1000, 5000)   # one warp, a few warps, 1024 threads striding


def draw(seed, shape, dtype, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def run(gpu, fn, *args, **kwargs):
    """fn on device copies of the NumPy arguments; results back as NumPy."""
    cupy, _ = gpu
    device_args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    result = fn(*device_args, **kwargs)
    return tuple(cupy.asnumpy(r) for r in result) if isinstance(result, tuple) else cupy.asnumpy(result)


def as64(*arrays):
    return [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in arrays]


def assert_close(got, want, tol, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.max(np.abs(got.astype(np.float64) - want), initial=0.0)
    assert err <= tol, f"{what}: max error {err:.3g} above tolerance {tol:.3g}"


@given(n=rows, c=cols, dtype=dtypes, scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]), seed=seeds)
def test_softmax_matches_the_reference(gpu, n, c, dtype, scale, seed):
    x, g = draw(seed, (n, c), dtype, scale), draw(seed + 1, (n, c), dtype)
    y = run(gpu, gpu[1].softmax_forward, x)
    want = reference.softmax_forward(x.astype(np.float64))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, rtol=10 * EPS[dtype], atol=10 * EPS[dtype])
    dx = run(gpu, gpu[1].softmax_backward, y, g)
    want_dx = reference.softmax_backward(*as64(y, g))
    np.testing.assert_allclose(dx, want_dx, rtol=10 * EPS[dtype], atol=10 * EPS[dtype] * (1 + np.abs(want_dx).max(initial=0)))


@given(n=rows, c=cols, dtype=dtypes, smoothing=st.sampled_from([0.0, 0.1]), weighted=st.booleans(),
       scale=st.sampled_from([1.0, 30.0]), seed=seeds)
def test_cross_entropy_matches_the_reference(gpu, n, c, dtype, smoothing, weighted, scale, seed):
    rng = np.random.default_rng(seed)
    logits = draw(seed, (n, c), dtype, scale)
    targets = rng.integers(0, c, n)
    targets[rng.random(n) < 0.2] = -100                               # some padding rows
    weight = (rng.random(c) + 0.5 if weighted else np.ones(c)).astype(dtype)
    grad_rows = draw(seed + 1, (n,), dtype)
    kernels = gpu[1]
    losses, lse = run(gpu, kernels.cross_entropy_forward, logits, targets, weight, label_smoothing=smoothing)
    want_losses, want_lse = reference.cross_entropy_forward(*as64(logits, targets, weight), label_smoothing=smoothing)
    tol = 2 * EPS[dtype] * (10 + np.abs(logits).max(initial=0)) * (1 + weight.max())
    assert_close(lse, want_lse, tol, "cross_entropy lse")
    assert_close(losses, want_losses, tol, "cross_entropy losses")
    assert (losses[targets == -100] == 0).all(), "ignored rows must have loss exactly 0"
    dx = run(gpu, kernels.cross_entropy_backward, logits, lse, targets, weight, grad_rows, label_smoothing=smoothing)
    want_dx = reference.cross_entropy_backward(*as64(logits, want_lse, targets, weight, grad_rows),
                                               label_smoothing=smoothing)
    assert_close(dx, want_dx, tol * (1 + np.abs(grad_rows).max(initial=0)), "cross_entropy gradient")
    assert (dx[targets == -100] == 0).all(), "ignored rows must get gradient exactly 0"


@given(n=rows, d=cols, dtype=dtypes, scale=st.sampled_from([1e-2, 1.0, 30.0]), seed=seeds)
def test_layer_norm_matches_the_reference(gpu, n, d, dtype, scale, seed):
    x, g = draw(seed, (n, d), dtype, scale), draw(seed + 1, (n, d), dtype)
    weight, bias = draw(seed + 2, (d,), dtype), draw(seed + 3, (d,), dtype)
    kernels = gpu[1]
    y, mean, rstd = run(gpu, kernels.layer_norm_forward, x, weight, bias)
    for got, want, what in zip((y, mean, rstd), reference.layer_norm_forward(*as64(x, weight, bias)), ("y", "mean", "rstd")):
        assert_close(got, want, 20 * EPS[dtype] * (1 + np.abs(want).max(initial=0)), f"layer_norm {what}")
    grads = run(gpu, kernels.layer_norm_backward, g, x, weight, mean, rstd)
    for got, want, what in zip(grads, reference.layer_norm_backward(*as64(g, x, weight, mean, rstd)), ("dx", "dw", "db")):
        assert_close(got, want, 20 * EPS[dtype] * (1 + np.abs(want).max(initial=0)), f"layer_norm {what}")


@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=3), approximate=st.sampled_from(["none", "tanh"]),
       dtype=dtypes, seed=seeds)
def test_gelu_matches_the_reference(gpu, shape, approximate, dtype, seed):
    x, g = draw(seed, shape, dtype, 3.0), draw(seed + 1, shape, dtype)
    y = run(gpu, gpu[1].gelu_forward, x, approximate=approximate)
    want = reference.gelu_forward(x.astype(np.float64), approximate=approximate)
    assert_close(y, want, 10 * EPS[dtype] * (1 + np.abs(want).max(initial=0)), "gelu")
    dx = run(gpu, gpu[1].gelu_backward, x, g, approximate=approximate)
    want_dx = reference.gelu_backward(*as64(x, g), approximate=approximate)
    assert_close(dx, want_dx, 10 * EPS[dtype] * (1 + np.abs(want_dx).max(initial=0)), "gelu gradient")


@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=2), rows=st.integers(1, 9), d=st.integers(1, 40),
       dtype=dtypes, seed=seeds)
def test_embedding_backward_sums_repeated_ids(gpu, shape, rows, d, dtype, seed):
    ids = np.random.default_rng(seed).integers(0, rows, shape)   # few rows: ids repeat
    grad_out = draw(seed + 1, tuple(shape) + (d,), dtype)
    got = run(gpu, gpu[1].embedding_backward, ids, grad_out, rows)
    want = reference.embedding_backward(ids, grad_out.astype(np.float64), rows)
    assert_close(got, want, 10 * EPS[dtype] * (1 + np.abs(grad_out).sum(initial=0)), "embedding backward")


@given(batch=st.integers(0, 3), m=st.integers(1, 70), k=st.integers(1, 70), n=st.integers(1, 70), dtype=dtypes,
       seed=seeds)
def test_matmul_matches_numpy(gpu, batch, m, k, n, dtype, seed):
    lead = (batch,) if batch else ()
    a, b = draw(seed, lead + (m, k), dtype), draw(seed + 1, lead + (k, n), dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert_close(run(gpu, gpu[1].matmul, a, b), want, 10 * EPS[dtype] * k * (1 + np.abs(want).max()), "matmul")


# ------------------------------------------------------------------ attention
attention_cases = st.fixed_dictionaries({
    "batch": st.integers(1, 2), "heads": st.integers(1, 3), "tq": st.integers(1, 40), "tk": st.integers(1, 70),
    "head_dim": st.sampled_from([1, 3, 16, 33, 64, 128]), "causal": st.booleans(),
    "padded": st.sampled_from([0.0, 0.3, 1.0]), "dtype": dtypes, "seed": seeds,
})


def attention_inputs(case):
    """q, k, v, upstream gradient and padding mask (None when nothing is padded) for one drawn case."""
    b, h, tq, tk, d, dtype, seed = (case[key] for key in ("batch", "heads", "tq", "tk", "head_dim", "dtype", "seed"))
    q, k, v = draw(seed, (b, h, tq, d), dtype), draw(seed + 1, (b, h, tk, d), dtype), draw(seed + 2, (b, h, tk, d), dtype)
    grad_out = draw(seed + 3, (b, h, tq, d), dtype)
    padding = np.random.default_rng(seed).random((b, tk)) < case["padded"] if case["padded"] else None
    return q, k, v, grad_out, padding


def score_bound(q, k):
    return np.abs(q.astype(np.float64) @ np.swapaxes(k, -1, -2).astype(np.float64)).max() / np.sqrt(q.shape[-1])


@given(case=attention_cases)
def test_attention_matches_the_reference(gpu, case):
    q, k, v, grad_out, padding = attention_inputs(case)
    options = dict(causal=case["causal"], padding_mask=padding)
    kernels, dtype = gpu[1], case["dtype"]
    out, lse = run(gpu, kernels.attention_forward, q, k, v, **options)
    want_out, want_lse = reference.attention_forward(*as64(q, k, v), **options)
    tol = 2 * EPS[dtype] * (1 + score_bound(q, k))
    unseen = np.isneginf(want_lse)
    assert np.array_equal(np.isneginf(lse), unseen), "lse must be -inf exactly for the queries that see no key"
    assert (out[unseen] == 0).all(), "a query that sees no key must output exactly 0"
    assert_close(out, want_out, tol * np.abs(v).max(), "attention output")
    assert_close(lse[~unseen], want_lse[~unseen], tol, "attention lse")

    grads = run(gpu, kernels.attention_backward, q, k, v, out, lse, grad_out, **options)
    want_grads = reference.attention_backward(*as64(q, k, v, want_out), want_lse, grad_out.astype(np.float64), **options)
    for got, want, what in zip(grads, want_grads, ("dq", "dk", "dv")):
        assert_close(got, want, tol * (1 + np.abs(want).max()), f"attention {what}")
    if padding is not None:
        hidden = np.broadcast_to(padding[:, None, :, None], k.shape)
        assert (grads[1][hidden] == 0).all() and (grads[2][hidden] == 0).all(), "padded keys must get zero gradient"


@given(case=attention_cases, cut=st.integers(0, 39))
def test_causal_outputs_ignore_the_future(gpu, case, cut):
    """With Tq == Tk, changing every query, key and value after position `cut` leaves the outputs of
    positions <= cut bit-for-bit unchanged (the kernel must never read a future key)."""
    case = dict(case, tk=case["tq"], causal=True)
    q, k, v, _, padding = attention_inputs(case)
    cut = min(cut, case["tq"] - 1)
    changed = [a.copy() for a in (q, k, v)]
    for a in changed:
        a[:, :, cut + 1:] = draw(case["seed"] + 9, a[:, :, cut + 1:].shape, case["dtype"], 100.0)
    before = run(gpu, gpu[1].attention_forward, q, k, v, causal=True, padding_mask=padding)
    after = run(gpu, gpu[1].attention_forward, *changed, causal=True, padding_mask=padding)
    for b, a, what in zip(before, after, ("output", "lse")):
        assert np.array_equal(b[:, :, :cut + 1], a[:, :, :cut + 1]), f"causal {what} changed when the future did"


@given(case=attention_cases)
def test_padded_keys_are_ignored(gpu, case):
    """Replacing the keys and values at padded positions by anything leaves every output bit-for-bit unchanged."""
    case = dict(case, padded=0.3)
    q, k, v, _, padding = attention_inputs(case)
    hidden = np.broadcast_to(padding[:, None, :, None], k.shape)
    k2, v2 = k.copy(), v.copy()
    k2[hidden], v2[hidden] = 1e4, -1e4
    before = run(gpu, gpu[1].attention_forward, q, k, v, causal=case["causal"], padding_mask=padding)
    after = run(gpu, gpu[1].attention_forward, q, k2, v2, causal=case["causal"], padding_mask=padding)
    for b, a, what in zip(before, after, ("output", "lse")):
        assert np.array_equal(b, a), f"attention {what} changed when padded keys did"


def test_attention_rejects_a_head_dim_beyond_the_kernel(gpu):
    q = np.zeros((1, 1, 2, 129), np.float32)
    with pytest.raises(ValueError, match="head dim 129 exceeds 128"):
        run(gpu, gpu[1].attention_forward, q, q, q)


def test_integer_input_is_a_clear_type_error(gpu):
    with pytest.raises(TypeError, match="softmax.*float32 or float64"):
        run(gpu, gpu[1].softmax_forward, np.zeros((2, 3), np.int64))
