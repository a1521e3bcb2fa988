"""The roofline: how fast can a kernel be on this machine, given how many FLOPs it does per byte it moves?

    attainable GFLOP/s = min(peak GFLOP/s, arithmetic intensity (FLOP/byte) * bandwidth (GB/s))

A kernel with low intensity (softmax: a few FLOPs per 4-byte element) sits under the sloped part: memory
bound, and the way to speed it up is to move fewer bytes (fusion). A kernel with high intensity (a large
matmul: 2n^3 FLOPs over 12 n^2 bytes) sits under the flat part: compute bound.

Both roofs are MEASURED here, not taken from a datasheet:
- peak: the GFLOP/s numpy's BLAS achieves on a large float32 matmul (sgemm). That is BLAS's achieved
  peak under this process's BLAS configuration (e.g. OpenBLAS with OPENBLAS_CORETYPE=Haswell runs AVX2
  kernels), NOT the CPU's theoretical FMA peak (cores x GHz x FMA units x lanes x 2), which is higher.
- bandwidth: bytes per second of a large array copy (read + write counted; the extra read a cache does
  before writing a line, "write allocate", is not counted), which is about what a streaming kernel sees.
  It is the DRAM roof: a small case whose data stays in the caches (768 x 256 floats is 768 KiB, inside
  a 1 MiB L2) can land on or above it.
"""
from __future__ import annotations

import time

import numpy as np


def measure_peak_gflops(n: int = 2048, repeats: int = 5) -> dict:
    """Best GFLOP/s of numpy's float32 n x n matmul (2 n^3 FLOPs per product)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults of `out`
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * n**3 / best / 1e9, "n": n, "dtype": "float32",
            "what": "numpy BLAS sgemm, best of runs: the BLAS's achieved peak, not the theoretical FMA peak"}


def measure_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> dict:
    """Best GB/s of copying a large float32 array into another (bytes = 2 x size: one read, one write)."""
    count = megabytes * 2**20 // 4
    src = np.ones(count, dtype=np.float32)
    dst = np.zeros(count, dtype=np.float32)  # touched now, so the copy does not page-fault
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return {"gbs": 2 * src.nbytes / best / 1e9, "megabytes": megabytes,
            "what": "numpy array copy, best of runs, read + write bytes (write-allocate traffic not counted)"}


def measure_roof(fast: bool = False, tiny: bool = False, repeats: int = 5) -> dict:
    """Both roofs; `tiny`/`fast` use small sizes (the figures are then only indicative)."""
    n, mb = (256, 16) if tiny else (1024, 64) if fast else (2048, 256)
    peak, bandwidth = measure_peak_gflops(n, repeats), measure_bandwidth_gbs(mb, repeats)
    return {"peak_gflops": peak["gflops"], "bandwidth_gbs": bandwidth["gbs"],
            "ridge_flop_per_byte": peak["gflops"] / bandwidth["gbs"], "peak": peak, "bandwidth": bandwidth}


def attainable_gflops(intensity, peak_gflops: float, bandwidth_gbs: float):
    """The roof at an arithmetic intensity (FLOP/byte)."""
    return np.minimum(peak_gflops, np.asarray(intensity, dtype=np.float64) * bandwidth_gbs)


def plot_roofline(points: list, roof: dict, path, title: str = "Roofline (measured roof)") -> str:
    """Write a log-log plot: each point {label, set, intensity, gflops} under the roof. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak, bandwidth = roof["peak_gflops"], roof["bandwidth_gbs"]
    intensities = [p["intensity"] for p in points if p["intensity"] > 0] or [1.0]
    lo, hi = min(min(intensities) / 2, 0.1), max(max(intensities) * 2, 4 * peak / bandwidth)
    x = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(9, 6))
    ax.loglog(x, attainable_gflops(x, peak, bandwidth), "k-", lw=2,
              label=f"roof: {peak:.0f} GFLOP/s (BLAS sgemm), {bandwidth:.0f} GB/s (copy)")
    markers = {"reference": "o", "numba": "s", "torch": "^", "blas": "D"}
    sets = sorted({p["set"] for p in points})
    colors = dict(zip(sets, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    labelled = "numba" if "numba" in sets else sets[0] if sets else None  # one label per case keeps it legible
    for kernel_set in sets:
        mine = [p for p in points if p["set"] == kernel_set and p["gflops"] > 0]
        ax.scatter([p["intensity"] for p in mine], [p["gflops"] for p in mine], marker=markers.get(kernel_set, "x"),
                   color=colors[kernel_set], label=kernel_set, alpha=0.8)
        for p in mine if kernel_set == labelled else []:
            ax.annotate(p["label"], (p["intensity"], p["gflops"]), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOP / byte of compulsory memory traffic)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
