"""The GPipe simulator follows only dependencies; its bubble must come out as (p - 1)/(m + p - 1)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinygrad_llm.distributed.pipeline_schedule import gpipe_bubble_fraction, gpipe_schedule

pytestmark = pytest.mark.scaling

shapes = dict(p=st.integers(1, 10), m=st.integers(1, 16), forward_time=st.integers(1, 3), backward_time=st.integers(1, 3))


@given(**shapes)
def test_the_idle_fraction_is_the_bubble_formula(p, m, forward_time, backward_time):
    schedule = gpipe_schedule(p, m, forward_time, backward_time)
    assert schedule.idle_fraction == pytest.approx(gpipe_bubble_fraction(p, m))
    assert schedule.makespan == (m + p - 1) * (forward_time + backward_time)


@given(**shapes)
def test_every_task_waits_for_its_input_and_stages_do_one_thing_at_a_time(p, m, forward_time, backward_time):
    schedule = gpipe_schedule(p, m, forward_time, backward_time)
    end = {(t.kind, t.stage, t.micro_batch): t.end for t in schedule.tasks}
    assert len(end) == 2 * p * m
    for t in schedule.tasks:
        if t.kind == "forward" and t.stage > 0:
            assert t.start >= end["forward", t.stage - 1, t.micro_batch]
        if t.kind == "backward":
            assert t.start >= end[("backward", t.stage + 1, t.micro_batch) if t.stage < p - 1 else ("forward", t.stage, t.micro_batch)]
    for stage in range(p):
        spans = sorted((t.start, t.end) for t in schedule.tasks if t.stage == stage)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


@given(**shapes)
def test_the_grid_shows_each_micro_batch_once_forward_and_once_backward_per_stage(p, m, forward_time, backward_time):
    grid = gpipe_schedule(p, m, forward_time, backward_time).grid()
    assert grid.shape == (p, (m + p - 1) * (forward_time + backward_time))
    for row in grid:
        for j in range(1, m + 1):
            assert np.sum(row == j) == forward_time and np.sum(row == -j) == backward_time
    assert np.mean(grid == 0) == pytest.approx(gpipe_bubble_fraction(p, m))


@pytest.mark.parametrize("bad", [dict(num_stages=0, num_micro_batches=2), dict(num_stages=2, num_micro_batches=1.5)])
def test_impossible_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="gpipe_schedule"):
        gpipe_schedule(**bad)
