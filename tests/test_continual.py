"""Keeping a model up to date (Q29): the drifting stream, reservoir sampling, and the learners that follow it."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_llm.experiments import continual as experiment
from tinygrad_llm.transfer.continual import (DriftingStream, ReservoirBuffer, boundary_labels, follow_stream,
                                             make_classifier, plateau_schedule_run)

pytestmark = pytest.mark.pretraining


# ---------------------------------------------------------------- reservoir sampling (Algorithm R)
def reservoir_chi_square(buffer_class, capacity: int, length: int, runs: int = 600) -> tuple[float, float]:
    """(chi-square statistic, bar) for how often each of `length` items ends up in the buffer over `runs` runs.

    Chi-square goodness of fit against equal counts (each item kept in runs * capacity / length runs). With
    length - 1 degrees of freedom the statistic has mean length - 1 and sd sqrt(2 (length - 1)); the bar sits
    6 sd above the mean, so a correct reservoir essentially never fails it, while one that favours the first or
    the last items overshoots it by orders of magnitude."""
    rng = np.random.default_rng(capacity * 1000 + length)
    counts = np.zeros(length)
    for _ in range(runs):
        buffer = buffer_class(capacity, rng)
        buffer.extend(range(length))
        counts[buffer.items] += 1
    expected = runs * capacity / length
    dof = length - 1
    return float((((counts - expected) ** 2) / expected).sum()), dof + 6 * math.sqrt(2 * dof) + 10


class ReplaceEveryTime(ReservoirBuffer):
    """The classic bug: once full, every new item replaces a random slot (probability 1, not capacity / n)."""

    def add(self, item):
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            self.items[int(self.rng.integers(self.capacity))] = item


@settings(max_examples=15)
@given(capacity=st.integers(1, 8), length=st.integers(1, 30))
def test_reservoir_keeps_every_item_with_probability_capacity_over_n(capacity, length):
    if length <= capacity:
        buffer = ReservoirBuffer(capacity, 0)
        buffer.extend(range(length))
        assert buffer.items == list(range(length))
        return
    chi_square, bar = reservoir_chi_square(ReservoirBuffer, capacity, length)
    assert chi_square < bar, (chi_square, bar)


def test_the_chi_square_check_catches_a_reservoir_that_favours_recent_items():
    chi_square, bar = reservoir_chi_square(ReplaceEveryTime, capacity=4, length=30)
    assert chi_square > 10 * bar, (chi_square, bar)


@given(capacity=st.integers(1, 20), length=st.integers(0, 60), seed=st.integers(0, 2**16))
def test_reservoir_never_exceeds_capacity_and_holds_a_short_stream_whole(capacity, length, seed):
    buffer = ReservoirBuffer(capacity, seed)
    for n, item in enumerate(range(length), start=1):
        buffer.add(item)
        assert len(buffer) == min(n, capacity)
    assert buffer.seen == length
    if length <= capacity:
        assert buffer.items == list(range(length))
    else:
        assert len(set(buffer.items)) == capacity  # distinct items of the stream, no duplicates
        assert set(buffer.items) <= set(range(length))


def test_reservoir_rejects_a_bad_capacity_and_an_empty_replay():
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        ReservoirBuffer(0)
    with pytest.raises(ValueError, match="buffer is empty"):
        ReservoirBuffer(3, 0).sample(2)


# ---------------------------------------------------------------- the drifting stream
@given(angle=st.floats(-2 * math.pi, 2 * math.pi), seed=st.integers(0, 2**16))
def test_labels_are_the_side_of_the_line(angle, seed):
    points = np.random.default_rng(seed).standard_normal((50, 2))
    normal = np.array([-math.sin(angle), math.cos(angle)])  # the line's normal, pointing to its left
    labels = boundary_labels(points, angle)
    np.testing.assert_array_equal(labels, (points @ normal > 0).astype(np.int64))
    # The opposite direction is the same line with its sides swapped.
    away_from_line = np.abs(points @ normal) > 1e-9
    np.testing.assert_array_equal(boundary_labels(points, angle + math.pi)[away_from_line], 1 - labels[away_from_line])


@given(num_batches=st.integers(2, 30), drift=st.sampled_from(["abrupt", "gradual"]), length=st.integers(1, 8),
       rotation=st.floats(0.1, math.pi), seed=st.integers(0, 100))
def test_the_stream_labels_match_its_boundary_at_every_step(num_batches, drift, length, rotation, seed):
    stream = DriftingStream(num_batches, 8, drift_at=num_batches // 2, rotation=rotation, drift=drift,
                            drift_length=length, seed=seed)
    batches = list(stream)
    assert len(batches) == num_batches
    for step, (points, labels) in enumerate(batches):
        np.testing.assert_array_equal(labels, boundary_labels(points, stream.angle_at(step)))
    angles = [stream.angle_at(step) for step in range(num_batches)]
    assert angles[0] == stream.start_angle and all(a == 0.0 for a in angles[:num_batches // 2])
    assert np.all(np.diff(angles) >= 0)  # the line only turns one way
    if drift == "abrupt" or num_batches // 2 + length <= num_batches:
        assert math.isclose(angles[-1], stream.final_angle)


def test_the_stream_is_reproducible_from_its_seed():
    first, second = list(DriftingStream(5, 4, seed=3)), list(DriftingStream(5, 4, seed=3))
    for (p1, y1), (p2, y2) in zip(first, second):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(y1, y2)


def test_bad_stream_options_are_explained():
    with pytest.raises(ValueError, match="drift must be one of"):
        DriftingStream(10, drift="sudden")
    with pytest.raises(ValueError, match="drift_at must be in"):
        DriftingStream(10, drift_at=11)
    with pytest.raises(ValueError, match="points must have shape"):
        boundary_labels(np.zeros((3, 3)), 0.0)
    with pytest.raises(ValueError, match="strategy must be one of"):
        follow_stream(make_classifier(), DriftingStream(4), "retrain")


# ---------------------------------------------------------------- the learners on the stream
@pytest.fixture(scope="module")
def drift_table():
    return experiment.drift_comparison(fast=True)


def test_online_sgd_beats_the_frozen_model_after_the_drift(drift_table):
    final = drift_table["final"]
    assert final["frozen"]["current"] < 0.65, final  # a 90 degree turn: right on about half the plane
    assert final["online"]["current"] > 0.9, final
    assert final["online"]["current"] - final["frozen"]["current"] > 0.25, final


def test_replay_remembers_more_of_the_old_boundary_than_plain_online_sgd(drift_table):
    final = drift_table["final"]
    assert final["frozen"]["old"] > 0.95, final  # never updated: still the old model
    assert final["replay"]["old"] > final["online"]["old"] + 0.05, final


def test_every_learner_learned_the_first_boundary_before_the_drift(drift_table):
    for strategy, history in drift_table["histories"].items():
        before = [acc for step, acc in zip(history["step"], history["current"]) if step <= drift_table["drift_at"]]
        assert before[-1] > 0.9, (strategy, before)


def test_a_frozen_model_does_not_change_after_the_drift():
    stream = DriftingStream(20, 16, drift_at=10, seed=1)
    history = follow_stream(make_classifier(seed=1), stream, "frozen", eval_every=2)
    assert history["batch_loss"][10:] == [0.0] * 10
    after = [acc for step, acc in zip(history["step"], history["old"]) if step > 10]
    assert len(set(after)) == 1  # the same predictions on the same points: nothing moved


# ---------------------------------------------------------------- plateau scheduling (M13)
@pytest.fixture(scope="module")
def plateau():
    return experiment.plateau_comparison(fast=True)


def test_the_batch_loss_driven_schedule_cuts_the_lr_sooner_and_more_often(plateau):
    batch, validation = plateau["batch"], plateau["validation"]
    assert len(batch["reductions"]) > len(validation["reductions"]), plateau
    assert batch["reductions"], plateau
    first_validation_cut = validation["reductions"][0] if validation["reductions"] else math.inf
    assert batch["reductions"][0] < first_validation_cut, plateau


def test_plateau_runs_reject_an_unknown_signal():
    with pytest.raises(ValueError, match="driven_by must be"):
        plateau_schedule_run("train_loss")
