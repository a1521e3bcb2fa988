"""Learning checks for the run logger (Q33, M53).

- A histogram's counts add up to the number of values it was given (non-finite values counted apart) and its
  edges are stored with it.
- Global steps strictly increase for every name, and never go back across names; a logger reopened on the same
  folder (a resumed run) continues after the last step; the epoch as the step is refused with M53 in the message
  (tests/broken_run_logger.py), and a logger without that check leaves a log that breaks the step property.
- What is logged reads back unchanged from the JSONL, the CSV and (where tensorboardX is installed) TensorBoard's
  event files; a line torn by a crash is left out and overwritten by the next record.
"""
import csv
import json
import math
import struct
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import broken_run_logger as broken
from tinygrad_llm.interpretability.run_logger import RunLogger, histogram_record, read_run_log

pytestmark = pytest.mark.interpretability

NAMES = st.sampled_from(["loss", "lr", "weights/fc.weight", "gradients/fc.bias"])


def strictly_increasing(steps) -> bool:
    return bool(np.all(np.diff(steps) > 0))


@st.composite
def schedules(draw):
    """A log to write: (step, name, value), a few names at each step, steps growing by 1 to 3."""
    entries, step = [], draw(st.integers(0, 5))
    for _ in range(draw(st.integers(1, 6))):
        for name in draw(st.lists(NAMES, min_size=1, max_size=4, unique=True)):
            entries.append((step, name, draw(st.floats(-1e6, 1e6, allow_nan=False))))
        step += draw(st.integers(1, 3))
    return entries


@given(values=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=7),
                         elements=st.floats(-1e3, 1e3) | st.sampled_from([np.nan, np.inf, -np.inf])),
       bins=st.integers(1, 20))
def test_histogram_counts_add_up_to_the_number_of_values(values, bins):
    record = histogram_record(values, bins)
    assert sum(record["counts"]) + record["nonfinite"] == values.size
    assert record["nonfinite"] == int((~np.isfinite(values)).sum())
    assert len(record["edges"]) == bins + 1 and np.all(np.diff(record["edges"]) > 0)
    finite = values[np.isfinite(values)]
    assert np.array_equal(record["counts"], np.histogram(finite, bins=record["edges"])[0])
    narrow = histogram_record(values, np.linspace(-1, 1, bins + 1))  # given edges: the end bins take the rest
    assert sum(narrow["counts"]) == finite.size and narrow["edges"] == list(np.linspace(-1, 1, bins + 1))
    assert narrow["counts"][0] >= int((finite <= -1).sum()) and narrow["counts"][-1] >= int((finite >= 1).sum())


@given(schedule=schedules(), resume_at=st.integers(0, 24))
def test_steps_increase_and_a_reopened_logger_continues(tmp_path_factory, schedule, resume_at):
    log_dir = tmp_path_factory.mktemp("run")
    logger = RunLogger(log_dir, tensorboard=False)
    for i, (step, name, value) in enumerate(schedule):
        if i == resume_at:  # a resumed run: a new logger on the same folder
            logger.close()
            logger = RunLogger(log_dir, tensorboard=False)
        logger.scalar(name, value, step)
    last_step, last_name = schedule[-1][:2]
    with pytest.raises(ValueError, match="M53"):
        logger.scalar(last_name, 0.0, last_step)  # the same name at the same step
    if last_step > 0:
        with pytest.raises(ValueError, match="M53"):
            logger.scalar("another name", 0.0, last_step - 1)  # back in time, under any name
    logger.close()

    log = read_run_log(log_dir)
    assert [(r["step"], r["name"], r["value"]) for r in log.records] == schedule
    assert all(strictly_increasing(log.scalars(name)[0]) for name in log.names())
    assert np.all(np.diff([r["step"] for r in log.records]) >= 0)  # never back, across names
    with open(log_dir / "scalars.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), r["name"], float(r["value"])) for r in rows] == schedule


def test_the_epoch_as_the_step_is_refused_naming_m53(tmp_path):
    losses = [[2.0, 1.9, 1.8], [1.7, 1.6, 1.5]]
    with RunLogger(tmp_path / "checked", tensorboard=False) as logger, pytest.raises(ValueError) as error:
        broken.log_losses_by_epoch(logger, losses)
    assert "M53" in str(error.value) and "step 0" in str(error.value)

    with broken.UncheckedRunLogger(tmp_path / "unchecked", tensorboard=False) as logger:
        broken.log_losses_by_epoch(logger, losses)
    steps, _ = read_run_log(tmp_path / "unchecked").scalars("loss")
    assert not strictly_increasing(steps)  # the property the checked logger keeps

    with RunLogger(tmp_path / "by_step", tensorboard=False) as logger:
        for step, loss in enumerate((loss for epoch in losses for loss in epoch), start=1):
            logger.scalar("loss", loss, step)
    assert strictly_increasing(read_run_log(tmp_path / "by_step").scalars("loss")[0])


@pytest.mark.parametrize("step", [1.5, -1, True, "3", None])
def test_a_step_that_is_not_a_global_step_is_refused(tmp_path, step):
    with RunLogger(tmp_path, tensorboard=False) as logger, pytest.raises(ValueError, match="global optimizer step"):
        logger.scalar("loss", 1.0, step)


def test_jsonl_round_trip_keeps_histograms_and_non_finite_scalars(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 7))
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.scalar("grad_norm", float("inf"), 3)
        logger.scalar("update_ratio/bias", float("nan"), 3)
        written = logger.histogram("weights/w", weights, 3, bins=np.linspace(-4, 4, 9))
    log = read_run_log(tmp_path / "log.jsonl")
    assert log.scalars("grad_norm")[1][0] == math.inf and math.isnan(log.scalars("update_ratio/bias")[1][0])
    (read,) = log.histograms("weights/w")
    assert read == written and read["edges"] == list(np.linspace(-4, 4, 9)) and sum(read["counts"]) == 35
    with pytest.raises(KeyError, match="grad_norm"):
        log.scalars("loss")


def test_a_torn_last_line_is_left_out_and_overwritten(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.scalar("loss", 2.0, 1)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 2, "kind": "sca')  # a crash in the middle of a write
    assert len(read_run_log(tmp_path).records) == 1
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.scalar("loss", 1.5, 2)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["value"] for line in lines] == [2.0, 1.5]


def test_overwrite_starts_a_new_log_and_close_is_final(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.scalar("loss", 2.0, 100)
    with RunLogger(tmp_path, tensorboard=False, overwrite=True) as logger:
        logger.scalar("loss", 3.0, 1)
    assert read_run_log(tmp_path).scalars("loss")[0].tolist() == [1]
    with pytest.raises(ValueError, match="closed"):
        logger.scalar("loss", 1.0, 2)


def test_tensorboard_without_tensorboardx_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if it were not installed
    with pytest.raises(ImportError, match=r"\[tensorboard\]"):
        RunLogger(tmp_path, tensorboard=True)
    with RunLogger(tmp_path) as logger:  # the default: without it, JSONL and CSV only
        assert not logger.writes_tensorboard
        logger.scalar("loss", 1.0, 1)


def read_tensorboard_events(log_dir) -> list:
    """Every event in log_dir's event files, parsed from the TFRecord framing (length, its CRC, the payload, its
    CRC) with tensorboardX's protobuf classes."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    events = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            events.append(event_pb2.Event.FromString(data[offset + 12: offset + 12 + length]))
            offset += 12 + length + 4
    return events


def test_tensorboard_event_files_read_back(tmp_path):
    pytest.importorskip("tensorboardX")
    rng = np.random.default_rng(1)
    logged_scalars, logged_histograms = {}, {}
    for steps in [(1, 2), (5, 9)]:  # a run and its resume: two event files
        with RunLogger(tmp_path, tensorboard=True) as logger:
            assert logger.writes_tensorboard
            for step in steps:
                logger.scalar("loss", 1.0 / step, step)
                logged_scalars[step] = 1.0 / step
                logged_histograms[step] = logger.histogram("weights/w", rng.normal(size=40), step, bins=8)
    scalars, histograms = {}, {}
    for event in read_tensorboard_events(tmp_path):
        for value in event.summary.value:
            if value.tag == "loss":
                scalars[event.step] = value.simple_value
            elif value.tag == "weights/w":
                histograms[event.step] = value.histo
    assert scalars == pytest.approx(logged_scalars)
    assert sorted(histograms) == sorted(logged_histograms)
    for step, histo in histograms.items():
        assert list(histo.bucket) == logged_histograms[step]["counts"] and histo.num == 40
        assert list(histo.bucket_limit) == pytest.approx(logged_histograms[step]["edges"][1:])
