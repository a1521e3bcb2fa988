"""A run logger: scalars and histograms over a run, keyed by the global optimizer step (Q33, M53).

    with RunLogger("runs/mlp") as logger:
        for step in range(1, steps + 1):
            ...
            logger.scalar("loss", loss, step)
            logger.histogram("weights/fc1.weight", fc1.weight.data, step)

Files in log_dir:
    log.jsonl     every record, one JSON object a line, appended and flushed as it is logged: a run that
                  crashes keeps everything logged before the crash, and read_run_log() reads it in a notebook
    scalars.csv   the scalars alone, as step,name,value rows (a spreadsheet opens it)
    events.out.tfevents.*   where tensorboardX is installed (the `tensorboard` extra): the same scalars and
                  histograms for `tensorboard --logdir runs/`

The x-axis of every curve is the global step: optimizer updates since the start of the run, never reset by a
new epoch or a resume. Logging the epoch instead (M53) puts every batch of an epoch on the same x, and
curves from runs with different dataset or batch sizes stop lining up; so the logger refuses a step that does
not move forward. Several names may share one step (loss and lr at step 100), but one name gets one value
per step, and the step never goes back. A logger opened on an existing log_dir continues it: a resumed run
appends after its last step.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG_FILE = "log.jsonl"
SCALARS_FILE = "scalars.csv"


def histogram_record(values, bins=30) -> dict:
    """Counts of `values` in `bins` (a number of equal bins over their range, or the edges: values beyond them
    count in the end bins), with the edges and the moments TensorBoard shows. Non-finite values (a blown-up
    gradient) are counted apart, never dropped: sum(counts) + nonfinite == the number of values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("histogram_record: there are no values to count; log a histogram of a non-empty array")
    finite = values[np.isfinite(values)]
    if not np.isscalar(bins):
        finite = np.clip(finite, bins[0], bins[-1])
    counts, edges = np.histogram(finite, bins=bins)
    return {"counts": counts.tolist(), "edges": edges.tolist(), "nonfinite": int(values.size - finite.size),
            "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None,
            "sum": float(finite.sum()), "sum_squares": float(np.dot(finite, finite))}


def _complete_lines(path: Path) -> tuple[list[str], int]:
    """The complete lines of a JSONL file and the byte length they span. A crash in the middle of a write can
    leave a last line without its newline: that torn record is not part of the log."""
    if not path.exists():
        return [], 0
    text = path.read_bytes()
    complete = text[: text.rfind(b"\n") + 1]
    return complete.decode("utf-8").splitlines(), len(complete)


def _tensorboard_writer(log_dir: Path, tensorboard: bool | None):
    """tensorboardX's SummaryWriter on log_dir, or None: tensorboard=None means "if installed", True insists."""
    if tensorboard is False:
        return None
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        if tensorboard:
            raise ImportError("RunLogger(tensorboard=True): TensorBoard event files are written through tensorboardX, "
                              "which is not installed; pip install -e \".[tensorboard]\" (or pass tensorboard=None to "
                              "write only log.jsonl and scalars.csv)") from None
        return None
    # Event files are named by the second and the host: a resumed logger needs a suffix of its own, or a
    # resume within the same second would overwrite the first part of the run.
    part = len(list(log_dir.glob("events.out.tfevents.*")))
    return SummaryWriter(str(log_dir), flush_secs=5, filename_suffix=f".part{part}")


class RunLogger:
    """Scalars and histograms keyed by a global step, to JSONL, CSV and (optionally) TensorBoard.

    tensorboard: None writes event files where tensorboardX is installed, True requires it, False never.
    overwrite: delete an earlier log in log_dir first (a new run written over an old one, as a new checkpoint
        replaces the old); by default an earlier log is continued (a resumed run).
    """

    def __init__(self, log_dir, tensorboard: bool | None = None, overwrite: bool = False):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path, csv_path = self.log_dir / LOG_FILE, self.log_dir / SCALARS_FILE
        if overwrite:
            for path in (log_path, csv_path, *self.log_dir.glob("events.out.tfevents.*")):
                path.unlink(missing_ok=True)
        self._tensorboard = _tensorboard_writer(self.log_dir, tensorboard)  # first: it may raise
        lines, length = _complete_lines(log_path)
        self.last_step_of = {}  # name -> the last step it was logged at; continued from an existing log
        for line in lines:
            record = json.loads(line)
            self.last_step_of[record["name"]] = record["step"]
        self.step = max(self.last_step_of.values(), default=None)
        if log_path.exists():
            with open(log_path, "r+b") as f:
                f.truncate(length)
        self._log = open(log_path, "a", encoding="utf-8")
        new_csv = not csv_path.exists() or csv_path.stat().st_size == 0
        self._csv_file = open(csv_path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        if new_csv:
            self._csv.writerow(["step", "name", "value"])
        self.closed = False

    @property
    def writes_tensorboard(self) -> bool:
        return self._tensorboard is not None

    def _check_step(self, what: str, name: str, step) -> int:
        if self.closed:
            raise ValueError(f"RunLogger.{what}: the logger of {self.log_dir} is closed; open a new RunLogger on the "
                             f"same folder to continue the run")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"RunLogger.{what}({name!r}): step must be the global optimizer step, a non-negative "
                             f"integer, got {step!r}")
        repeated = self.last_step_of.get(name) == step
        if self.step is not None and (step < self.step or repeated):
            already = f"{name!r} was already logged at step {step}" if repeated else f"the run is at step {self.step}"
            raise ValueError(
                f"RunLogger.{what}({name!r}): step {step} does not move forward: {already} ({self.log_dir}). "
                f"The step is the global optimizer step: it counts updates from the start of the run and only "
                f"grows, across epochs and resumes. An epoch number (or a per-epoch batch index) repeats steps and "
                f"piles the points of a whole epoch onto one x (M53); pass the optimizer step instead")
        return int(step)

    def _write(self, record: dict) -> None:
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()
        self.last_step_of[record["name"]] = self.step = record["step"]

    def scalar(self, name: str, value, step: int) -> None:
        """One number for `name` at global step `step`."""
        step = self._check_step("scalar", name, step)
        value = float(value)
        self._write({"step": step, "kind": "scalar", "name": name, "value": value})
        self._csv.writerow([step, name, value])
        self._csv_file.flush()
        if self._tensorboard is not None:
            self._tensorboard.add_scalar(name, value, step)

    def histogram(self, name: str, values, step: int, bins=30) -> dict:
        """The distribution of `values` (any array: a weight matrix, its gradient) at `step`; returns the record."""
        step = self._check_step("histogram", name, step)
        record = {"step": step, "kind": "histogram", "name": name, **histogram_record(values, bins)}
        self._write(record)
        if self._tensorboard is not None and sum(record["counts"]):
            self._tensorboard.add_histogram_raw(
                name, min=record["min"], max=record["max"], num=sum(record["counts"]), sum=record["sum"],
                sum_squares=record["sum_squares"], bucket_limits=record["edges"][1:], bucket_counts=record["counts"],
                global_step=step)
        return record

    def close(self) -> None:
        if self.closed:
            return
        self._log.close()
        self._csv_file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


@dataclass
class RunLog:
    """What read_run_log returns: every record, and the curves a notebook plots."""
    records: list

    def names(self, kind: str | None = None) -> list:
        """The names logged, in first-logged order ("scalar" or "histogram" for one kind only)."""
        return list(dict.fromkeys(r["name"] for r in self.records if kind in (None, r["kind"])))

    def scalars(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one scalar, for ax.plot(*log.scalars("loss"))."""
        rows = [(r["step"], r["value"]) for r in self.records if r["name"] == name and r["kind"] == "scalar"]
        if not rows:
            raise KeyError(f"RunLog.scalars: no scalar {name!r}; the scalars are {self.names('scalar')}")
        steps, values = zip(*rows)
        return np.array(steps), np.array(values)

    def histograms(self, name: str) -> list:
        """The histogram records of one name, in step order (each has step, counts, edges, nonfinite)."""
        found = [r for r in self.records if r["name"] == name and r["kind"] == "histogram"]
        if not found:
            raise KeyError(f"RunLog.histograms: no histogram {name!r}; the histograms are {self.names('histogram')}")
        return found


def read_run_log(path) -> RunLog:
    """Read a RunLogger's log: `path` is its folder or the log.jsonl in it (a torn last line is left out)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"read_run_log: {path} does not exist; pass the folder a RunLogger wrote "
                                f"(it holds {LOG_FILE})")
    return RunLog([json.loads(line) for line in _complete_lines(path)[0]])
