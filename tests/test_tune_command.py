"""`python -m tinygrad_llm tune` and its log: the command on a tiny GPT writes the log, table and plot; an
interrupted or extended search resumes from its log without retraining anything and ends exactly where an
uninterrupted one does; a log from another search is refused; every trial lies in the search space."""
import contextlib
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import tinygrad_llm.training as training
from tinygrad_llm.__main__ import main
from tinygrad_llm.training.config import TrainConfig
from tinygrad_llm.tuning.command import gpt_search_space, planned_trials, trial_train_config, tune
from tinygrad_llm.tuning.trial_log import TrialLog

pytestmark = pytest.mark.hpo

TINY = ["--max-chars", "4000", "--steps", "12", "--context-size", "16", "--batch-size", "4", "--embed-dim", "16",
        "--num-heads", "2", "--num-layers", "1", "--eval-batches", "2", "--eval-every", "100", "--no-progress"]
TINY_BASE = TrainConfig(max_chars=4000, steps=12, context_size=16, batch_size=4, embed_dim=16, num_heads=2,
                        num_layers=1, eval_batches=2, eval_every=100, warmup_steps=0)
SPACE = gpt_search_space(TINY_BASE)
MAX_BUDGET = 27


class CountingObjective:
    """A cheap stand-in for training (a bowl around lr 1e-3 and width 16; more steps, lower loss) that records
    every call and, like Ctrl-C, raises KeyboardInterrupt at call number stop_at."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def __call__(self, config, budget):
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append(json.dumps([config, budget], sort_keys=True))
        return ((math.log10(config["lr"]) + 3) ** 2 + (math.log2(config["embed_dim"]) - 4) ** 2
                + config["dropout"] + config["warmup_fraction"] + 1 / budget)


def outcome(trials):
    return [(t.number, t.config, t.budget, t.loss, t.bracket, t.rung) for t in trials]


def search(objective, method, trials, out_dir, seed):
    return tune(objective, SPACE, method, trials, MAX_BUDGET, out_dir, seed=seed, progress=False, plot=False)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The command run twice on a tiny GPT: 3 random trials, then the same command asking for 4."""
    out_dir = tmp_path_factory.mktemp("tune")
    trainings = []
    original = training.train_language_model

    def counted(config, **kwargs):
        trainings.append(config)
        return original(config, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train_language_model", counted)  # the objective looks it up when it is built
        first = main(["tune", "--trials", "3", "--method", "random", "--out-dir", str(out_dir), *TINY])
        trained_first = len(trainings)
        second = main(["tune", "--trials", "4", "--method", "random", "--out-dir", str(out_dir), *TINY])
    return {"out_dir": out_dir, "codes": (first, second), "trainings": (trained_first, len(trainings) - trained_first)}


def test_the_command_writes_its_log_table_and_plot_and_resumes_without_retraining(cli_run):
    out_dir = cli_run["out_dir"]
    assert cli_run["codes"] == (0, 0)
    assert cli_run["trainings"] == (3, 1)  # the second run trained only the new fourth trial
    lines = (out_dir / "trials.jsonl").read_text().splitlines()
    assert "search" in json.loads(lines[0]) and len(lines) == 1 + 4
    trials = [json.loads(line) for line in lines[1:]]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(SPACE.contains(t["config"]) and t["budget"] == 12 and math.isfinite(t["loss"]) for t in trials)
    assert len((out_dir / "results.txt").read_text().splitlines()) == 1 + 4
    assert (out_dir / "best_so_far.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_refuses_a_log_from_another_search(cli_run, capsys):
    other_steps = [value if value != "12" else "13" for value in TINY]
    code = main(["tune", "--trials", "4", "--method", "random", "--out-dir", str(cli_run["out_dir"]), *other_steps])
    error = capsys.readouterr().err
    assert code == 2 and "different search" in error and "train.steps: logged 12, now 13" in error


def test_ctrl_c_in_the_command_keeps_the_log_and_says_how_to_continue(cli_run, capsys, monkeypatch):
    def interrupted(config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_language_model", interrupted)
    log = cli_run["out_dir"] / "trials.jsonl"
    before = log.read_text()
    code = main(["tune", "--trials", "5", "--method", "random", "--out-dir", str(cli_run["out_dir"]), *TINY])
    assert code == 130 and "run the same command again" in capsys.readouterr().out
    assert log.read_text() == before  # the four logged trials replayed, the fifth never finished


@settings(max_examples=10)
@given(method=st.sampled_from(["random", "grid", "halving"]), trials=st.integers(1, 17), seed=st.integers(0, 2**16),
       stop_at=st.integers(0, 30))
def test_an_interrupted_search_resumes_without_retraining_and_matches_an_uninterrupted_one(method, trials, seed,
                                                                                           stop_at):
    with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as parts:
        uninterrupted = search(CountingObjective(), method, trials, whole, seed)
        before, after = CountingObjective(stop_at=stop_at), CountingObjective()
        try:
            search(before, method, trials, parts, seed)
        except KeyboardInterrupt:
            pass
        assert len(TrialLog(Path(parts) / "trials.jsonl", _header(parts)).trials) == len(before.calls)  # a valid log
        resumed = search(after, method, trials, parts, seed)
    assert outcome(resumed.trials) == outcome(uninterrupted.trials)
    assert not set(before.calls) & set(after.calls)  # nothing logged was trained again
    assert len(before.calls) + len(after.calls) == len({json.dumps([t.config, t.budget], sort_keys=True)
                                                        for t in uninterrupted.trials})
    assert resumed.trained == len(after.calls)
    assert [t.budget for t in resumed.trials] == planned_trials(method, SPACE, trials, MAX_BUDGET, seed)
    assert all(SPACE.contains(t.config) for t in resumed.trials)


def _header(out_dir):
    """The search description a log in out_dir was written with (its first line)."""
    return json.loads((Path(out_dir) / "trials.jsonl").read_text().splitlines()[0])["search"]


@pytest.mark.parametrize("method, first, then", [("random", 2, 4), ("halving", 9, 9), ("bo", 6, 7)])
def test_asking_for_more_trials_extends_the_search(tmp_path, method, first, then):
    """More trials on the same log train only what is new (bo: both runs past its 5 initial points), also after
    bo was interrupted in its first proposal (call 6); the same trials again train nothing."""
    start = CountingObjective(stop_at=5 if method == "bo" else None)
    with pytest.raises(KeyboardInterrupt) if method == "bo" else contextlib.nullcontext():
        search(start, method, first, tmp_path / "parts", seed=3)
    rest = CountingObjective()
    extended = search(rest, method, then, tmp_path / "parts", seed=3)
    uninterrupted = search(CountingObjective(), method, then, tmp_path / "whole", seed=3)
    assert outcome(extended.trials) == outcome(uninterrupted.trials)
    assert len(start.calls + rest.calls) == len(set(start.calls + rest.calls)) == len(extended.trials)
    assert all(SPACE.contains(t.config) for t in extended.trials)


def test_a_log_from_another_search_is_refused_and_a_torn_last_line_is_dropped(tmp_path):
    search(CountingObjective(), "random", 3, tmp_path, seed=0)
    with pytest.raises(ValueError, match="different search.*seed: logged 0, now 1"):
        search(CountingObjective(), "random", 3, tmp_path, seed=1)
    log = tmp_path / "trials.jsonl"
    log.write_text(log.read_text() + '{"number": 3, "config": {"lr"')  # killed while writing a line
    again = CountingObjective()
    resumed = search(again, "random", 4, tmp_path, seed=0)
    assert len(again.calls) == 1 and len(resumed.trials) == 4
    assert log.read_text().endswith("\n") and len(log.read_text().splitlines()) == 1 + 4


@given(st.sampled_from(["lr", "embed_dim", "dropout", "warmup_fraction"]), st.integers(1, 60))
def test_a_trial_becomes_a_valid_train_config_with_its_values(name, budget):
    config = SPACE.sample()
    train_config = trial_train_config(TINY_BASE, config, budget)
    assert train_config.steps == budget and 0 <= train_config.warmup_steps < budget
    assert train_config.embed_dim % train_config.num_heads == 0
    assert math.isclose(train_config.min_lr / train_config.lr, TINY_BASE.min_lr / TINY_BASE.lr)
    if name != "warmup_fraction":
        assert getattr(train_config, name) == config[name]
