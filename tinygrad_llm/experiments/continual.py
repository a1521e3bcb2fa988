"""Chapter 11 experiments (Q29, M13): following a drifting stream, and what a plateau schedule should watch.

    drift_comparison(fast)     frozen, online SGD and online SGD with replay on a stream whose boundary turns
                               90 degrees mid-stream: accuracy on the current and on the old labelling over time
    plateau_comparison(fast)   ReduceLROnPlateau fed the batch loss against the validation loss: lr cuts counted

Each returns a dict of plain numbers (and lists); fast=True is the CI size.
"""
from __future__ import annotations

import math
import time

from ..transfer.continual import STRATEGIES, DriftingStream, follow_stream, make_classifier, plateau_schedule_run


def drift_comparison(fast: bool = True, seed: int = 0, drift: str = "abrupt") -> dict:
    """The three learners on one stream (same initialisation, same batches). "final" holds each learner's
    accuracy at the end of the stream on the current labelling and on the old (pre-drift) one."""
    num_batches = 300 if fast else 1000
    stream = DriftingStream(num_batches, batch_size=32, drift_at=num_batches // 3, rotation=math.pi / 2,
                            drift=drift, drift_length=num_batches // 6, seed=seed)
    start = time.perf_counter()
    histories = {strategy: follow_stream(make_classifier(seed=seed), stream, strategy, eval_every=num_batches // 30,
                                         seed=seed)
                 for strategy in STRATEGIES}
    return {"num_batches": num_batches, "drift_at": stream.drift_at, "drift": drift, "histories": histories,
            "final": {s: {"current": h["current"][-1], "old": h["old"][-1]} for s, h in histories.items()},
            "seconds": time.perf_counter() - start}


def plateau_comparison(fast: bool = True, seed: int = 0) -> dict:
    """The same training run twice, its ReduceLROnPlateau fed the batch loss or the validation loss.

    The full run stops at 600 steps, a little after the validation loss stalls (about step 540 for seed 0):
    from then on both schedules halve the lr every `patience + 1` checks until the changes fall below the
    scheduler's eps, so over a much longer run both make the same number of cuts and the count says nothing
    (measured at 1500 steps: 20 cuts each, the first at step 160 fed the batch loss, at 540 fed validation)."""
    steps = 400 if fast else 600
    start = time.perf_counter()
    result = {driven_by: plateau_schedule_run(driven_by, steps=steps, seed=seed) for driven_by in ("batch", "validation")}
    result["seconds"] = time.perf_counter() - start
    return result
