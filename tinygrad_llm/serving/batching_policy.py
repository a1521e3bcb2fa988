"""Continuous batching: WHEN a waiting request joins the batch, independent of the model and of the clock.

Two sets: `waiting` (a FIFO queue) and `running` (at most B requests, each decoding its own tokens).

    at a token boundary, while something runs:  admit waiting requests, oldest first, until B run
    when nothing runs:                           admit once B requests wait, or once the oldest has waited w
    a request that finishes or is cancelled:     leaves `running` at once; the others go on

Static batching would wait for the whole batch to finish before admitting anyone: a short request stuck
beside a long one waits for it, and a slot freed early stays empty. Continuous ("in-flight") batching lets
a request join at the very next token boundary, which is what makes batching pay on a live server.

The wait w trades latency for throughput only when the server is idle: with nothing running, waiting up to
w for company fills the first batch better, at the price of up to w of extra latency for the first request.
Once something runs, nobody waits for company: a step runs anyway, so joining it costs nothing.

With B = 1 and w = 0 the policy is first-in first-out: each request runs alone, in arrival order.

Time is a number the caller passes in (`now`, seconds): the engine passes time.monotonic(), the simulation
its simulated clock, so the very same policy runs on both. Items are whatever the caller queues (the
engine's request records, the simulation's simulated requests); the policy only moves them.
"""
from __future__ import annotations

import numbers
from collections import deque


class BatchingPolicy:
    def __init__(self, max_batch_size: int, max_wait_s: float):
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, numbers.Integral) or max_batch_size < 1:
            raise ValueError(f"BatchingPolicy: max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, numbers.Real) or not max_wait_s >= 0:
            raise ValueError(f"BatchingPolicy: max_wait_s must be a number of seconds >= 0, got {max_wait_s!r}")
        self.max_batch_size, self.max_wait_s = int(max_batch_size), float(max_wait_s)
        self.waiting: deque = deque()   # (arrival time, item), oldest first
        self.running: list = []

    def enqueue(self, item, now: float) -> None:
        """A request arrives at time `now` and waits for a slot."""
        self.waiting.append((now, item))

    def _may_admit(self, now: float) -> bool:
        """Something runs (a token boundary: join now), or a full batch waits, or the oldest has waited w."""
        if self.running or len(self.waiting) >= self.max_batch_size:
            return True
        return bool(self.waiting) and now >= self.waiting[0][0] + self.max_wait_s

    def admit(self, now: float) -> list:
        """Move waiting requests into free slots, oldest first, if the rules allow it now; returns them."""
        admitted = []
        if self._may_admit(now):
            while self.waiting and len(self.running) < self.max_batch_size:
                _, item = self.waiting.popleft()
                self.running.append(item)
                admitted.append(item)
        return admitted

    def next_admission_time(self, now: float) -> float | None:
        """The earliest time at which `admit` lets the waiting requests in (`now` when it would right away), or
        None when nothing waits and only an arrival can change that. Later than now only while nothing runs."""
        if not self.waiting:
            return None
        if self._may_admit(now):
            return now
        return self.waiting[0][0] + self.max_wait_s

    def finish(self, item) -> None:
        """A running request is done (all its tokens, or cancelled): its slot frees at once."""
        if not self.remove(item, from_waiting=False):
            raise ValueError(f"BatchingPolicy.finish: {item!r} is not running; only an admitted request can finish")

    def remove(self, item, from_waiting: bool = True) -> bool:
        """Take a request out wherever it is (a cancellation); returns False when it was in neither set.
        Requests are told apart by identity, never by value: two equal requests are still two requests."""
        for index, running in enumerate(self.running):
            if running is item:
                del self.running[index]
                return True
        for index, (_, waiting) in enumerate(self.waiting if from_waiting else ()):
            if waiting is item:
                del self.waiting[index]
                return True
        return False

    def __repr__(self):
        return (f"BatchingPolicy(max_batch_size={self.max_batch_size}, max_wait_s={self.max_wait_s}, "
                f"waiting={len(self.waiting)}, running={len(self.running)})")
