"""Trials on several ranks (tuning/parallel_trials.py) find exactly what the serial search finds: the same
configurations, budgets, losses and order, for every searcher of `tune`, on 1, 2 and 3 ranks; every trial of the
serial search is trained exactly once across the ranks; random and grid search waste nothing; a resumed parallel
search trains nothing its log holds; and `mpiexec -n 2 ... tune --parallel-trials` writes the serial command's
results. A search that trusts its speculative requests (tests/broken_parallel_trials.py) is caught. The ranks are
threads (run_on_thread_ranks) except in the one mpiexec run."""
import json
import math
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tinygrad_llm.__main__ import main
from tinygrad_llm.distributed import mpiexec_path, run_mpi
from tinygrad_llm.distributed.thread_ranks import run_on_thread_ranks
from tinygrad_llm.kernels import get_kernels, set_kernels
from tinygrad_llm.training.config import TrainConfig
from tinygrad_llm.tuning.bayesian_search import bayesian_search
from tinygrad_llm.tuning.command import gpt_search_space, run_searcher, tune
from tinygrad_llm.tuning.parallel_trials import run_search_on_ranks
from tinygrad_llm.tuning.trial_log import TrialLog, trial_key

import broken_parallel_trials as broken

pytestmark = pytest.mark.hpo

BASE = TrainConfig(max_chars=4000, steps=12, context_size=16, batch_size=4, embed_dim=16, num_heads=2,
                   num_layers=1, eval_batches=2, eval_every=100, warmup_steps=0)
SPACE = gpt_search_space(BASE)
MAX_BUDGET = 27


def on_ranks(ranks, fn):
    return run_on_thread_ranks(fn, ranks)


class SyntheticObjective:
    """A cheap stand-in for training, drawn per example: a bowl around a drawn lr and width (more steps, lower
    loss) that diverges (NaN) above a drawn lr, as a real run can. It counts its calls across all ranks."""

    def __init__(self, best_lr_exponent: float, diverges_above: float):
        self.best, self.diverges_above = best_lr_exponent, diverges_above
        self.calls, self.lock = [], threading.Lock()

    def __call__(self, config, budget):
        with self.lock:
            self.calls.append(trial_key(config, budget))
        if config["lr"] > self.diverges_above:
            return math.nan
        return ((math.log10(config["lr"]) - self.best) ** 2 + (math.log2(config["embed_dim"]) - 4) ** 2
                + config["dropout"] + config["warmup_fraction"] + 1 / budget)


def outcome(trials):
    """Everything a trial says but its seconds (a measured time): NaN losses compared as equal."""
    return [(t.number, t.config, t.budget, "nan" if math.isnan(t.loss) else t.loss, t.bracket, t.rung)
            for t in trials]


def searcher(method, trials, seed):
    """tune's searcher (run_searcher), except that bo proposes from 200 candidates after 3 initial points
    instead of 2000 after 5: every rank replays every proposal each round, and the property must stay cheap."""
    if method == "bo":
        return lambda objective, on_trial: bayesian_search(objective, SPACE, trials, MAX_BUDGET, min(3, trials),
                                                           seed=seed, on_trial=on_trial, candidates=200)
    return lambda objective, on_trial: run_searcher(method, objective, SPACE, trials, MAX_BUDGET, seed, on_trial)



objectives = st.builds(SyntheticObjective, st.floats(-4, -2), st.sampled_from([math.inf, 3e-3, 1e-2]))


def check_the_ranks_find_the_serial_search(method, ranks, seed, trials, objective):
    """The parallel search on `ranks` thread ranks against the serial one: the same trials on every rank, each
    trial of the serial search trained exactly once, and only speculative requests trained besides."""
    serial = searcher(method, trials, seed)(objective, None)
    serial_keys = objective.calls
    objective.calls = []
    results = on_ranks(ranks, lambda comm: run_search_on_ranks(searcher(method, trials, seed), objective, comm))
    for result in results:  # every rank ends with the same answer
        assert outcome(result.trials) == outcome(serial)
        assert outcome(result.trained) == outcome(results[0].trained)
        assert [t.seconds for t in result.trials] == [t.seconds for t in results[0].trials]
    trained = [trial_key(t.config, t.budget) for t in results[0].trained]
    assert sorted(objective.calls) == sorted(trained) and len(set(trained)) == len(trained)  # nothing twice
    assert set(serial_keys) <= set(trained)  # the serial search's trials were all trained ...
    assert results[0].wasted == len(trained) - len(set(serial_keys))  # ... and the rest is the waste
    if method in ("random", "grid") or ranks == 1:
        assert results[0].wasted == 0  # every request was a trial the serial search runs
    assert results[0].rounds >= math.ceil(len(set(serial_keys)) / ranks)


@given(method=st.sampled_from(["random", "grid", "halving"]), ranks=st.integers(1, 3), seed=st.integers(0, 999),
       trials=st.integers(1, 17), objective=objectives)
def test_the_ranks_find_exactly_the_serial_search_and_train_each_of_its_trials_once(method, ranks, seed, trials,
                                                                                    objective):
    check_the_ranks_find_the_serial_search(method, ranks, seed, trials, objective)


@settings(max_examples=6)  # every rank replays every GP proposal each round
@given(ranks=st.integers(1, 3), seed=st.integers(0, 999), trials=st.integers(4, 5), objective=objectives)
def test_bayesian_optimisation_on_ranks_finds_exactly_the_serial_search(ranks, seed, trials, objective):
    check_the_ranks_find_the_serial_search("bo", ranks, seed, trials, objective)


def test_random_and_grid_keep_every_rank_busy_and_bo_speculates_after_its_initial_design():
    """On a fixed small case: random and grid need ceil(n / K) rounds and train nothing extra; halving and BO
    need fewer rounds than trials, and BO trains a speculative proposal that its search never asks for."""
    def run(method, ranks, trials=9, seed=1):
        objective = SyntheticObjective(-3, math.inf)
        return on_ranks(ranks, lambda comm: run_search_on_ranks(searcher(method, trials, seed), objective, comm))[0]

    for method in ("random", "grid"):
        result = run(method, 3, trials=16)  # grid: 2 points for each of the 4 parameters with a range
        assert result.wasted == 0 and result.rounds == math.ceil(len(result.trials) / 3)
    halving, bo = run("halving", 2), run("bo", 2, trials=5)
    assert halving.rounds < len(halving.trials) and bo.rounds < len(bo.trials)
    assert bo.wasted >= 1  # after the initial design, each proposal waits for the loss before it


def test_a_resumed_parallel_search_trains_nothing_its_log_holds(tmp_path):
    """An interrupted serial search, resumed on 3 thread ranks: only rank 0 writes the log, the others return None,
    no logged trial is trained again, and the result equals an uninterrupted serial search's."""
    class Interrupting(SyntheticObjective):
        def __call__(self, config, budget):
            if len(self.calls) == 4:
                raise KeyboardInterrupt
            return super().__call__(config, budget)

    arguments = dict(space=SPACE, method="halving", trials=9, max_budget=MAX_BUDGET, seed=5, progress=False,
                     plot=False)
    whole = tune(SyntheticObjective(-3, 1e-2), out_dir=tmp_path / "whole", **arguments)
    with pytest.raises(KeyboardInterrupt):
        tune(Interrupting(-3, 1e-2), out_dir=tmp_path / "parts", **arguments)
    header = json.loads((tmp_path / "parts/trials.jsonl").read_text().splitlines()[0])["search"]
    logged = {trial_key(t.config, t.budget) for t in TrialLog(tmp_path / "parts/trials.jsonl", header).trials}
    assert len(logged) == 4
    rest = SyntheticObjective(-3, 1e-2)
    results = on_ranks(3, lambda comm: tune(rest, out_dir=tmp_path / "parts", comm=comm, **arguments))
    assert results[1] is None and results[2] is None
    resumed = results[0]
    assert outcome(resumed.trials) == outcome(whole.trials)
    assert not logged & set(rest.calls)
    assert resumed.trained == len(whole.trials) - len(logged)
    assert len((tmp_path / "parts/results.txt").read_text().splitlines()) == 1 + len(whole.trials)


def results_rows(out_dir):
    """results.txt without its seconds column (a measured time)."""
    lines = (Path(out_dir) / "results.txt").read_text().splitlines()
    return [line.split()[:5] + line.split()[6:] for line in lines]


def logged_losses(out_dir) -> dict:
    lines = (Path(out_dir) / "trials.jsonl").read_text().splitlines()[1:]
    return {trial_key(trial["config"], trial["budget"]): trial["loss"] for trial in map(json.loads, lines)}


TINY = ["--max-chars", "4000", "--steps", "12", "--context-size", "16", "--batch-size", "4", "--embed-dim", "16",
        "--num-heads", "2", "--num-layers", "1", "--eval-batches", "2", "--eval-every", "100", "--no-progress"]


@pytest.mark.skipif(mpiexec_path() is None, reason="needs MPI: pip install -e '.[distributed]'")
def test_the_command_on_two_mpi_ranks_writes_the_serial_commands_results(tmp_path):
    """halving on 3 configurations of a tiny GPT (3 trials of 4 steps, then 1 of 12), on 2 ranks under mpiexec and
    in this process, both with the reference kernels and one BLAS thread, so the losses agree to the last bit."""
    command = ["tune", "--trials", "3", "--method", "halving", *TINY]
    two = run_mpi(2, ["-m", "tinygrad_llm", *command, "--parallel-trials", "--out-dir", str(tmp_path / "two")],
                  timeout_s=150, env={"TGL_KERNELS": "reference"})  # no Numba compilation in each rank
    assert two.returncode == 0, two.stderr[-3000:]
    kernels_before = get_kernels()
    set_kernels("reference")
    try:
        assert main([*command, "--out-dir", str(tmp_path / "one")]) == 0
    finally:
        set_kernels(kernels_before)
    assert results_rows(tmp_path / "two") == results_rows(tmp_path / "one") and len(results_rows(tmp_path / "one")) == 5
    serial, parallel = logged_losses(tmp_path / "one"), logged_losses(tmp_path / "two")
    assert all(parallel[key] == loss for key, loss in serial.items())
    assert two.stdout.count("Tuning with halving") == 1 and two.stdout.count("Best: validation loss") == 1


def test_the_checks_catch_a_search_that_trusts_its_speculative_requests():
    """The broken search ends when a replay's requests fit in one round. On random search nothing it trains is
    speculative, so it passes; on BO with 3 ranks the round after the initial design holds a proposal made
    after a placeholder, and it returns that guess."""
    def run(method, search_on_ranks, trials):
        objective = SyntheticObjective(-3, math.inf)
        return on_ranks(3, lambda comm: search_on_ranks(searcher(method, trials, 0), objective, comm))[0]

    def serial(method, trials):
        return searcher(method, trials, 0)(SyntheticObjective(-3, math.inf), None)

    broken_random = run("random", broken.search_that_ends_when_the_requests_fit_in_one_round, 5)
    assert outcome(broken_random) == outcome(serial("random", 5))
    broken_bo, serial_bo = run("bo", broken.search_that_ends_when_the_requests_fit_in_one_round, 5), serial("bo", 5)
    assert outcome(broken_bo) != outcome(serial_bo)
    assert [t.config for t in broken_bo[:4]] == [t.config for t in serial_bo[:4]]  # only the guess differs
