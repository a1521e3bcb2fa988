"""Benchmark figures measured on real machines, stored with the package so a notebook can print and plot them
anywhere (on a laptop, in CI, on a machine without a GPU).

Each record in recorded/ is built from the JSON reports the `bench` commands wrote, trimmed to the figures
the notebooks use, and keeps the commands, dates and machine that produced them: to measure your own
machine, run those commands. Build one with

    python -m tinygrad_llm.benchmarks.records OUT.json --kernels bench_kernels.json [--train t1.json t2.json ...]
                                                       [--quality bench_quality.json]

where bench_kernels.json comes from `bench kernels` (with --runs N, its medians are kept; with --device cuda,
its single run), each t*.json from one `bench train` run, and bench_quality.json from `bench quality`.
kernels_cpu.json is read by notebook 15, kernels_gpu.json by notebook 16.
"""
from __future__ import annotations

import argparse
import json
import statistics
from importlib import resources


def load_record(name: str) -> dict:
    """The stored record `name` (a file name in recorded/, without .json)."""
    folder = resources.files("tinygrad_llm.benchmarks") / "recorded"
    path = folder / f"{name}.json"
    if not path.is_file():
        available = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
        raise FileNotFoundError(f"load_record: no benchmark record named {name!r}; available: {available}")
    return json.loads(path.read_text())


def train_summary(reports: list) -> dict:
    """Median tokens/s and speedups per model and side over several `bench train` reports, with every run's value."""
    summary = {}
    for model in reports[0]["models"]:
        sides = {}
        for side, first in reports[0]["models"][model]["results"].items():
            runs = [report["models"][model]["results"][side] for report in reports]
            sides[side] = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
                           "step_ms": statistics.median(r["step_ms"] for r in runs),
                           "tokens_per_s_runs": [r["tokens_per_s"] for r in runs],
                           "speedup": {base: statistics.median(r["speedup"][base] for r in runs) for base in first["speedup"]},
                           "speedup_runs": {base: [r["speedup"][base] for r in runs] for base in first["speedup"]}}
        summary[model] = sides
    return {"meta": {**reports[0]["meta"], "runs": len(reports)}, "models": summary}


KERNEL_FIELDS = ("meta", "machine", "roof", "targets_median", "cases_median", "cases", "thread_fight", "attention_memory")


def build_record(kernels_report: dict, train_reports: list = (), quality_report: dict | None = None) -> dict:
    """The kernel report's figures (a --runs summary keeps its medians and drops the single-run table), plus
    the median of the training reports and the quality report when given."""
    fields = [f for f in KERNEL_FIELDS if f in kernels_report and not (f == "cases" and "cases_median" in kernels_report)]
    record = {"kernels": {field: kernels_report[field] for field in fields}}
    if train_reports:
        record["train"] = train_summary(list(train_reports))
    if quality_report is not None:
        record["quality"] = quality_report
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinygrad_llm.benchmarks.records", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="record file to write")
    parser.add_argument("--kernels", required=True, help="the JSON of `bench kernels` (--runs N, or --device cuda)")
    parser.add_argument("--train", nargs="+", default=[], help="the JSON of each `bench train` run")
    parser.add_argument("--quality", default=None, help="the JSON of `bench quality`")
    args = parser.parse_args(argv)

    def read(path):
        with open(path) as handle:
            return json.load(handle)

    record = build_record(read(args.kernels), [read(path) for path in args.train],
                          read(args.quality) if args.quality else None)
    with open(args.out, "w") as handle:
        json.dump(record, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
