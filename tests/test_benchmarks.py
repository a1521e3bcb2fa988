"""The benchmark harness runs end to end in its tiny mode and writes complete reports.

No timing assertions (benchmarks are commands that print ratios, not tests): these check the harness
itself: every field is in the JSON, the roofline plot is written, missing kernels are reported, not fatal.
"""
import argparse
import json

import pytest

from tinygrad_llm.benchmarks import command
from tinygrad_llm.benchmarks.kernels import KERNEL_FUNCTIONS, build_cases, load_kernel_sets
from tinygrad_llm.benchmarks.timing import time_call

pytestmark = pytest.mark.kernels


def _parser():
    parser = argparse.ArgumentParser(prog="python -m tinygrad_llm")
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


def test_bench_kernels_runs_reports_the_median_of_each_target(tmp_path):
    out, plot = tmp_path / "kernels.json", tmp_path / "roofline.png"
    argv = ["bench", "kernels", "--tiny", "--runs", "3", "--only", "softmax", "attention", "--no-torch",
            "--out", str(out), "--plot", str(plot)]
    assert _run(argv) == 0
    summary = json.loads(out.read_text())
    assert summary["meta"]["runs"] == 3 and len(summary["meta"]["dates"]) == 3
    assert summary["targets_median"], "the tiny ladder still has softmax and attention targets"
    for target in summary["targets_median"]:
        runs = [v for v in target["runs"] if v is not None]
        assert len(target["runs"]) == 3
        assert target["measured"] == sorted(runs)[len(runs) // 2]   # three runs: the middle one
    for case in summary["cases_median"]:
        for timing in case["sets"].values():
            assert timing["median_ms"] == sorted(timing["runs_ms"])[1]
    assert plot.exists() and len(summary["thread_fight"]) == 3


def test_timer_reports_first_call_and_median():
    calls = []
    timing = time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert timing.repeats == 3 and len(timing.runs_s) == 3 and timing.number >= 1
    assert len(calls) == 1 + 2 + 3 * timing.number
    assert timing.min_s <= timing.median_s and timing.first_call_s >= 0


def test_bench_kernels_tiny_writes_every_field_and_the_plot(tmp_path):
    out, plot = tmp_path / "kernels.json", tmp_path / "roofline.png"
    assert _run(["bench", "kernels", "--tiny", "--repeats", "1", "--out", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"meta", "machine", "roof", "kernel_sets", "cases", "thread_fight", "attention_memory", "targets", "plot"}
    assert report["meta"]["mode"] == "tiny" and report["meta"]["repeats"] == 1
    assert {"numpy_blas_build", "numpy_blas_runtime", "environment"} <= set(report["machine"])
    assert "OPENBLAS_CORETYPE" in report["machine"]["environment"]
    assert report["roof"]["peak_gflops"] > 0 and report["roof"]["bandwidth_gbs"] > 0

    assert {"reference", "numba"} <= set(report["kernel_sets"])
    assert not report["kernel_sets"]["reference"]["missing"]
    kernels_seen = {case["kernel"].split()[0] for case in report["cases"]}
    assert kernels_seen == {"matmul", "softmax", "cross-entropy", "layer", "attention"}
    assert len(report["cases"]) == len(build_cases("tiny"))
    for case in report["cases"]:
        assert {"kernel", "shape", "flops", "bytes", "intensity", "unit", "results"} <= set(case)
        assert case["flops"] > 0 and case["bytes"] > 0
        reference = case["results"]["reference"]
        assert {"median_ms", "first_call_s", "gflops", "gbs", "speedup", "runs_s"} <= set(reference)
        for name, result in case["results"].items():  # each set either ran, is missing functions, or failed
            assert "median_ms" in result or "missing" in result or "error" in result, (name, result)
            if "median_ms" in result and name != "reference":
                assert "reference" in result["speedup"]
                if case["kernel"] == "matmul":
                    assert "blas" in result["speedup"]

    fight = report["thread_fight"]
    assert "skipped" in fight or len(fight["pairs"]) == 2
    for pair in fight.get("pairs", []):
        assert {"numba_alone_us", "blas_alone_us", "alternating_us", "fight_ratio"} <= set(pair)
    assert [row["T"] for row in report["attention_memory"]] == [32, 64]
    for row in report["attention_memory"]:
        assert "reference" in row["sets"]
        assert {"tracemalloc_mib", "peak_rss_extra_mib"} <= set(row["sets"]["reference"]["fwd"])
    assert plot.exists() and plot.stat().st_size > 0 and plot.read_bytes()[:4] == b"\x89PNG"
    assert report["plot"] == str(plot)


def test_bench_train_tiny_writes_every_field(tmp_path):
    out = tmp_path / "train.json"
    assert _run(["bench", "train", "--tiny", "--repeats", "1", "--steps", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"meta", "models"}
    results = report["models"]["char_mlp"]["results"]
    assert {"reference", "numba"} <= set(results)
    reference = results["reference"]
    assert {"tokens_per_s", "step_ms", "first_step_s", "windows_s", "speedup"} <= set(reference)
    assert reference["tokens_per_s"] > 0 and reference["steps"] == 2
    assert "tokens_per_s" in results["numba"] or "skipped" in results["numba"]


def test_missing_kernels_are_listed_not_fatal():
    sets = load_kernel_sets(("reference", "numba"))
    assert sorted(sets["reference"]["functions"]) == sorted(f for fs in KERNEL_FUNCTIONS.values() for f in fs)
    numba = sets["numba"]
    assert set(numba["functions"]) | set(numba["missing"]) == set(sets["reference"]["functions"])


def test_bench_needs_an_action():
    with pytest.raises(SystemExit):
        _parser().parse_args(["bench"])


@pytest.mark.seq2seq
def test_bench_seq2seq_fast_reports_budget_time_and_scores(tmp_path):
    out = tmp_path / "seq2seq.json"
    assert _run(["bench", "seq2seq", "--fast", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["task"] for r in report["results"]] == ["reverse", "addition"]
    for result in report["results"]:
        assert result["train_seconds"] > 0 and result["parameters"] > 0 and result["budget"]["steps"] == 60
        for key in ("exact_match_greedy", "exact_match_beam4", "token_accuracy_teacher_forced"):
            assert 0.0 <= result[key] <= 1.0


def test_records_keep_what_the_notebooks_read(tmp_path):
    from tinygrad_llm.benchmarks.records import build_record, load_record, main

    shipped = load_record("kernels_cpu")   # notebook 15 prints it
    for target in shipped["kernels"]["targets_median"]:
        assert {"target", "case", "measured", "runs", "needed", "comparison", "met"} <= set(target)
    assert {"reference", "torch"} <= set(shipped["train"]["models"]["gpt"]["numba"]["speedup"])
    with pytest.raises(FileNotFoundError, match="available: .*kernels_cpu"):
        load_record("no_such_record")

    single_run = {"meta": {"device": "cuda"}, "machine": {"gpu": {"name": "X"}}, "roof": None, "cases": [{"kernel": "k"}]}
    record = build_record(single_run, quality_report={"library": {"val_loss": 1.5}})
    assert record["kernels"]["cases"] == [{"kernel": "k"}] and record["quality"]["library"]["val_loss"] == 1.5
    assert "train" not in record
    (tmp_path / "k.json").write_text(json.dumps(single_run))
    assert main([str(tmp_path / "r.json"), "--kernels", str(tmp_path / "k.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["kernels"]["meta"]["device"] == "cuda"
