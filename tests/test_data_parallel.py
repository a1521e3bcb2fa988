"""Learning checks for data parallelism on MPI: K ranks compute what one process computes, for real.

Three launches (each costs a few seconds of imports), each checking several properties:
  mpi_programs/data_parallel_checks.py (4 ranks; groups of 1, 2, 3 and 4): averaged gradients == the gradient of
      the concatenated batch, with uneven and empty shards; the ring all-reduce == Allreduce and sends the bytes
      of the formula; the broken variant that sums gradients is caught.
  mpi_programs/data_parallel_training.py (2 ranks): the shared loop on 2 ranks == on 1 rank with the global batch;
      resume, also under another number of ranks; only rank 0 prints and writes; a rank that raises stops the job.
  `python -m tinygrad_llm train --data-parallel` (2 ranks): the command a learner runs.
  mpi_programs/rank_killed_by_signal.py (2 ranks, no library import): a rank that dies without a word stops the job.
Every launch has a timeout (MPIEXEC_TIMEOUT and the subprocess's own), so a deadlock fails instead of hanging.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from tinygrad_llm.checkpoint import load_checkpoint
from tinygrad_llm.distributed import mpiexec_path, run_mpi

pytestmark = [pytest.mark.scaling,
              pytest.mark.skipif(mpiexec_path() is None, reason="needs MPI: pip install -e '.[distributed]'")]

PROGRAMS = Path(__file__).parent / "mpi_programs"
REFERENCE_KERNELS = {"TGL_KERNELS": "reference"}  # no Numba compilation in every rank: these runs are tiny
TIMEOUT_S = 150


def last_json_line(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def model_weights(path) -> dict:
    arrays, _ = load_checkpoint(path)
    return {name: value for name, value in arrays.items() if name.startswith("model.")}


@pytest.fixture(scope="module")
def checks():
    finished = run_mpi(4, [str(PROGRAMS / "data_parallel_checks.py")], timeout_s=TIMEOUT_S, env=REFERENCE_KERNELS)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return last_json_line(finished.stdout)


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_parallel")
    finished = run_mpi(2, [str(PROGRAMS / "data_parallel_training.py"), str(root)], timeout_s=TIMEOUT_S,
                       env=REFERENCE_KERNELS)
    return finished, root


def test_k_rank_gradients_equal_the_single_process_gradient_of_the_concatenated_batch(checks):
    rows = checks["gradients"]
    assert {row["ranks"] for row in rows} == {1, 2, 3, 4}
    assert any(0 in row["counts"] and row["ranks"] > 1 for row in rows), "no case had a rank without samples"
    assert any(len(set(row["counts"])) > 1 for row in rows), "no case had uneven shards"
    for row in rows:
        assert row["library_error"] < 1e-12, row  # float64: only the order of the additions differs
        assert row["library_total"] == sum(row["counts"]) and row["library_replicas_identical"], row


def test_gradients_travel_in_buckets_not_one_call_per_parameter(checks):
    for row in checks["gradients"]:
        assert row["library_allreduce_calls"] == row["buckets"] + 1, row  # + 1: the sample counts
    assert any(row["buckets"] == 1 < row["parameters"] for row in checks["gradients"])


def test_the_gradient_check_catches_summing_instead_of_averaging(checks):
    several_ranks_with_samples = [row for row in checks["gradients"] if sum(c > 0 for c in row["counts"]) > 1]
    assert several_ranks_with_samples
    for row in several_ranks_with_samples:
        assert row["summed_error"] > 0.5, row


def test_the_ring_all_reduce_equals_allreduce_and_sends_the_bytes_of_the_formula(checks):
    rows = checks["ring"]
    assert {row["ranks"] for row in rows} == {1, 2, 3, 4}
    for row in rows:
        k, n, itemsize, sent = row["ranks"], row["n"], row["itemsize"], row["bytes_sent"]
        tolerance = 1e-6 if itemsize == 4 else 1e-14
        assert row["max_error"] <= tolerance * max(row["scale"], 1.0) * k, row
        assert row["unchanged_input"], row
        assert sum(sent) == 2 * (k - 1) * n * itemsize, row  # every chunk leaves K-1 ranks, in each phase
        if n % k == 0:
            assert sent == [row["formula"]] * k, row
        else:  # chunks differ by one number: each rank's count is within 2(K-1) numbers of the formula
            assert all(abs(s - row["formula"]) <= 2 * (k - 1) * itemsize for s in sent), row


def test_two_ranks_train_as_one_process_with_their_global_batch(training):
    finished, root = training
    assert "replicas_identical" in finished.stdout, finished.stderr[-3000:]
    two, one = model_weights(root / "two_ranks/checkpoint.npz"), model_weights(root / "one_rank/checkpoint.npz")
    assert two.keys() == one.keys()
    for name in two:  # float32, 4 AdamW steps: only the order of the gradient additions differs
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert last_json_line(finished.stdout)["replicas_identical"]


def test_resuming_on_the_same_ranks_is_bit_exact_and_on_fewer_continues_the_epoch(training):
    finished, root = training
    whole, resumed = model_weights(root / "two_ranks/checkpoint.npz"), model_weights(root / "resumed/checkpoint.npz")
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)
    _, two_ranks = load_checkpoint(root / "two_ranks/checkpoint.npz")
    _, one_rank_after_two = load_checkpoint(root / "resumed_on_one_rank/checkpoint.npz")
    # 2 steps of 2 ranks x 2 windows, then 2 steps of 1 rank x 2 windows: the position counts windows, not ranks
    assert two_ranks["state"]["sampler"] == {"epoch": 0, "consumed": 16}
    assert one_rank_after_two["state"]["sampler"] == {"epoch": 0, "consumed": 12}
    assert [row["tokens"] for row in one_rank_after_two["state"]["history"]] == [8 * 16, 12 * 16]
    same_step_2 = ("step", "tokens", "train_loss", "val_loss", "lr", "grad_norm")  # all but the timings
    assert all(one_rank_after_two["state"]["history"][0][key] == two_ranks["state"]["history"][0][key]
               for key in same_step_2)


def test_only_rank_0_prints_and_writes(training):
    finished, _ = training
    lines = finished.stdout.splitlines()
    assert any(line.startswith("[rank 0] step") for line in lines)
    assert not any(line.startswith("[rank 1]") for line in lines)
    writes = {row["rank"]: row["writes"] for row in last_json_line(finished.stdout)["writes_by_rank"]}
    assert writes[0] > 0 and writes[1] == 0, writes


def test_a_rank_that_raises_stops_the_job_naming_itself_and_keeps_what_was_written(training):
    finished, root = training
    assert finished.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: deliberate failure" in finished.stderr
    assert "TIMED OUT" not in finished.stdout + finished.stderr  # stopped by MPI_Abort, not by the timeout
    _, saved = load_checkpoint(root / "failure/checkpoint.npz")  # a complete checkpoint of a finished step
    assert saved["state"]["step"] in (1, 2)
    assert json.loads((root / "failure/history.json").read_text())["history"]


def test_the_command_line_trains_on_two_processes(tmp_path):
    arguments = ["-m", "tinygrad_llm", "train", "--data-parallel", "--max-chars", "6000", "--context-size", "16",
                 "--batch-size", "2", "--embed-dim", "16", "--num-layers", "1", "--num-heads", "2", "--steps", "2",
                 "--warmup-steps", "0", "--eval-every", "2", "--eval-batches", "1", "--samples", "0", "--no-progress",
                 "--out-dir", str(tmp_path)]
    finished = run_mpi(2, arguments, timeout_s=TIMEOUT_S, env=REFERENCE_KERNELS)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("Training: TrainConfig(") == 1 and finished.stdout.count("Done in") == 1
    _, saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved["train_config"]["data_parallel"] and saved["state"]["sampler"] == {"epoch": 0, "consumed": 8}


def test_bench_distributed_fast_measures_the_ring_bytes_of_the_formula(tmp_path):
    from tinygrad_llm.benchmarks.distributed import run_distributed_benchmark

    report = run_distributed_benchmark("fast", ranks=(2,), precisions=("fp32",), out=tmp_path / "bench.json",
                                       verbose=False)
    two = report["data_parallel"]["2"]
    assert sum(two["ring_bytes_sent"]) == 2 * two["ring_bytes_formula"] == 2 * 4 * two["parameters"]
    assert two["allreduce_bytes_handed_to_mpi"] == 4 * two["parameters"]
    assert two["tokens_per_s"] > 0 and report["single_process"]["fp32"]["tokens_per_s"] > 0
    assert json.loads((tmp_path / "bench.json").read_text())["meta"]["global_batch"] == 12


def test_a_rank_killed_by_a_signal_stops_the_job_at_once():
    """No Python error to catch, so no MPI_Abort: mpiexec itself sees the process die and ends the whole job, naming
    the signal, long before MPIEXEC_TIMEOUT would."""
    finished = run_mpi(2, [str(PROGRAMS / "rank_killed_by_signal.py")], timeout_s=TIMEOUT_S)
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0
    assert "BAD TERMINATION" in output and "signal 9" in output, output
    assert "rank 0 finished" not in output and "TIMED OUT" not in output, output
