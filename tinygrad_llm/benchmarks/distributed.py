"""`bench distributed`: the main job's GPT trained on 1, 2 and 4 MPI ranks, and the bytes each rank sends.

Every measurement runs in fresh processes through the shared training loop:
  single process   the plain loop (no MPI) in fp32, and with --precision fp16 and bf16 (mixed precision's
                   step time; on a CPU half precision is slower, see experiments/mixed_precision.py for why)
  K ranks          `train --data-parallel` under `mpiexec -n K`, with the global batch fixed at the main job's
                   12 windows (each rank takes 12 / K): the same training split K ways, so the speedup over one
                   rank is the quantity Amdahl's law describes (strong scaling)
Tokens/s is the whole job's: global batch * context_size * steps / the loop's own training seconds (evaluation
left out), measured after a warm-up run in the same process has compiled the kernels. Every process runs one
thread (OPENBLAS_NUM_THREADS = NUMBA_NUM_THREADS = 1), so K processes on C cores compete only with each other:
beyond C ranks there is no core left to gain.

Bytes per step per rank: each rank runs the ring all-reduce (distributed/ring_allreduce.py) on |theta| float32s,
the size of the gradient, and reports what it passed to Sendrecv, next to the formula 2(K-1)/K |theta| 4. MPI's
Allreduce is handed |theta| 4 bytes per rank and picks its own algorithm; both are timed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace

import numpy as np

from ..training import TrainConfig, train_language_model

GLOBAL_BATCH = 12  # the main job's batch_size: divisible by 1, 2, 3, 4 and 6 ranks
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
MODES = {  # (timed steps, warm-up steps, communication repeats)
    "full": (40, 3, 20),
    "fast": (4, 1, 3),
}


def benchmark_config(fast: bool) -> TrainConfig:
    """The main job's GPT (TrainConfig's defaults); fast: a tiny one on a slice of the corpus (checks the harness)."""
    if fast:
        return TrainConfig(max_chars=20_000, embed_dim=32, num_layers=1, num_heads=2, context_size=32)
    return TrainConfig()


def _timed_training(config: TrainConfig, steps: int, warmup: int):
    """Train `warmup` steps (kernels compile), then `steps` timed steps; returns the timed run."""
    quiet = dict(progress=False, print_fn=None)
    train_language_model(replace(config, steps=warmup + 1, warmup_steps=0, eval_every=warmup + 1, eval_batches=1),
                         **quiet)
    return train_language_model(replace(config, steps=steps, warmup_steps=0, eval_every=steps, eval_batches=1),
                                **quiet)


def _communication(comm, num_values: int, repeats: int) -> dict:
    """Median seconds of one bucketed Allreduce of num_values float32 gradients and of the ring; ring bytes per rank."""
    from ..distributed import average_gradients, ring_allreduce
    from ..nn import Parameter

    gradient = Parameter(np.zeros(num_values, dtype=np.float32))
    allreduce_s, ring_s, bytes_sent = [], [], 0
    for _ in range(repeats):
        gradient.grad = np.ones(num_values, dtype=np.float32)
        comm.Barrier()
        start = time.perf_counter()
        average_gradients([gradient], comm, 1)
        allreduce_s.append(time.perf_counter() - start)
        comm.Barrier()
        start = time.perf_counter()
        _, bytes_sent = ring_allreduce(comm, gradient.grad)
        ring_s.append(time.perf_counter() - start)
    return {"allreduce_ms": 1e3 * statistics.median(allreduce_s), "ring_ms": 1e3 * statistics.median(ring_s),
            "ring_bytes_sent": comm.gather(bytes_sent, root=0)}


def worker(mode: str, ranks_batch: int, precision: str, data_parallel: bool) -> dict | None:
    """One measurement in this process (under mpiexec when data_parallel); the report on rank 0, None elsewhere."""
    steps, warmup, repeats = MODES[mode]
    config = replace(benchmark_config(mode == "fast"), batch_size=ranks_batch, precision=precision,
                     data_parallel=data_parallel)
    run = _timed_training(config, steps, warmup)
    result = {"tokens_per_s": run.tokens_per_s, "step_ms": 1e3 * run.history[-1]["train_seconds"] / steps,
              "parameters": run.model.num_parameters(), "precision": precision, "batch_size_per_rank": ranks_batch}
    if not data_parallel:
        return result
    from ..distributed import ring_allreduce_bytes, world_communicator

    comm = world_communicator()
    result.update(_communication(comm, result["parameters"], repeats), ranks=comm.Get_size(),
                  ring_bytes_formula=ring_allreduce_bytes(result["parameters"], comm.Get_size()),
                  allreduce_bytes_handed_to_mpi=result["parameters"] * 4)
    return result if comm.Get_rank() == 0 else None


def _launch(mode: str, ranks: int | None, precision: str = "fp32", timeout_s: float = 600) -> dict:
    """Run the worker in fresh processes: plain python (ranks None) or mpiexec -n ranks; its JSON report."""
    from ..distributed import run_mpi

    batch = GLOBAL_BATCH // (ranks or 1)
    args = ["-m", "tinygrad_llm.benchmarks.distributed", "--worker", "--mode", mode, "--batch-size", str(batch),
            "--precision", precision, *(["--data-parallel"] if ranks else [])]
    if ranks:
        finished = run_mpi(ranks, args, timeout_s=timeout_s, env=ONE_THREAD)
    else:
        finished = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout_s,
                                  env={**os.environ, **ONE_THREAD})
    if finished.returncode != 0:
        raise RuntimeError(f"bench distributed: the worker ({ranks or 'single'} process, {precision}) failed:\n"
                           f"{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def run_distributed_benchmark(mode: str = "full", ranks=(1, 2, 4), precisions=("fp32", "fp16", "bf16"),
                              out="bench_distributed.json", verbose: bool = True) -> dict:
    if mode not in MODES:
        raise ValueError(f"bench distributed: mode must be one of {sorted(MODES)}, got {mode!r}")
    bad = [k for k in ranks if k < 1 or GLOBAL_BATCH % k]
    if bad:
        raise ValueError(f"bench distributed: the global batch of {GLOBAL_BATCH} windows must split evenly over the "
                         f"ranks; {bad} do not divide it (use 1, 2, 3, 4 or 6)")
    from ..scaling_laws import fit_amdahl

    single = {precision: _launch(mode, None, precision) for precision in precisions}
    parallel = {k: _launch(mode, k) for k in ranks}
    one_rank = parallel[1]["tokens_per_s"] if 1 in parallel else None
    for result in parallel.values():
        result["speedup_vs_1_rank"] = result["tokens_per_s"] / one_rank if one_rank else None
        if "fp32" in single:
            result["speedup_vs_single_process"] = result["tokens_per_s"] / single["fp32"]["tokens_per_s"]
    serial_fraction = (fit_amdahl(list(parallel), [r["speedup_vs_1_rank"] for r in parallel.values()])
                       if one_rank and len(ranks) > 1 else None)
    report = {
        "meta": {"command": "python -m tinygrad_llm bench distributed", "mode": mode,
                 "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
                 "threads_per_process": 1, "global_batch": GLOBAL_BATCH,
                 "steps": MODES[mode][0], "warmup_steps": MODES[mode][1],
                 "load_average_1_5_15_at_end": list(os.getloadavg()),
                 "tokens_per_s_definition": "global batch * context_size * steps / training seconds (rank 0's clock)"},
        "config": asdict(benchmark_config(mode == "fast")),
        "single_process": single,
        "step_time_vs_fp32": {p: r["step_ms"] / single["fp32"]["step_ms"] for p, r in single.items()}
        if "fp32" in single else {},
        "data_parallel": {str(k): r for k, r in parallel.items()},
        "amdahl_serial_fraction": serial_fraction,
    }
    if verbose:
        print(describe(report))
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1)
        if verbose:
            print(f"\nWrote {out}")
    return report


def describe(report: dict) -> str:
    meta = report["meta"]
    lines = [f"Data-parallel training of the GPT ({meta['mode']}: {meta['steps']} timed steps, global batch "
             f"{meta['global_batch']} windows, 1 thread per process, {meta['cpu_count']} CPUs)",
             f"{'run':<22} {'tokens/s':>10} {'ms/step':>9} {'speedup':>8}"]
    for precision, r in report["single_process"].items():
        ratio = report["step_time_vs_fp32"].get(precision)
        lines.append(f"{'1 process, ' + precision:<22} {r['tokens_per_s']:10,.0f} {r['step_ms']:9.1f}"
                     f"{'' if ratio is None else f'   step time {ratio:.2f}x fp32'}")
    for k, r in report["data_parallel"].items():
        speedup = "" if r.get("speedup_vs_1_rank") is None else f"{r['speedup_vs_1_rank']:7.2f}x"
        lines.append(f"{k + ' ranks (mpiexec)':<22} {r['tokens_per_s']:10,.0f} {r['step_ms']:9.1f} {speedup:>8}")
    lines.append(f"\n{'ranks':<6} {'ring bytes/rank/step':>24} {'formula 2(K-1)/K|theta|4':>26} "
                 f"{'Allreduce ms':>13} {'ring ms':>8}")
    for k, r in report["data_parallel"].items():
        sent = ", ".join(f"{b:,}" for b in sorted(set(r["ring_bytes_sent"])))
        lines.append(f"{k:<6} {sent:>24} {r['ring_bytes_formula']:26,.0f} {r['allreduce_ms']:13.2f} "
                     f"{r['ring_ms']:8.2f}")
    payload = next(iter(report["data_parallel"].values()), {}).get("allreduce_bytes_handed_to_mpi")
    if payload is not None:
        lines.append(f"MPI's Allreduce is handed |theta| 4 = {payload:,} bytes per rank per step and picks its own "
                     "algorithm (for large arrays a reduce-scatter then an all-gather: the ring's bytes)")
    if report["amdahl_serial_fraction"] is not None:
        lines.append(f"\nAmdahl's serial fraction fitted to the speedups: {report['amdahl_serial_fraction']:.3f} "
                     f"(ranks beyond the {meta['cpu_count']} cores share cores and add nothing)")
    lines.append(f"Load average (1, 5, 15 min) at end: {meta['load_average_1_5_15_at_end']}: above the CPU count, "
                 "other processes competed; rerun when quieter")
    return "\n".join(lines)


def _worker_main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one measurement of `bench distributed` (it launches this itself)")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--data-parallel", action="store_true")
    args = parser.parse_args(argv)
    if not args.data_parallel:
        result = worker(args.mode, args.batch_size, args.precision, False)
    else:
        from ..distributed import stop_job_on_failure, world_communicator

        with stop_job_on_failure(world_communicator()):
            result = worker(args.mode, args.batch_size, args.precision, True)
    if result is not None:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
