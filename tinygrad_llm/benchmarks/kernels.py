"""The kernel ladder: every kernel set that imports, on a ladder of sizes, against NumPy's BLAS and PyTorch.

For each case it records the median time, the achieved GFLOP/s and GB/s, and speedups measured in the same
run: `speedup[X] = time of X / time of this set` (above 1: this set is faster than X). X is the NumPy
reference kernel set, numpy's BLAS (matmul only: the reference matmul IS numpy's `@`, so the two agree),
and PyTorch CPU when it is installed.

FLOP and byte counts (what the roofline uses) are written next to each case below. Bytes are the
COMPULSORY traffic: each input read once and each output written once, as a perfectly fused kernel would;
a kernel that makes extra passes moves more, which is exactly what the roofline shows as a gap to the roof.
Transcendentals (exp, log, sqrt) count as one FLOP each. Attention counts the USEFUL matmul FLOPs of the
causal half only (what FlashAttention papers and PyTorch count), not the softmax.

The numba set is loaded one module at a time (`tinygrad_llm.kernels.numba_cpu.<module>`), so the
benchmark runs whatever kernels exist, and lists the ones that are missing.
"""
from __future__ import annotations

import datetime
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import kernels as kernel_dispatch
from ..device import check_device, cupy_module, to_device
from .roofline import measure_roof, plot_roofline
from .timing import OtherLoad, time_call, time_interleaved

KERNEL_FUNCTIONS = {
    "matmul": ["matmul"],
    "softmax": ["softmax_forward", "softmax_backward"],
    "cross_entropy": ["cross_entropy_forward", "cross_entropy_backward"],
    "layer_norm": ["layer_norm_forward", "layer_norm_backward"],
    "attention": ["attention_forward", "attention_backward"],
    "gelu": ["gelu_forward", "gelu_backward"],
    "embedding": ["embedding_backward"],
}
KERNEL_SET_PACKAGES = {"reference": "tinygrad_llm.kernels.reference", "numba": "tinygrad_llm.kernels.numba_cpu",
                       "cupy": "tinygrad_llm.kernels.cupy_gpu"}
# The numba set's own matmul entry is BLAS (kernels/numba_cpu/__init__.py says why); the benchmark times the
# Numba matmul itself, which is what the matmul-vs-BLAS ratio is about.
MODULE_NAMES = {("numba", "matmul"): "blocked_matmul"}

SIZES = {
    #        matmul n                           (rows, cols) of softmax/CE/LN      attention (B, H, D), T
    "full": dict(matmul=[64, 128, 256, 512, 1024, 2048], rows=[(768, 256), (4096, 1024)], bhd=(4, 4, 64), T=[256, 512, 1024]),
    "fast": dict(matmul=[64, 128, 256, 512, 1024], rows=[(768, 256), (4096, 1024)], bhd=(4, 4, 64), T=[256, 512]),
    "tiny": dict(matmul=[32, 64], rows=[(64, 32), (128, 64)], bhd=(1, 2, 16), T=[32, 64]),
}
# `--device cuda` in full mode: the CPU sizes and larger, attention up to T = 4096 (fast and tiny stay as above)
GPU_FULL_SIZES = dict(matmul=[256, 1024, 2048, 4096, 8192], rows=[(768, 256), (4096, 1024), (16384, 4096)],
                      bhd=(4, 4, 64), T=[256, 1024, 2048, 4096])


# ---------------------------------------------------------------------------------------------------------
# Kernel sets
# ---------------------------------------------------------------------------------------------------------
def load_kernel_sets(names=("reference", "numba")) -> dict:
    """{set: {"functions": {name: fn}, "missing": [names], "errors": {module: message}}}."""
    sets = {}
    for name in names:
        functions, missing, errors = {}, [], {}
        for module_name, function_names in KERNEL_FUNCTIONS.items():
            try:
                if name == "cupy":  # one module holds the whole GPU set (the one the ops dispatch to)
                    module = kernel_dispatch._gpu_kernels()
                else:
                    module = importlib.import_module(f"{KERNEL_SET_PACKAGES[name]}.{MODULE_NAMES.get((name, module_name), module_name)}")
            except Exception as error:  # a kernel file that does not exist yet, or does not import
                errors[module_name] = f"{type(error).__name__}: {error}"
                missing += function_names
                continue
            for function_name in function_names:
                if callable(getattr(module, function_name, None)):
                    functions[function_name] = getattr(module, function_name)
                else:
                    missing.append(function_name)
        sets[name] = {"functions": functions, "missing": missing, "errors": errors}
    return sets


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Cases: inputs, FLOP and byte counts, and how each kernel set (and torch) runs them
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    kernel: str                   # e.g. "softmax fwd+bwd"
    shape: str
    needs: tuple                  # kernel functions a set must have to run this case
    flops: float                  # FLOPs per call (see the module docstring for the conventions)
    bytes: float                  # compulsory bytes per call
    unit: str                     # the figure of merit printed: "GFLOP/s" (compute bound) or "GB/s" (memory bound)
    setup: Callable[[], dict]     # builds the inputs (numpy arrays; the harness moves them to the device)
    run: Callable                 # run(functions, inputs) -> a zero-argument callable doing one call
    torch_run: Callable | None    # torch_run(torch, inputs as torch tensors) -> a zero-argument callable, or None


def _leaf(tensor):
    """A fresh torch leaf that records gradients, sharing the input's memory."""
    return tensor.detach().requires_grad_()


def torch_inputs(torch, inputs: dict, device: str = "cpu") -> dict:
    """The case's NumPy inputs as torch tensors on `device` ('cuda' copies them to the GPU once, up front)."""
    return {name: torch.from_numpy(array).to(device) for name, array in inputs.items()}


def _rng():
    return np.random.default_rng(0)


def _matmul_case(n):
    def setup():
        rng = _rng()
        return {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}

    # FLOPs: n^3 multiply-adds = 2 n^3.  Bytes: read A and B, write C = 3 n^2 * 4.
    return Case("matmul", f"{n}x{n}x{n}", ("matmul",), 2.0 * n**3, 3 * n * n * 4, "GFLOP/s", setup,
                lambda f, x: (lambda: f["matmul"](x["a"], x["b"])),
                lambda torch, x: _bind_torch_matmul(torch, x))


def _bind_torch_matmul(torch, x):
    a, b = x["a"], x["b"]
    return lambda: torch.matmul(a, b)


def _softmax_cases(rows, cols):
    def setup():
        rng = _rng()
        return {"x": rng.standard_normal((rows, cols), dtype=np.float32) * 3,
                "g": rng.standard_normal((rows, cols), dtype=np.float32)}

    def fwd_bwd(f, x):
        def call():
            y = f["softmax_forward"](x["x"])
            return f["softmax_backward"](y, x["g"])
        return call

    def torch_fwd(torch, x):
        t = x["x"]
        return lambda: torch.softmax(t, dim=-1)

    def torch_fwd_bwd(torch, x):
        t, g = _leaf(x["x"]), x["g"]
        return lambda: torch.autograd.grad(torch.softmax(t, dim=-1), t, g)

    e, shape = rows * cols, f"({rows}, {cols})"
    # forward, per element: max, subtract, exp, sum, divide = 5 FLOPs; bytes: read x, write y = 2 * 4.
    # backward, per element: g*y, sum, subtract, multiply = 4 FLOPs; bytes: read y and g, write dx = 3 * 4.
    return [
        Case("softmax fwd", shape, ("softmax_forward",), 5.0 * e, 2 * e * 4, "GB/s", setup,
             lambda f, x: (lambda: f["softmax_forward"](x["x"])), torch_fwd),
        Case("softmax fwd+bwd", shape, ("softmax_forward", "softmax_backward"), 9.0 * e, 5 * e * 4, "GB/s", setup,
             fwd_bwd, torch_fwd_bwd),
    ]


def _cross_entropy_case(rows, vocab):
    def setup():
        rng = _rng()
        return {"logits": rng.standard_normal((rows, vocab), dtype=np.float32) * 3,
                "targets": rng.integers(0, vocab, rows).astype(np.int64),
                "weight": np.ones(vocab, dtype=np.float32),
                "grad_rows": np.full(rows, 1.0 / rows, dtype=np.float32)}

    def fwd_bwd(f, x):
        def call():
            _, lse = f["cross_entropy_forward"](x["logits"], x["targets"], x["weight"])
            return f["cross_entropy_backward"](x["logits"], lse, x["targets"], x["weight"], x["grad_rows"])
        return call

    def torch_fwd_bwd(torch, x):
        import torch.nn.functional as TF
        logits, targets, g = _leaf(x["logits"]), x["targets"], x["grad_rows"]
        return lambda: torch.autograd.grad(TF.cross_entropy(logits, targets, reduction="none"), logits, g)

    e = rows * vocab
    # forward, per element: max, subtract, exp, sum = 4 FLOPs (+ a log and a gather per row);
    # backward, per element: subtract lse, exp, scale, subtract the target = 4 FLOPs.
    # Bytes: forward reads the logits (4 e), backward reads them and writes the gradient (8 e); per-row
    # vectors (targets, lse, losses) are negligible next to the (N, V) matrix.
    return Case("cross-entropy fwd+bwd", f"({rows}, V={vocab})", ("cross_entropy_forward", "cross_entropy_backward"),
                8.0 * e, 3 * e * 4, "GB/s", setup, fwd_bwd, torch_fwd_bwd)


def _layer_norm_case(rows, dim):
    def setup():
        rng = _rng()
        return {"x": rng.standard_normal((rows, dim), dtype=np.float32),
                "w": (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32),
                "b": (0.1 * rng.standard_normal(dim)).astype(np.float32),
                "g": rng.standard_normal((rows, dim), dtype=np.float32)}

    def fwd_bwd(f, x):
        def call():
            _, mean, rstd = f["layer_norm_forward"](x["x"], x["w"], x["b"], 1e-5)
            return f["layer_norm_backward"](x["g"], x["x"], x["w"], mean, rstd)
        return call

    def torch_fwd_bwd(torch, x):
        import torch.nn.functional as TF
        t, w, b, g = _leaf(x["x"]), _leaf(x["w"]), _leaf(x["b"]), x["g"]
        return lambda: torch.autograd.grad(TF.layer_norm(t, (dim,), w, b, 1e-5), (t, w, b), g)

    e = rows * dim
    # forward, per element: mean (1), centre (1), square + sum (2), normalise (1), scale and shift (2) = 7;
    # backward, per element: x_hat (2), g*w (1), two row means (3), dx (3), dw and db sums (3) = 12.
    # Bytes: forward reads x, writes y (8 e); backward reads g and x, writes dx (12 e); w, b, dw, db are small.
    return Case("layer norm fwd+bwd", f"({rows}, {dim})", ("layer_norm_forward", "layer_norm_backward"),
                19.0 * e, 5 * e * 4, "GB/s", setup, fwd_bwd, torch_fwd_bwd)


def _attention_inputs(b, h, t, d):
    rng = _rng()
    return {name: rng.standard_normal((b, h, t, d), dtype=np.float32) for name in ("q", "k", "v", "do")}


def _attention_cases(b, h, t, d):
    setup = lambda: _attention_inputs(b, h, t, d)  # noqa: E731

    def fwd_bwd(f, x):
        def call():
            out, lse = f["attention_forward"](x["q"], x["k"], x["v"], causal=True)
            return f["attention_backward"](x["q"], x["k"], x["v"], out, lse, x["do"], causal=True)
        return call

    def torch_fwd(torch, x):
        import torch.nn.functional as TF
        q, k, v = (x[n] for n in "qkv")
        return lambda: TF.scaled_dot_product_attention(q, k, v, is_causal=True)

    def torch_fwd_bwd(torch, x):
        import torch.nn.functional as TF
        q, k, v = (_leaf(x[n]) for n in "qkv")
        do = x["do"]
        return lambda: torch.autograd.grad(TF.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v), do)

    heads, shape = b * h, f"B={b} H={h} T={t} D={d}"
    # Useful FLOPs, causal (half of the T x T pairs): forward S = QK^T and O = PV, 2 matmuls of 2 T^2 D
    # each, halved = 2 T^2 D per head. Backward: recompute S, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q,
    # 5 matmuls, halved = 5 T^2 D per head. Bytes: forward reads q, k, v and writes o (4 T D floats per head);
    # backward reads q, k, v, o, dO and writes dq, dk, dv (8 T D); the per-row lse is small.
    return [
        Case("attention fwd (causal)", shape, ("attention_forward",), 2.0 * heads * t * t * d, 4 * heads * t * d * 4,
             "GFLOP/s", setup, lambda f, x: (lambda: f["attention_forward"](x["q"], x["k"], x["v"], causal=True)),
             torch_fwd),
        Case("attention fwd+bwd (causal)", shape, ("attention_forward", "attention_backward"),
             7.0 * heads * t * t * d, 12 * heads * t * d * 4, "GFLOP/s", setup, fwd_bwd, torch_fwd_bwd),
    ]


def build_cases(mode: str = "full", device: str = "cpu") -> list:
    sizes = GPU_FULL_SIZES if device == "cuda" and mode == "full" else SIZES[mode]
    cases = [_matmul_case(n) for n in sizes["matmul"]]
    for rows, cols in sizes["rows"]:
        cases += _softmax_cases(rows, cols)
    cases += [_cross_entropy_case(rows, cols) for rows, cols in sizes["rows"]]
    cases += [_layer_norm_case(rows, cols) for rows, cols in sizes["rows"]]
    b, h, d = sizes["bhd"]
    for t in sizes["T"]:
        cases += _attention_cases(b, h, t, d)
    return cases


# ---------------------------------------------------------------------------------------------------------
# Running the ladder
# ---------------------------------------------------------------------------------------------------------
def _result(timing, case) -> dict:
    seconds = timing.median_s
    return {**timing.as_dict(), "median_ms": seconds * 1e3, "gflops": case.flops / seconds / 1e9,
            "gbs": case.bytes / seconds / 1e9}


def run_case(case: Case, kernel_sets: dict, torch=None, repeats: int = 5, device: str = "cpu") -> dict:
    with OtherLoad() as load:
        row = _run_case(case, kernel_sets, torch, repeats, device)
    row["others_cpu_fraction"] = load.fraction
    return row


def _finished(call, synchronize):
    """On a GPU a launch returns before the kernel ends: time the call up to the device's synchronisation."""
    if synchronize is None:
        return call

    def call_and_wait():
        call()
        synchronize()

    return call_and_wait


def _run_case(case: Case, kernel_sets: dict, torch=None, repeats: int = 5, device: str = "cpu") -> dict:
    inputs = case.setup()
    library_inputs = {name: to_device(array, device) for name, array in inputs.items()}
    library_sync = cupy_module().cuda.Device().synchronize if device == "cuda" else None
    results, contestants = {}, {}
    for name, kernel_set in kernel_sets.items():
        absent = [fn for fn in case.needs if fn not in kernel_set["functions"]]
        if absent:
            results[name] = {"missing": absent}
        else:
            contestants[name] = _finished(case.run(kernel_set["functions"], library_inputs), library_sync)
    if torch is not None and case.torch_run is not None:
        torch_sync = torch.cuda.synchronize if device == "cuda" else None
        contestants["torch"] = _finished(case.torch_run(torch, torch_inputs(torch, inputs, device)), torch_sync)
    # Timed in turns, so load from other processes falls on every contestant alike.
    for name, timing in time_interleaved(contestants, repeats=repeats).items():
        if isinstance(timing, Exception):  # a kernel under construction may fail: report it, keep benchmarking
            results[name] = {"error": f"{type(timing).__name__}: {timing}"}
        else:
            results[name] = _result(timing, case)
    results = {name: results[name] for name in [*kernel_sets, "torch"] if name in results}
    baselines = [name for name in ("reference", "torch") if "median_s" in results.get(name, {})]
    for name, result in results.items():
        if "median_s" not in result:
            continue
        result["speedup"] = {base: results[base]["median_s"] / result["median_s"] for base in baselines if base != name}
        if case.kernel == "matmul" and "reference" in baselines and name != "reference":
            result["speedup"]["blas"] = result["speedup"]["reference"]  # the reference matmul is numpy's BLAS
    return {"kernel": case.kernel, "shape": case.shape, "flops": case.flops, "bytes": case.bytes,
            "intensity": case.flops / case.bytes, "unit": case.unit, "results": results}


# ---------------------------------------------------------------------------------------------------------
# The thread-pool fight: a Numba parallel kernel and a numpy BLAS call, alternating
# ---------------------------------------------------------------------------------------------------------
def thread_fight(numba_functions: dict, repeats: int = 5, tiny: bool = False) -> dict:
    """Per-iteration time of (numba kernel; numpy BLAS product) alternating, against the two run alone.

    Under a spinning thread pool (Numba's OpenMP layer, OpenBLAS's busy-waiting threads) each library's
    idle threads burn the cores the other one needs; the fight ratio alternating / (numba alone + BLAS alone)
    is ~1 when the pools get along. Measured on this project's machines: ~8 under Numba's OpenMP layer,
    and ~2 for the attention pair under OpenBLAS's default spin time
    (tinygrad_llm/thread_pools.py). Two pairs: a short kernel with a small product (hand-off costs
    dominate) and a long kernel after a bigger product (a spinning pool steals the kernel's cores).
    """
    needed = ("softmax_forward", "attention_forward")
    if not all(name in numba_functions for name in needed):
        return {"skipped": f"the numba set lacks {[n for n in needed if n not in numba_functions]}"}
    import numba

    from ..thread_pools import openblas_thread_timeout

    rng = _rng()
    rows, cols, t, n_big = (64, 32, 64, 64) if tiny else (768, 256, 1024, 512)
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    q, k, v = (rng.standard_normal((4, 4, t, 64), dtype=np.float32) for _ in range(3))
    small = rng.standard_normal((128, 128), dtype=np.float32)
    big = rng.standard_normal((n_big, n_big), dtype=np.float32)
    pairs = [(f"numba_cpu softmax_forward {x.shape}", lambda: numba_functions["softmax_forward"](x),
              "numpy float32 128x128 @ 128x128", lambda: small @ small),
             (f"numba_cpu attention_forward causal B=4 H=4 T={t} D=64",
              lambda: numba_functions["attention_forward"](q, k, v, causal=True),
              f"numpy float32 {n_big}x{n_big} @ {n_big}x{n_big}", lambda: big @ big)]
    results = []
    for kernel_name, numba_call, blas_name, blas_call in pairs:
        def alternate(numba_call=numba_call, blas_call=blas_call):
            numba_call()
            blas_call()

        numba_alone = time_call(numba_call, repeats=repeats)
        blas_alone = time_call(blas_call, repeats=repeats)
        both = time_call(alternate, repeats=repeats)
        alone = numba_alone.median_s + blas_alone.median_s
        results.append({"numba_kernel": kernel_name, "blas_call": blas_name,
                        "numba_alone_us": numba_alone.median_s * 1e6, "blas_alone_us": blas_alone.median_s * 1e6,
                        "alternating_us": both.median_s * 1e6, "sum_alone_us": alone * 1e6,
                        "fight_ratio": both.median_s / alone})
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    return {"pairs": results, "threading_layer": layer, "numba_config_threading_layer": numba.config.THREADING_LAYER,
            "numba_num_threads": numba.config.NUMBA_NUM_THREADS, "openblas_thread_timeout": openblas_thread_timeout()}


# ---------------------------------------------------------------------------------------------------------
# Peak extra memory of attention
# ---------------------------------------------------------------------------------------------------------
def _rss_kib(field="VmRSS"):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_rss_extra_mib(call) -> float | None:
    """Peak resident memory during `call` minus resident memory before it (Linux: resets VmHWM first).

    Sees every allocation (NumPy, Numba's runtime, BLAS buffers, torch), but only pages actually touched,
    and memory an allocator keeps in its own pool (torch's, glibc's arenas) is reused without showing up: a
    lower bound."""
    gc.collect()
    _malloc_trim()  # hand freed heap pages back to the system, so reusing them shows up as new pages
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the peak-RSS high-water mark
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    call()
    peak = _rss_kib("VmHWM")
    return None if before is None or peak is None else max(peak - before, 0) / 1024


def _traced_extra_mib(call) -> float:
    """Peak bytes allocated through Python's traced allocators during `call`: NumPy arrays, and arrays that
    Numba's runtime allocates inside compiled code (it allocates through Python's raw allocator; checked).
    torch's own allocator is NOT traced, so torch gets only the peak-RSS figure."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20


def attention_memory(kernel_sets: dict, mode: str = "full", torch=None) -> list:
    """Peak extra memory of causal attention forward and forward+backward, per set and T."""
    b, h, d = SIZES[mode]["bhd"]
    rows = []
    for t in SIZES[mode]["T"]:
        inputs = _attention_inputs(b, h, t, d)
        row = {"T": t, "shape": f"B={b} H={h} T={t} D={d}", "inputs_mib": 4 * inputs["q"].nbytes / 2**20,
               "scores_matrix_mib": b * h * t * t * 4 / 2**20, "sets": {}}
        candidates = {}
        for name, kernel_set in kernel_sets.items():
            if "attention_forward" not in kernel_set["functions"]:
                continue
            candidates[name] = {"fwd": _attention_cases(b, h, t, d)[0].run(kernel_set["functions"], inputs)}
            if "attention_backward" in kernel_set["functions"]:
                candidates[name]["fwd+bwd"] = _attention_cases(b, h, t, d)[1].run(kernel_set["functions"], inputs)
        if torch is not None:
            cases = _attention_cases(b, h, t, d)
            tensors = torch_inputs(torch, inputs)
            candidates["torch"] = {"fwd": cases[0].torch_run(torch, tensors), "fwd+bwd": cases[1].torch_run(torch, tensors)}
        for name, calls in candidates.items():
            row["sets"][name] = {}
            for what, call in calls.items():
                try:
                    call()  # warm: compiled, thread pools up
                    traced = _traced_extra_mib(call) if name != "torch" else None
                    row["sets"][name][what] = {"tracemalloc_mib": traced, "peak_rss_extra_mib": _peak_rss_extra_mib(call)}
                except Exception as error:
                    row["sets"][name][what] = {"error": f"{type(error).__name__}: {error}"}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------
# The machine and its BLAS
# ---------------------------------------------------------------------------------------------------------
def _openblas_runtime() -> dict:
    """Ask the loaded OpenBLAS which core kernels it picked at run time and how many threads it uses."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return {}
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        info = {"library": path}
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                corename = getattr(lib, f"{prefix}_get_corename{suffix}", None)
                if corename is not None and "corename" not in info:
                    corename.restype = ctypes.c_char_p
                    info["corename"] = corename().decode()
                config = getattr(lib, f"{prefix}_get_config{suffix}", None)
                if config is not None and "config" not in info:
                    config.restype = ctypes.c_char_p
                    info["config"] = config().decode()
                threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if threads is not None and "num_threads" not in info:
                    threads.restype = ctypes.c_int
                    info["num_threads"] = threads()
        if len(info) > 1:
            return info
    return {}


def set_threads(count: int, torch=None) -> dict:
    """Use `count` threads in numpy's OpenBLAS, Numba's parallel loops and torch, at run time (all three).

    On a shared machine, a 2-thread BLAS call whose second thread waits for a busy core was measured ~50x
    slower; one thread each gives fairer ratios there. Returns what was set (None where it could not be)."""
    import ctypes

    done = {"requested": count, "openblas": None, "numba": None, "torch": None}
    library = _openblas_runtime().get("library")
    if library:
        lib = ctypes.CDLL(library)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(count))
                done["openblas"] = count
                break
    try:
        import numba

        importlib.import_module("tinygrad_llm.kernels.numba_cpu")  # its threading-layer choice comes first
        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
        done["numba"] = numba.get_num_threads()
    except Exception:
        pass
    if torch is not None:
        torch.set_num_threads(count)
        done["torch"] = torch.get_num_threads()
    return done


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine_info(torch=None, device: str = "cpu") -> dict:
    env_names = ["OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
                 "NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "TGL_KERNELS", "OPENBLAS_THREAD_TIMEOUT"]
    try:
        blas_build = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception as error:  # older numpy
        blas_build = {"error": str(error)}
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__,
            "environment": {name: os.environ.get(name) for name in env_names},
            "numpy_blas_build": blas_build, "numpy_blas_runtime": _openblas_runtime(),
            # A load average above the CPU count means other processes competed for the cores during the run:
            # on this project's shared 2-core machines that alone slowed 2-thread BLAS calls ~50x (measured).
            "load_average_1_5_15": _load_average()}
    try:
        import llvmlite.binding
        import numba
        info["numba"] = numba.__version__
        # The CPU model LLVM compiles Numba kernels for (znver1, znver5, skylake-avx512...): it decides the vector
        # width and which conversions are cheap, so the same kernel's ratio to BLAS differs from machine to machine.
        info["numba_target_cpu"] = llvmlite.binding.get_host_cpu_name()
    except ImportError:
        info["numba"] = None
    info["torch"] = None if torch is None else {"version": torch.__version__, "num_threads": torch.get_num_threads()}
    if device == "cuda":
        info["gpu"] = _gpu_info()
    return info


def _gpu_info() -> dict:
    """The GPU's name and memory, and the CUDA runtime and driver versions CuPy reports."""
    cupy = cupy_module()
    try:
        properties = cupy.cuda.runtime.getDeviceProperties(0)
        name = properties["name"].decode() if isinstance(properties["name"], bytes) else properties["name"]
        return {"name": name, "memory_gib": properties["totalGlobalMem"] / 2**30, "cupy": cupy.__version__,
                "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "driver": cupy.cuda.runtime.driverGetVersion()}
    except Exception as error:  # a partial CUDA install: report what failed, keep benchmarking
        return {"error": f"{type(error).__name__}: {error}"}


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------
def run_kernel_benchmark(mode: str = "full", repeats: int | None = None, out="bench_kernels.json",
                         plot="bench_kernels_roofline.png", sets=None, use_torch: bool = True,
                         only=None, threads: int | None = None, verbose: bool = True, device: str = "cpu") -> dict:
    """Run the ladder and write the JSON (`out`) and, on the CPU, the roofline PNG (`plot`); returns the report.

    device="cuda" times the GPU kernel set against the same NumPy reference run on GPU arrays (CuPy's own
    naive composition) and PyTorch CUDA, at larger sizes (GPU_FULL_SIZES); the CPU-only parts (roof, thread
    fight, attention memory, the issue's CPU targets) are skipped there.
    """
    if mode not in SIZES:
        raise ValueError(f"bench kernels: mode must be one of {sorted(SIZES)}, got {mode!r}")
    device = check_device(device)
    on_gpu = device == "cuda"
    sets = tuple(sets or (("reference", "cupy") if on_gpu else ("reference", "numba")))
    repeats = repeats or {"full": 5, "fast": 3, "tiny": 1}[mode]
    say = print if verbose else (lambda *a, **k: None)
    torch = _torch() if use_torch else None
    if on_gpu and torch is not None and not torch.cuda.is_available():
        say("torch cannot use CUDA here: its columns are skipped")
        torch = None
    kernel_sets = load_kernel_sets(sets)
    thread_setting = set_threads(threads, torch) if threads else None
    machine = machine_info(torch, device)
    machine["threads_set"] = thread_setting
    say(_describe_machine(machine, kernel_sets))

    roof = None
    if not on_gpu:
        roof = measure_roof(fast=mode == "fast", tiny=mode == "tiny", repeats=max(repeats, 3))
        say(f"Roof: peak {roof['peak_gflops']:.0f} GFLOP/s ({roof['peak']['what']}, n={roof['peak']['n']}); "
            f"bandwidth {roof['bandwidth_gbs']:.1f} GB/s ({roof['bandwidth']['what']}); "
            f"ridge {roof['ridge_flop_per_byte']:.1f} FLOP/byte\n")

    cases = [c for c in build_cases(mode, device) if not only or any(c.kernel.startswith(o) for o in only)]
    rows = []
    say(_table_header())
    for case in cases:
        row = run_case(case, kernel_sets, torch, repeats, device)
        rows.append(row)
        say(_table_rows(row))

    if on_gpu:
        say("(x ref, x torch: speedup over the NumPy reference run on GPU arrays (CuPy's own composition) / PyTorch "
            "CUDA, measured in this run; for matmul both are cuBLAS. Each call is timed up to the device's "
            "synchronisation.)")
        fight, memory, targets = {"skipped": "CPU only"}, [], []
    else:
        say("(x ref, x torch: speedup over the reference set / PyTorch, measured in this run; for matmul the reference "
            "IS numpy's BLAS. others: share of all CPU time other processes took while the case ran)")
        fight = thread_fight(kernel_sets.get("numba", {"functions": {}})["functions"], repeats, tiny=mode == "tiny") \
            if "numba" in kernel_sets else {"skipped": "numba set not requested"}
        say("\n" + _describe_fight(fight))
        memory = attention_memory(kernel_sets, mode, torch) if not only or any("attention".startswith(o) for o in only) else []
        say(_describe_memory(memory))
        targets = check_targets(rows, memory)
        say(_describe_targets(targets))

    report = {
        "meta": {"command": "python -m tinygrad_llm bench kernels" + (" --device cuda" if on_gpu else ""), "mode": mode,
                 "device": device, "repeats": repeats, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "speedup_definition": "time of the baseline / time of this set (above 1: this set is faster)"},
        "machine": machine,
        "roof": roof,
        "kernel_sets": {name: {"available": sorted(s["functions"]), "missing": s["missing"], "errors": s["errors"]}
                        for name, s in kernel_sets.items()},
        "cases": rows,
        "thread_fight": fight,
        "attention_memory": memory,
        "targets": targets,
        "load_average_at_end": _load_average(),
        "plot": str(plot) if plot and not on_gpu else None,
    }
    if report["plot"]:
        points = [{"label": f"{r['kernel'].split(' (')[0]} {r['shape'].replace(' D=64', '').replace('B=4 H=4 ', '')}",
                   "set": name, "intensity": r["intensity"], "gflops": result["gflops"]}
                  for r in rows for name, result in r["results"].items() if "gflops" in result]
        plot_roofline(points, roof, plot, title=f"Roofline: kernels on {machine['cpu']} ({machine['cpu_count']} CPUs; "
                      f"threads: {threads or 'each library its default'})")
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1, default=str)
    say(f"\nLoad average (1, 5, 15 min) at start {machine['load_average_1_5_15']}, at end {report['load_average_at_end']} "
        f"on {machine['cpu_count']} CPUs (above the CPU count: other processes competed; rerun when quieter)")
    say(f"\nWrote {out}" + (f" and {report['plot']}" if report["plot"] else ""))
    return report


def run_kernel_benchmark_runs(runs: int, out="bench_kernels.json", plot="bench_kernels_roofline.png",
                              verbose: bool = True, **options) -> dict:
    """Run the whole ladder `runs` times in one process and report each target's MEDIAN over the runs.

    One run's ratios swing ~30% on a shared machine (one burst of load, a noisy neighbour); the median of
    several runs is the figure to quote. Writes `out` with the median targets, every run's targets and the
    median time of every case, and the roofline of the last run to `plot`.
    """
    if runs < 1:
        raise ValueError(f"bench kernels: --runs must be at least 1, got {runs}")
    say = print if verbose else (lambda *a, **k: None)
    reports = []
    for run in range(runs):
        say(f"\n===== run {run + 1} of {runs} =====")
        last = run == runs - 1
        reports.append(run_kernel_benchmark(out=None, plot=plot if last else None, verbose=verbose, **options))
    summary = summarise_runs(reports)
    say(_describe_targets(summary["targets_median"], f"median of {runs} runs"))
    if out:
        with open(out, "w") as handle:
            json.dump(summary, handle, indent=1, default=str)
        say(f"\nWrote {out}")
    return summary


def summarise_runs(reports: list) -> dict:
    """The median over runs of each target and of each case's time per kernel set, with every run's values."""
    targets = []
    for index, first in enumerate(reports[0]["targets"]):
        values = [report["targets"][index]["measured"] for report in reports]
        measured = [v for v in values if v is not None]
        median = statistics.median(measured) if measured else None
        met = None if median is None else (median >= first["needed"] if first["comparison"] == ">=" else median < first["needed"])
        targets.append({**first, "measured": median, "runs": values, "met": met})
    cases = []
    for index, first in enumerate(reports[0]["cases"]):
        times = {}
        for name in first["results"]:
            runs_ms = [report["cases"][index]["results"].get(name, {}).get("median_ms") for report in reports]
            if all(t is not None for t in runs_ms):
                times[name] = {"median_ms": statistics.median(runs_ms), "runs_ms": runs_ms}
        cases.append({key: first[key] for key in ("kernel", "shape", "flops", "bytes", "intensity", "unit")} | {"sets": times})
    return {"meta": {**reports[0]["meta"], "runs": len(reports),
                     "dates": [report["meta"]["date"] for report in reports]},
            "machine": reports[0]["machine"], "roof": reports[-1]["roof"],
            "targets_median": targets, "cases_median": cases,
            "thread_fight": [report["thread_fight"] for report in reports],
            "attention_memory": reports[-1]["attention_memory"],
            "load_average_at_end": reports[-1]["load_average_at_end"]}


# ---------------------------------------------------------------------------------------------------------
# The issue's targets, checked against this run's ratios (a summary to read, never an assertion)
# ---------------------------------------------------------------------------------------------------------
def check_targets(rows: list, memory: list) -> list:
    """[{target, case, measured, needed, met}] for the kernel targets of the kernels issue, where measured."""
    checks = []

    def speedup(kernel, shape_part, base):
        for row in rows:
            if row["kernel"] == kernel and shape_part in row["shape"]:
                result = row["results"].get("numba", {})
                value = result.get("speedup", {}).get(base)
                return row["shape"], value
        return None, None

    def add(target, kernel, shape_part, base, needed):
        shape, value = speedup(kernel, shape_part, base)
        if shape is not None:
            checks.append({"target": target, "case": f"{kernel} {shape}", "measured": value, "needed": needed,
                           "comparison": ">=", "met": None if value is None else value >= needed})

    for n in (256, 512, 1024):
        add("matmul >= 0.5x numpy BLAS", "matmul", f"{n}x{n}x{n}", "blas", 0.5)
    for shape in ("(768, 256)", "(4096, 1024)", "(768, V=256)", "(4096, V=1024)"):
        for kernel in (("softmax fwd", "softmax fwd+bwd") if "V=" not in shape else ("cross-entropy fwd+bwd",)):
            add(f"{kernel.split()[0]} >= 2x reference", kernel, shape, "reference", 2.0)
            add(f"{kernel.split()[0]} >= 1x torch", kernel, shape, "torch", 1.0)
    add("attention fwd >= 1x torch SDPA at T=1024", "attention fwd (causal)", "T=1024", "torch", 1.0)
    add("attention fwd+bwd >= 3x reference at T=1024", "attention fwd+bwd (causal)", "T=1024", "reference", 3.0)
    for row in memory:
        numba = row["sets"].get("numba", {}).get("fwd", {})
        if row["T"] == max(r["T"] for r in memory) and "tracemalloc_mib" in numba:
            # O(T*D): the extra memory should be of the order of the output (B*H*T*D floats), far below the
            # B*H*T*T score matrices the naive version builds; the bar is a quarter of those.
            bar = row["scores_matrix_mib"] / 4
            checks.append({"target": "attention fwd peak extra MiB: O(T*D), not O(T^2)", "case": row["shape"],
                           "measured": numba["tracemalloc_mib"], "needed": bar, "comparison": "<",
                           "met": numba["tracemalloc_mib"] < bar})
    return checks


def _describe_targets(checks: list, over: str = "this run") -> str:
    if not checks:
        return ""
    lines = [f"\nTargets (numba set; ratios of {over}):"]
    for c in checks:
        measured = "missing" if c["measured"] is None else f"{c['measured']:.2f}"
        verdict = "n/a" if c["met"] is None else "met" if c["met"] else "MISSED"
        lines.append(f"  {c['target']:<50} {c['case']:<46} {measured:>7} (needs {c['comparison']} {c['needed']:g})  {verdict}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------------------
def _describe_machine(machine: dict, kernel_sets: dict) -> str:
    runtime = machine["numpy_blas_runtime"]
    build = machine["numpy_blas_build"]
    gpu = machine.get("gpu")
    lines = [f"GPU: {gpu.get('name', gpu.get('error'))}, {gpu.get('memory_gib', 0):.0f} GiB; CuPy {gpu.get('cupy')}, "
             f"CUDA runtime {gpu.get('cuda_runtime')}, driver {gpu.get('driver')}"] if gpu else []
    lines += [
        f"CPU: {machine['cpu']} ({machine['cpu_count']} CPUs); numpy {machine['numpy']}, numba {machine['numba']}, "
        f"torch {machine['torch']['version'] + ' (' + str(machine['torch']['num_threads']) + ' threads)' if machine['torch'] else 'not installed'}",
        f"numpy BLAS: {build.get('name')} {build.get('version')}; runtime core kernels: {runtime.get('corename', '?')}, "
        f"threads: {runtime.get('num_threads', '?')}; OPENBLAS_CORETYPE={machine['environment']['OPENBLAS_CORETYPE']}",
    ]
    for name, kernel_set in kernel_sets.items():
        if kernel_set["missing"]:
            lines.append(f"kernel set {name}: missing {', '.join(kernel_set['missing'])}")
    return "\n".join(lines)


def _table_header() -> str:
    return (f"{'kernel':<27} {'shape':<22} {'set':<10} {'median ms':>10} {'1st call s':>10} {'GFLOP/s':>8} "
            f"{'GB/s':>7} {'x ref':>6} {'x torch':>7} {'others':>6}\n" + "-" * 123)


def _table_rows(row: dict) -> str:
    lines = []
    for name, result in row["results"].items():
        label = "ref=BLAS" if row["kernel"] == "matmul" and name == "reference" else name
        if "median_s" not in result:
            why = "missing " + ", ".join(result["missing"]) if "missing" in result else result.get("error", "")
            lines.append(f"{row['kernel']:<27} {row['shape']:<22} {label:<10} {why[:60]}")
            continue
        speed = result["speedup"]
        ref = f"{speed['reference']:6.2f}" if "reference" in speed else f"{'':>6}"
        tor = f"{speed['torch']:7.2f}" if "torch" in speed else f"{'':>7}"
        lines.append(f"{row['kernel']:<27} {row['shape']:<22} {label:<10} {result['median_ms']:10.3f} "
                     f"{result['first_call_s']:10.3f} {result['gflops']:8.1f} {result['gbs']:7.1f} {ref} {tor}")
    others = row.get("others_cpu_fraction")
    if others is not None and lines:
        lines[-1] += f" {others:6.0%}"  # CPU share other processes took while this case ran
    return "\n".join(lines)


def _describe_fight(fight: dict) -> str:
    if "skipped" in fight:
        return f"Thread-pool fight: skipped ({fight['skipped']})"
    timeout = fight["openblas_thread_timeout"]
    lines = [f"Thread-pool fight (numba threading layer {fight['threading_layer']}; OpenBLAS spins 2^{timeout['log2_cycles']} "
             f"cycles after a product, set by {timeout['source']}):"]
    for pair in fight["pairs"]:
        lines.append(f"  {pair['numba_kernel']} alternating with {pair['blas_call']}: numba alone {pair['numba_alone_us']:.1f} us, "
                     f"BLAS alone {pair['blas_alone_us']:.1f} us, alternating {pair['alternating_us']:.1f} us per iteration = "
                     f"{pair['fight_ratio']:.2f}x the sum of the two alone")
    return "\n".join(lines)


def _describe_memory(memory: list) -> str:
    if not memory:
        return ""
    lines = ["\nAttention peak extra memory, MiB (tracemalloc: NumPy and Numba allocations, exact | peak RSS: every new page touched, a lower bound):"]
    for row in memory:
        for name, whats in row["sets"].items():
            for what, m in whats.items():
                if "error" in m:
                    lines.append(f"  {row['shape']:<22} {name:<10} {what:<8} error {m['error'][:60]}")
                    continue
                traced = "   n/a" if m["tracemalloc_mib"] is None else f"{m['tracemalloc_mib']:6.1f}"
                rss = "   n/a" if m["peak_rss_extra_mib"] is None else f"{m['peak_rss_extra_mib']:6.1f}"
                lines.append(f"  {row['shape']:<22} {name:<10} {what:<8} tracemalloc {traced}   peak RSS {rss}"
                             f"   (q,k,v,dO {row['inputs_mib']:.1f}; one T x T score matrix for all heads "
                             f"{row['scores_matrix_mib']:.1f})")
    return "\n".join(lines)
