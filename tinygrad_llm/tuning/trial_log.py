"""An append-only JSON Lines log of a search's trials: what makes a long search resumable.

The first line describes the search (method, seed, space, the fixed training settings); every later line is one
Trial, written and flushed the moment it finishes, so an interruption (Ctrl-C, a crash, a closed laptop) loses
at most the trial that was running.

Resuming does not patch the searcher's state back together. It re-runs the searcher from the start with the same
seed, and the objective is memoised: a (config, budget) the log already holds is answered with its logged loss
instead of being trained again. A deterministic searcher fed the same losses makes the same decisions, so it
walks quickly through the logged trials and goes on where it stopped. A log written by a different search is
refused: its losses answer other questions (another space, other steps, another corpus).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from .trial import Trial


def trial_key(config: dict, budget) -> str:
    """One string per (config, budget): floats are written exactly (repr round-trips), 3 and 3.0 stay apart."""
    return json.dumps([config, budget], sort_keys=True)


def _as_read_back(value):
    """value as it comes back from a JSON line (tuples become lists), so a description compares with a logged one."""
    return json.loads(json.dumps(value))


def _flatten(description: dict, prefix: str = "") -> dict:
    """{"train": {"steps": 20}} as {"train.steps": 20}, so a refusal names the one setting that differs."""
    flat = {}
    for name, value in description.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


class TrialLog:
    """The trials of one search, in path (JSONL). Opening an existing log checks that it describes the same search
    and reads its trials back; `record` appends a new trial; `memoised` wraps an objective with the log's losses."""

    def __init__(self, path, search: dict):
        self.path = Path(path)
        self.search = _as_read_back(search)
        self.trials: list[Trial] = []
        self.appended = 0  # trials trained and logged by this process (the others were read back)
        if self.path.exists():
            self._drop_torn_line()
        if self.path.exists() and self.path.stat().st_size > 0:
            self._read_back()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append_line({"search": self.search})
        self._by_key = {trial_key(trial.config, trial.budget): trial for trial in self.trials}

    def _drop_torn_line(self):
        """A process killed in the middle of writing a line leaves half a line at the end: cut it off."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def _read_back(self):
        lines = self.path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0])
        logged = header.get("search", {}) if isinstance(header, dict) else {}
        if logged != self.search:
            logged_flat, now_flat = _flatten(logged), _flatten(self.search)
            differences = "; ".join(f"{name}: logged {logged_flat.get(name)!r}, now {now_flat.get(name)!r}"
                                    for name in sorted(set(logged_flat) | set(now_flat))
                                    if logged_flat.get(name) != now_flat.get(name))
            raise ValueError(f"TrialLog: {self.path} was written by a different search ({differences}); its losses "
                             f"answer other questions. Resume it with the same flags, or give another --out-dir "
                             f"(or delete the log) to start afresh")
        self.trials = [Trial(**json.loads(line)) for line in lines[1:]]

    def _append_line(self, record: dict):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def lookup(self, config: dict, budget) -> Trial | None:
        """The logged trial of this (config, budget), or None when it was never run."""
        return self._by_key.get(trial_key(config, budget))

    def record(self, trial: Trial) -> Trial:
        """Append a newly run trial. A trial the log already holds is not written again; it comes back with its
        logged duration (the replay took no time), numbered as the searcher numbers it now."""
        logged = self.lookup(trial.config, trial.budget)
        if logged is not None:
            return dataclasses.replace(trial, seconds=logged.seconds)
        self._append_line(trial.as_dict())
        self.trials.append(trial)
        self._by_key[trial_key(trial.config, trial.budget)] = trial
        self.appended += 1
        return trial

    def memoised(self, objective):
        """objective(config, budget), answered from the log whenever the log holds that (config, budget)."""
        def answer(config: dict, budget) -> float:
            logged = self.lookup(config, budget)
            return logged.loss if logged is not None else objective(config, budget)
        return answer
