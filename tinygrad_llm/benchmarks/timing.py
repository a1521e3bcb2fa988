"""A timer for kernels: first call reported on its own, then the median of several warm runs.

Why each piece:
- The first call of a Numba kernel compiles it (seconds), or loads it from the on-disk cache; it says
  nothing about the kernel's speed, so it is reported separately as `first_call_s`.
- A few more warm-up calls let caches, the page tables of fresh buffers and thread pools settle.
- A kernel that takes microseconds is called `number` times per run so one run lasts ~`target_run_s`, above
  the timer's resolution and Python's call overhead noise; the time per call is run time / number.
- The median of the runs, not the mean: a shared machine throws outliers (other jobs, steal time) that
  would drag a mean; the minimum is kept too, as the best the machine did.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable


@dataclass
class Timing:
    first_call_s: float           # the very first call: includes JIT compilation or cache loading
    median_s: float               # median seconds per call over the timed runs
    min_s: float                  # fastest run, seconds per call
    repeats: int                  # timed runs
    number: int                   # calls per timed run
    runs_s: list = field(default_factory=list)  # seconds per call of each run

    def as_dict(self) -> dict:
        return asdict(self)


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, target_run_s: float = 0.02,
              max_number: int = 1000) -> Timing:
    """Time `fn()` (no arguments: bind them with a lambda). Returns a Timing; seconds are per call."""
    if repeats < 1:
        raise ValueError(f"time_call: repeats must be at least 1, got {repeats}")
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start

    warm = first
    for _ in range(max(warmup, 1)):      # at least one warm call, to size `number` from a warm time
        start = time.perf_counter()
        fn()
        warm = time.perf_counter() - start
    number = int(min(max_number, max(1, target_run_s // max(warm, 1e-9))))

    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return Timing(first_call_s=first, median_s=statistics.median(runs), min_s=min(runs), repeats=repeats,
                  number=number, runs_s=runs)


def time_interleaved(fns: dict, repeats: int = 5, warmup: int = 1, target_run_s: float = 0.02,
                     max_number: int = 1000) -> dict:
    """Time several callables {name: fn} against each other: first calls and warm-up for each, then the
    timed runs in turns (a b c a b c ...), so a burst of load from other processes on a shared machine hits
    every contestant alike instead of whichever happened to run then. Returns {name: Timing}.
    A callable that raises gets its exception object in place of a Timing (its turns are skipped)."""
    if repeats < 1:
        raise ValueError(f"time_interleaved: repeats must be at least 1, got {repeats}")
    first, number, runs = {}, {}, {}
    for name, fn in fns.items():
        try:
            start = time.perf_counter()
            fn()
            first[name] = time.perf_counter() - start
            warm = first[name]
            for _ in range(max(warmup, 1)):
                start = time.perf_counter()
                fn()
                warm = time.perf_counter() - start
        except Exception as error:  # noqa: BLE001 - reported to the caller, the others keep running
            first[name] = error
            continue
        number[name] = int(min(max_number, max(1, target_run_s // max(warm, 1e-9))))
        runs[name] = []
    for _ in range(repeats):
        for name in runs:
            fn, count = fns[name], number[name]
            start = time.perf_counter()
            for _ in range(count):
                fn()
            runs[name].append((time.perf_counter() - start) / count)
    return {name: first[name] if name not in runs else
            Timing(first_call_s=first[name], median_s=statistics.median(runs[name]), min_s=min(runs[name]),
                   repeats=repeats, number=number[name], runs_s=runs[name])
            for name in fns}


class OtherLoad:
    """How much CPU OTHER processes used while a block ran, as a fraction of all CPUs (Linux /proc; None
    elsewhere). On a shared machine, a case measured while others took half the cores is not a fair figure:
    the reports carry this next to each timing so a reader can tell.

        with OtherLoad() as load:
            ...
        load.fraction   # 0.0 = the machine was ours, 0.5 = others used half of all CPU time
    """

    fraction = None

    def __enter__(self):
        self._start = (_busy_ticks(), _own_ticks(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = _busy_ticks(), _own_ticks(), time.perf_counter()
        if None in (busy, own, self._start[0], self._start[1]):
            return False
        import os

        ticks = os.sysconf("SC_CLK_TCK")
        available = (wall - self._start[2]) * ticks * (os.cpu_count() or 1)
        others = (busy - self._start[0]) - (own - self._start[1])
        self.fraction = min(max(others / available, 0.0), 1.0) if available > 0 else None
        return False


def _busy_ticks():
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # all but idle and iowait


def _own_ticks():
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime of every thread of this process
