"""Chapter 10 experiments: what activation checkpointing and gradient accumulation cost and save (Q23, M44).

Both trade something for memory, and both are measured here on one forward + backward of a GPT.

Activation checkpointing (`checkpointing_sweep`). The peak memory of a training step is mostly the activations
every block keeps for its backward, so it grows with depth x batch. With `checkpoint_blocks=True` each block
keeps only its input; its intermediates exist again during its own backward, one block at a time. Peak
memory then grows with depth only through what a step keeps anyway (the parameters' gradients) and those
inputs (B x T x d per block), and each step runs the blocks' forward a second time: the extra time is about
one forward pass. The gradients are bit-identical.

Gradient accumulation (`accumulation_sweep`, M44). One optimizer step's batch split into micro-batches, each
backward adding into .grad: the same gradient as the whole batch (up to the order of float additions), the
same tokens through forward and backward once each (the same compute), and a peak memory that follows the
micro-batch. It sums within one step, not over epochs, and saves memory, not compute: small micro-batches
only lose speed (more and smaller calls: Python's cost per op is paid more often, and small matrix
products use the cores less well).

Memory is what tracemalloc sees: NumPy reports every array buffer it allocates to it, so the peak counts the
activations, gradients and temporaries of the step; the scratch that the compiled Numba kernels allocate
inside themselves is not reported (tiles of the attention, not whole activations). Times are the fastest of
a few repeats in one call, on whatever machine runs it; no test asserts on them.
"""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from ..nn import GPT
from ..nn import functional as F
from ..random import manual_seed
from ..training.gradient_accumulation import accumulate_gradients
from .inference import _best_times

__all__ = ["peak_memory", "checkpointing_sweep", "accumulation_sweep"]

# The chapter's GPT (the main job's width, heads and context on a character vocabulary); fast mode shrinks it.
FULL_SHAPE = dict(vocab_size=65, context_size=64, embed_dim=128, num_heads=4)
FAST_SHAPE = dict(vocab_size=65, context_size=16, embed_dim=32, num_heads=4)


def peak_memory(step, repeats: int = 3) -> int:
    """Bytes of the highest point of memory allocated by step() and not yet freed (tracemalloc), on warm calls
    (the first compiles kernels and fills caches that later steps reuse). The smallest of `repeats` readings:
    what disturbs one reading (garbage that the cyclic collector happened not to free yet, a buffer allocated by
    other work in the process) only ever adds bytes, so the minimum is the step's own need."""
    step()
    peaks = []
    for _ in range(repeats):
        gc.collect()
        tracemalloc.start()
        try:
            step()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)


def _model(shape: dict, num_layers: int, checkpoint_blocks: bool, seed: int) -> GPT:
    manual_seed(seed)
    return GPT(**shape, num_layers=num_layers, checkpoint_blocks=checkpoint_blocks).train()


def _windows(shape: dict, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random token windows and next-token targets: memory and time depend on the shapes, not on the text."""
    ids = np.random.default_rng(seed).integers(0, shape["vocab_size"], (batch_size, shape["context_size"] + 1))
    return ids[:, :-1], ids[:, 1:]


def _training_step(model, inputs, targets):
    """What is measured: one forward and backward from zeroed gradients (the optimizer's step is left out)."""
    def step():
        model.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
    return step


def _gradients(model) -> dict:
    return {name: p.grad for name, p in model.named_parameters()}


def checkpointing_sweep(fast: bool = True, seed: int = 0) -> dict:
    """Peak memory and time of one training step with and without checkpoint_blocks, against depth and batch.

    Full: the chapter's GPT (d = 128, context 64) with 2, 4, 6, 8 blocks and batches of 4, 8, 16 windows;
    fast: d = 32, context 16, 2 and 4 blocks, batches of 2 and 4. Each row also records the forward pass's own
    time, the yardstick of the extra time (`extra_over_forward` near 1: the recomputation is one more forward
    of the blocks), and whether the two steps' gradients are bit-identical.
    """
    shape, depths, batches, repeats = ((FAST_SHAPE, [2, 4], [2, 4], 2) if fast else
                                       (FULL_SHAPE, [2, 4, 6, 8], [4, 8, 16], 5))
    rows = []
    for num_layers in depths:
        plain = _model(shape, num_layers, False, seed)
        checkpointed = _model(shape, num_layers, True, seed)
        for batch_size in batches:
            inputs, targets = _windows(shape, batch_size, seed)
            steps = {"plain": _training_step(plain, inputs, targets),
                     "checkpointed": _training_step(checkpointed, inputs, targets)}
            peaks = {name: peak_memory(step) for name, step in steps.items()}
            identical = all(np.array_equal(a, b) for a, b in
                            zip(_gradients(plain).values(), _gradients(checkpointed).values()))
            seconds = _best_times({**steps, "forward": lambda: plain(inputs)}, repeats)
            rows.append({
                "num_layers": num_layers, "batch_size": batch_size,
                "peak_bytes_plain": peaks["plain"], "peak_bytes_checkpointed": peaks["checkpointed"],
                "memory_ratio": peaks["checkpointed"] / peaks["plain"],
                "seconds_plain": seconds["plain"], "seconds_checkpointed": seconds["checkpointed"],
                "seconds_forward": seconds["forward"],
                "extra_over_forward": (seconds["checkpointed"] - seconds["plain"]) / seconds["forward"],
                "gradients_identical": identical,
            })
    return {"shape": shape, "rows": rows}


def accumulation_sweep(fast: bool = True, seed: int = 0) -> dict:
    """One batch's gradient from micro-batches of every size that divides it: difference, peak memory, time.

    Full: 4 blocks of the chapter's GPT, a batch of 16 windows in micro-batches of 16 (the whole batch at
    once), 8, 4, 2 and 1; fast: the small GPT, 8 windows. The difference to the whole batch's gradient is
    measured on a float64 copy of the model (where only the order of additions differs, ~1e-16 relative);
    memory and time on the float32 model that trains.
    """
    shape, batch_size, num_layers, repeats = (FAST_SHAPE, 8, 2, 2) if fast else (FULL_SHAPE, 16, 4, 3)
    inputs, targets = _windows(shape, batch_size, seed)
    model, model64 = _model(shape, num_layers, False, seed), _model(shape, num_layers, False, seed).double()
    accumulate_gradients(model64, inputs, targets, micro_batch_size=batch_size)
    whole_batch = _gradients(model64)
    scale = max(float(np.abs(g).max()) for g in whole_batch.values())
    rows, micro_batch_size = [], batch_size
    while micro_batch_size >= 1:
        model64.zero_grad()
        accumulate_gradients(model64, inputs, targets, micro_batch_size)
        difference = max(float(np.abs(g - whole_batch[name]).max()) for name, g in _gradients(model64).items())

        def step(size=micro_batch_size):
            model.zero_grad()
            accumulate_gradients(model, inputs, targets, size)

        rows.append({"micro_batch_size": micro_batch_size, "micro_batches": batch_size // micro_batch_size,
                     "max_gradient_difference": difference, "relative_difference": difference / scale,
                     "peak_bytes": peak_memory(step), "seconds": _best_times({"step": step}, repeats)["step"]})
        micro_batch_size //= 2
    return {"shape": shape, "num_layers": num_layers, "batch_size": batch_size,
            "tokens_per_step": batch_size * shape["context_size"], "rows": rows}
