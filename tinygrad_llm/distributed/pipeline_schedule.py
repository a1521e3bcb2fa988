"""Pipeline parallelism on paper: a GPipe schedule simulator and its bubble.

A model too big for one device is cut into p consecutive stages (layers 1-8 on device 0, 9-16 on device 1, ...).
Fed one batch at a time, only one stage would ever work. GPipe cuts the batch into m micro-batches and lets
them flow through the stages like a production line: stage s runs the forward of micro-batch j while stage s+1
runs micro-batch j-1. After the last forward, the backward passes flow back the same way, and the optimizer
steps once every micro-batch's gradient is in (the "flush").

The simulator only follows the dependencies; it knows no formula:
- forward(j) on stage s needs forward(j) of stage s-1 (its input activations),
- backward(j) on stage s needs backward(j) of stage s+1 (its output gradient); the last stage's backward(j)
  needs its own forward(j),
- each stage does one thing at a time, in GPipe's order: forwards 0..m-1, then backwards m-1..0.

Each stage works m forward and m backward slots in a schedule lasting (m + p - 1) of each, so a fraction
(p - 1)/(m + p - 1) of every device's time is idle: the bubble. More micro-batches shrink it (m = 4p gives
under 20%) at the price of holding m micro-batches' activations until their backward.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PipelineTask:
    stage: int
    kind: str  # "forward" or "backward"
    micro_batch: int
    start: int
    end: int


@dataclass(frozen=True)
class PipelineSchedule:
    num_stages: int
    num_micro_batches: int
    tasks: tuple[PipelineTask, ...]

    @property
    def makespan(self) -> int:
        """Time from the first forward to the last backward."""
        return max(task.end for task in self.tasks)

    @property
    def idle_fraction(self) -> float:
        """The share of all stage-time slots in which a stage does nothing (the bubble)."""
        busy = sum(task.end - task.start for task in self.tasks)
        return 1 - busy / (self.num_stages * self.makespan)

    def grid(self) -> np.ndarray:
        """(num_stages, makespan) ints for plotting, one column per time unit: j + 1 while a stage runs the
        forward of micro-batch j, -(j + 1) while it runs its backward, 0 while it is idle."""
        table = np.zeros((self.num_stages, self.makespan), dtype=np.int64)
        for task in self.tasks:
            table[task.stage, task.start:task.end] = (task.micro_batch + 1) * (1 if task.kind == "forward" else -1)
        return table


def gpipe_schedule(num_stages: int, num_micro_batches: int, forward_time: int = 1, backward_time: int = 1) -> PipelineSchedule:
    """Simulate GPipe: every task starts as soon as its stage is free and its input has arrived."""
    for name, value in (("num_stages", num_stages), ("num_micro_batches", num_micro_batches),
                        ("forward_time", forward_time), ("backward_time", backward_time)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"gpipe_schedule: {name} must be an integer >= 1, got {value!r}")
    p, m = num_stages, num_micro_batches
    done = {}  # (kind, stage, micro_batch) -> end time
    free_at = [0] * p
    tasks = []

    def run(kind, stage, micro_batch, ready, duration):
        start = max(free_at[stage], ready)
        free_at[stage] = done[kind, stage, micro_batch] = start + duration
        tasks.append(PipelineTask(stage, kind, micro_batch, start, start + duration))

    for micro_batch in range(m):
        for stage in range(p):
            ready = done["forward", stage - 1, micro_batch] if stage > 0 else 0
            run("forward", stage, micro_batch, ready, forward_time)
    for micro_batch in reversed(range(m)):
        for stage in reversed(range(p)):
            ready = done["backward", stage + 1, micro_batch] if stage < p - 1 else done["forward", stage, micro_batch]
            run("backward", stage, micro_batch, ready, backward_time)
    return PipelineSchedule(p, m, tuple(tasks))


def gpipe_bubble_fraction(num_stages: int, num_micro_batches: int) -> float:
    """The formula the simulator is checked against: (p - 1) / (m + p - 1)."""
    return (num_stages - 1) / (num_micro_batches + num_stages - 1)
