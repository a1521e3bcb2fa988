"""`bench quantized`: the integer kernels against float32 BLAS, at the shapes where a decoder spends its time.

Decoding one token per sequence multiplies a batch of B activation rows (B = 1..8) by every weight matrix
of the model: x float32 (B, d) times W (d, d). Each weight is used B times, so the product does 2 B FLOPs
per weight while reading the weight's bytes from memory: at B = 1 and 4 bytes per weight that is half a
FLOP per byte, far left of the roofline's ridge. The time is the time to READ W, and storing it in 1 byte
(int8) or half a byte (int4) instead of 4 is the lever. Contestants, timed in turns in one run:

    blas        float32 x @ W.T through numpy's BLAS (sgemv/sgemm), into a preallocated output
    reference   kernels/reference quantized_matmul, int8 per channel: dequantize W to float32, then BLAS
    numba int8  kernels/numba_cpu quantized_matmul, int8 per output channel, dequantized in registers
    numba int4  the same with int4 weights, two per byte, per group of 64 columns
    numba w8a16 the int8 kernel with activations="int16": x rounded to int16 per row, integer dot products
    numba w4a16 the same for the int4 weights

Why both: on a CPU without fast int -> float conversions (AVX2), converting each weight costs more than
reading it, so the float-activation kernels are bound by their arithmetic, not by memory; the int16 kernels
multiply integers directly (vpmaddwd) and get close to the memory roof.

Streaming, as in a real model: a single d = 4096 weight is read from DRAM, but a small one timed in a loop
would sit in the caches and look faster than any decoding step can be (a model's layers together are far
larger than the L3 cache). So each contestant cycles through enough copies of its weight to fill twice the
L3 cache, and every call reads a weight that has been evicted since its last use.

Counted per call (the roofline's inputs): FLOPs = 2 B d^2; bytes = the weight as stored (with its scales)
+ x + the output, the compulsory traffic. The reference moves more than it is credited with (it writes and
re-reads a float32 W): its gap to the roof shows that.

The full int8 x int8 -> int32 GEMM (M = N = K = n) is the other regime: 2 n^3 operations on 3 n^2 numbers,
compute bound. There BLAS's float32 sgemm has a hand-tuned micro-kernel and the Numba dot-product loop does
not: the report gives the ratio either way.
"""
from __future__ import annotations

import datetime
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..kernels import numba_cpu, reference
from ..kernels.reference.int4_packing import pack_int4
from .kernels import machine_info, set_threads
from .roofline import attainable_gflops, measure_roof, plot_roofline
from .timing import OtherLoad, time_interleaved

SIZES = {  # stream_mib: None streams through 2 x the L3 cache; tiny checks the harness, not the machine
    "full": dict(batches=[1, 2, 4, 8], dims=[128, 256, 512, 1024, 2048, 4096], gemm=[256, 512, 1024, 2048],
                 stream_mib=None),
    "fast": dict(batches=[1, 8], dims=[256, 1024, 2048], gemm=[256, 512], stream_mib=None),
    "tiny": dict(batches=[1, 2], dims=[64, 128], gemm=[32, 64], stream_mib=1),
}
INT4_GROUP = 64
TARGET = {"kernel": "numba w8a16", "batch": 1, "min_dim": 2048, "min_speedup": 1.5}
DEFAULT_L3_BYTES = 32 * 2**20


def l3_cache_bytes() -> int:
    """The L3 cache size Linux reports for CPU 0, else 32 MiB."""
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (OSError, ValueError, IndexError):
        return DEFAULT_L3_BYTES


@dataclass
class Contestant:
    name: str
    weight: tuple                       # the weight as this contestant stores it (a tuple of arrays)
    run: Callable                       # run(x, weight) -> the product

    @property
    def weight_bytes(self) -> int:
        return sum(array.nbytes for array in self.weight)


def _streamed_copies(contestant: Contestant, stream_bytes: int) -> list:
    """Enough copies of the weight (at different addresses) that cycling through them reads stream_bytes
    between two uses of one copy."""
    count = max(1, -(-stream_bytes // contestant.weight_bytes))
    return [contestant.weight] + [tuple(array.copy() for array in contestant.weight) for _ in range(count - 1)]


def decode_contestants(batch: int, d: int, rng: np.random.Generator) -> list:
    """The ways to compute x (batch, d) @ W.T for a (d, d) weight, each with its own stored form of W."""
    blas_out = np.empty((batch, d), np.float32)  # written by every BLAS call: no fresh pages per call

    group = min(INT4_GROUP, d)
    float_weight = (rng.standard_normal((d, d), dtype=np.float32),)
    int8_weight = (rng.integers(-127, 128, (d, d), dtype=np.int8), rng.random((d, 1), dtype=np.float32) / 64)
    int4_weight = (pack_int4(rng.integers(-7, 8, (d, d))), rng.random((d, d // group), dtype=np.float32) / 4)
    return [
        Contestant("blas", float_weight, lambda x, w: np.matmul(x, w[0].T, out=blas_out)),
        Contestant("reference", int8_weight, lambda x, w: reference.quantized_matmul(x, *w, None, 8, d)),
        Contestant("numba int8", int8_weight, lambda x, w: numba_cpu.quantized_matmul(x, *w, None, 8, d)),
        Contestant("numba int4", int4_weight, lambda x, w: numba_cpu.quantized_matmul(x, *w, None, 4, group)),
        Contestant("numba w8a16", int8_weight,
                   lambda x, w: numba_cpu.quantized_matmul(x, *w, None, 8, d, activations="int16")),
        Contestant("numba w4a16", int4_weight,
                   lambda x, w: numba_cpu.quantized_matmul(x, *w, None, 4, group, activations="int16")),
    ]


def _cycling(run, x, copies):
    turn = itertools.cycle(copies)
    return lambda: run(x, next(turn))


def _figures(timing, flops: float, moved: float, roof: dict) -> dict:
    seconds = timing.median_s
    gflops, intensity = flops / seconds / 1e9, flops / moved
    attainable = float(attainable_gflops(intensity, roof["peak_gflops"], roof["bandwidth_gbs"]))
    return {**timing.as_dict(), "median_ms": seconds * 1e3, "gflops": gflops, "gbs": moved / seconds / 1e9,
            "bytes": moved, "intensity": intensity, "attainable_gflops": attainable,
            "fraction_of_roof": gflops / attainable}


def run_decode_case(batch: int, d: int, roof: dict, stream_bytes: int, repeats: int) -> dict:
    """One decode shape: every contestant timed in turns, each on its own streamed weight copies."""
    rng = np.random.default_rng(d + batch)
    x = rng.standard_normal((batch, d), dtype=np.float32)
    contestants = decode_contestants(batch, d, rng)
    calls = {c.name: _cycling(c.run, x, _streamed_copies(c, stream_bytes)) for c in contestants}
    with OtherLoad() as load:
        timings = time_interleaved(calls, repeats=repeats)
    flops, activations = 2.0 * batch * d * d, 2 * batch * d * 4
    results = {}
    for c in contestants:
        timing = timings[c.name]
        if isinstance(timing, Exception):
            results[c.name] = {"error": f"{type(timing).__name__}: {timing}"}
            continue
        results[c.name] = _figures(timing, flops, c.weight_bytes + activations, roof)
    blas = results["blas"].get("median_s")
    for result in results.values():
        if blas and "median_s" in result:
            result["speedup_vs_blas"] = blas / result["median_s"]
    return {"batch": batch, "d": d, "shape": f"B={batch} d={d}", "flops": flops,
            "others_cpu_fraction": load.fraction, "results": results}


def run_gemm_case(n: int, roof: dict, repeats: int) -> dict:
    """int8 x int8 -> int32 against float32 sgemm, square n: compute bound, BLAS's home ground."""
    rng = np.random.default_rng(n)
    a, b = rng.integers(-128, 128, (n, n), dtype=np.int8), rng.integers(-128, 128, (n, n), dtype=np.int8)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    with OtherLoad() as load:
        timings = time_interleaved({"blas sgemm": lambda: a32 @ b32.T,
                                    "numba int8 gemm": lambda: numba_cpu.int8_matmul(a, b)}, repeats=repeats)
    flops = 2.0 * n**3
    moved = {"blas sgemm": 3 * 4 * n * n, "numba int8 gemm": 2 * n * n + 4 * n * n}
    results = {name: {"error": f"{type(t).__name__}: {t}"} if isinstance(t, Exception) else
               _figures(t, flops, moved[name], roof) for name, t in timings.items()}
    if "median_s" in results["blas sgemm"] and "median_s" in results["numba int8 gemm"]:
        results["numba int8 gemm"]["speedup_vs_blas"] = \
            results["blas sgemm"]["median_s"] / results["numba int8 gemm"]["median_s"]
    return {"n": n, "shape": f"{n}x{n}x{n}", "flops": flops, "others_cpu_fraction": load.fraction,
            "results": results}


def check_target(decode: list) -> dict:
    """The target: int8 weights (the W8A16 kernel) at least 1.5x float32 BLAS at batch 1, d >= 2048."""
    measured = [{"d": case["d"], "speedup_vs_blas": case["results"][TARGET["kernel"]].get("speedup_vs_blas")}
                for case in decode if case["batch"] == TARGET["batch"] and case["d"] >= TARGET["min_dim"]]
    values = [m["speedup_vs_blas"] for m in measured if m["speedup_vs_blas"] is not None]
    return {**TARGET, "measured": measured, "met": min(values) >= TARGET["min_speedup"] if values else None}


def _say_decode(case: dict) -> str:
    cells = []
    for name, r in case["results"].items():
        if "median_ms" not in r:
            cells.append(f"{name}: {r.get('error')}")
        else:
            cells.append(f"{name} {r['median_ms']:8.3f} ms {r['gbs']:6.1f} GB/s x{r.get('speedup_vs_blas', 1):5.2f}")
    return f"{case['shape']:>14} | " + " | ".join(cells)


def run_quantized_benchmark(mode: str = "full", repeats: int | None = None, out="bench_quantized.json",
                            plot="bench_quantized_roofline.png", threads: int | None = None,
                            verbose: bool = True) -> dict:
    """Time the decode shapes and the GEMMs, write the JSON report (`out`) and the roofline (`plot`)."""
    if mode not in SIZES:
        raise ValueError(f"bench quantized: mode must be one of {sorted(SIZES)}, got {mode!r}")
    say = print if verbose else (lambda *a, **k: None)
    sizes, repeats = SIZES[mode], repeats or {"full": 5, "fast": 3, "tiny": 1}[mode]
    thread_setting = set_threads(threads) if threads else None
    machine = machine_info()
    machine["threads_set"] = thread_setting
    stream_bytes = sizes["stream_mib"] * 2**20 if sizes["stream_mib"] else 2 * l3_cache_bytes()
    roof = measure_roof(fast=mode == "fast", tiny=mode == "tiny", repeats=max(repeats, 3))
    say(f"Roof: {roof['peak_gflops']:.0f} GFLOP/s (BLAS sgemm), {roof['bandwidth_gbs']:.1f} GB/s (copy); "
        f"weights streamed through {stream_bytes / 2**20:.0f} MiB of copies per contestant; Numba compiles for "
        f"{machine.get('numba_target_cpu')} (its int8 -> float conversions per cycle bound the weight-only kernels)")

    decode = []
    for d in sizes["dims"]:
        for batch in sizes["batches"]:
            decode.append(run_decode_case(batch, d, roof, stream_bytes, repeats))
            say(_say_decode(decode[-1]))
    gemm = []
    for n in sizes["gemm"]:
        gemm.append(run_gemm_case(n, roof, repeats))
        results = gemm[-1]["results"]
        say(f"{gemm[-1]['shape']:>14} | " + " | ".join(
            f"{name} {r['median_ms']:9.2f} ms {r['gflops']:6.1f} GOP/s" for name, r in results.items()
            if "median_ms" in r) + f" | int8/sgemm x{results['numba int8 gemm'].get('speedup_vs_blas', 0):.2f}")
    target = check_target(decode)
    verdict = {True: "met", False: "not met", None: "no such case in this mode"}[target["met"]]
    say(f"Target ({TARGET['kernel']} >= {TARGET['min_speedup']}x BLAS at batch 1, d >= {TARGET['min_dim']}): {verdict} "
        + ", ".join(f"d={m['d']}: x{m['speedup_vs_blas']:.2f}" for m in target["measured"]
                    if m["speedup_vs_blas"] is not None))

    report = {
        "meta": {"command": "python -m tinygrad_llm bench quantized", "mode": mode, "repeats": repeats,
                 "date": datetime.datetime.now().isoformat(timespec="seconds"), "stream_bytes": stream_bytes,
                 "int4_group_size": INT4_GROUP,
                 "speedup_definition": "time of float32 BLAS / time of this kernel (above 1: faster than BLAS)",
                 "bytes_definition": "compulsory traffic: the weight as stored (scales included) + x + output"},
        "machine": machine, "roof": roof, "decode": decode, "gemm": gemm, "target": target,
        "plot": str(plot) if plot else None,
    }
    if plot:
        points = [{"label": case["shape"], "set": name, "intensity": r["intensity"], "gflops": r["gflops"]}
                  for case in decode + gemm for name, r in case["results"].items() if "gflops" in r]
        plot_roofline(points, roof, plot, title="Roofline: quantized kernels vs float32 BLAS (decode and GEMM)")
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1, default=str)
    say(f"Wrote {out}" + (f" and {plot}" if plot else ""))
    return report
