"""The memory ledger: the bytes one rank holds for training, read from its arrays, against ZeRO's formula.

Mixed-precision training with Adam holds, for each of N parameters:

    2 bytes   float16 weights (what the forward and backward passes compute with)
    2 bytes   float16 gradients
    4 bytes   float32 master weights (the update is applied here: float16 would round small updates away)
    8 bytes   float32 Adam moments m and v
    --------
    16 bytes per parameter on EVERY data-parallel rank: a 7-billion-parameter model needs 112 GB before
              a single activation is stored, whatever the number of ranks.

ZeRO splits what is only needed for the update over K ranks: stage 1 shards the master weights and moments
(2 + 2 + 12/K bytes per parameter), stage 2 the gradients too (2 + (2 + 12)/K). In float32 training the
weights are their own master copy, so the formula has no master term and the gradients take 4 bytes.

`memory_ledger` does not compute these numbers, it reads them: it sums the sizes of the arrays a ZeroAdamW
and its model hold at that moment (each buffer counted once, however many views point into it). Read it
after a step: the full gradient briefly exists on every rank at the end of backward, because this library
reduces gradients after backward instead of bucket by bucket during it, as DeepSpeed does.
"""
from __future__ import annotations

import numpy as np

from .zero import ZeroAdamW

CATEGORIES = ("parameters", "gradients", "master_weights", "adam_moments")


def _bytes_of_distinct_buffers(arrays) -> int:
    """The memory behind `arrays`: every array's owning buffer, each counted once (views share their owner's)."""
    owners = {}
    for array in arrays:
        owner = array if array.base is None else array.base
        owners[id(owner)] = owner.nbytes
    return sum(owners.values())


def memory_ledger(optimizer: ZeroAdamW) -> dict[str, int]:
    """Bytes this rank holds now, by category: read from the arrays of the optimizer and of its parameters."""
    if not isinstance(optimizer, ZeroAdamW):
        raise TypeError(f"memory_ledger reads the buffers of a ZeroAdamW, got a {type(optimizer).__name__}")
    parameters = optimizer.parameters
    gradients = [param.grad for param in parameters if param.grad is not None]
    if optimizer.gradient is not None:
        gradients.append(optimizer.gradient)
    master = optimizer.master_weights
    return {
        "parameters": _bytes_of_distinct_buffers([param.data for param in parameters]),
        "gradients": _bytes_of_distinct_buffers(gradients),
        "master_weights": 0 if master.base is optimizer.flat_parameters else master.nbytes,
        "adam_moments": optimizer.exp_avg.nbytes + optimizer.exp_avg_sq.nbytes,
    }


def zero_bytes_per_parameter(stage: int, world_size: int, parameter_dtype=np.float16) -> dict[str, float]:
    """ZeRO's formula: the bytes per parameter each rank holds, by category (the shard of 1/K on average)."""
    if stage not in (0, 1, 2) or world_size < 1:
        raise ValueError(f"zero_bytes_per_parameter: stage must be 0, 1 or 2 and world_size >= 1, got {stage}, {world_size}")
    itemsize = np.dtype(parameter_dtype).itemsize
    optimizer_share = 1 / world_size if stage >= 1 else 1.0
    gradient_share = 1 / world_size if stage >= 2 else 1.0
    return {
        "parameters": float(itemsize),
        "gradients": itemsize * gradient_share,
        "master_weights": (0 if itemsize == 4 else 4) * optimizer_share,
        "adam_moments": 8 * optimizer_share,
    }


def format_ledger(rows: list[dict]) -> str:
    """A text table of ledger rows (dicts with stage, world_size, rank, num_parameters and the four categories),
    each in bytes per parameter next to the formula's total."""
    lines = [f"{'stage':>5} {'K':>2} {'rank':>4} " + " ".join(f"{c:>15}" for c in CATEGORIES) + f" {'total':>7} {'formula':>7}"]
    for row in rows:
        per_parameter = [row[c] / row["num_parameters"] for c in CATEGORIES]
        formula = sum(zero_bytes_per_parameter(row["stage"], row["world_size"], row["parameter_dtype"]).values())
        lines.append(f"{row['stage']:>5} {row['world_size']:>2} {row['rank']:>4} "
                     + " ".join(f"{b:>15.2f}" for b in per_parameter) + f" {sum(per_parameter):>7.2f} {formula:>7.2f}")
    return "\n".join(lines)
