"""Run under mpiexec -n K: ZeRO stages 0, 1 and 2 against plain data parallelism, and the memory ledger.

Rank 0 prints one JSON object; tests/test_zero.py asserts on it. Every configuration is drawn from a seed that
all ranks share, so all ranks build the same models; each rank then draws its own batches (its data shard).
"""
import json

import numpy as np

import tinygrad_llm as tgl
from tinygrad_llm import optim
from tinygrad_llm.distributed.gradient_averaging import average_gradients
from tinygrad_llm.distributed.memory_ledger import memory_ledger, zero_bytes_per_parameter
from tinygrad_llm.distributed.mpi import world_communicator
from tinygrad_llm.distributed.zero import ZeroAdamW, contiguous_shards
from tinygrad_llm.nn import functional as F
from tinygrad_llm.nn.layers import LayerNorm, Linear
from tinygrad_llm.nn.module import Module

STEPS = 3
comm = world_communicator()
rank, world_size = comm.Get_rank(), comm.Get_size()


class SmallMLP(Module):
    """LayerNorm -> Linear -> GELU -> Linear: matrices (decayed) and vectors (not), as in a Transformer block."""

    def __init__(self, width, hidden, classes):
        self.norm, self.up, self.down = LayerNorm(width), Linear(width, hidden), Linear(hidden, classes)

    def forward(self, x):
        return self.down(self.up(self.norm(x)).gelu(approximate="tanh"))


def build(seed, width, hidden, classes):
    tgl.manual_seed(seed)
    return SmallMLP(width, hidden, classes)


def decay_matrices_only(model, weight_decay=0.1):
    """The parameter groups of training.loop.build_optimizer."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def backward_on_my_shard(model, seed, step, width, classes):
    rng = np.random.default_rng([seed, step, rank])
    inputs = rng.standard_normal((4, width)).astype(np.float32)
    targets = rng.integers(0, classes, size=4)
    F.cross_entropy(model(tgl.tensor(inputs)), targets).backward()


def plain_data_parallel_step(model, optimizer, seed, step, width, classes, clip):
    optimizer.zero_grad()
    backward_on_my_shard(model, seed, step, width, classes)
    average_gradients(model.parameters(), comm, sample_count=4)
    if clip:
        optim.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def zero_step(model, optimizer, seed, step, width, classes, clip):
    optimizer.zero_grad()
    backward_on_my_shard(model, seed, step, width, classes)
    if clip:
        optimizer.clip_grad_norm_(clip)
    optimizer.step()


def flat(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()])


def max_state_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(a["state"][i][key], np.float64) - np.asarray(b["state"][i][key], np.float64))))
               for i in a["state"] for key in ("exp_avg", "exp_avg_sq"))


def compare(seed, width, hidden, classes, stage, clip):
    """Same model, same shards, STEPS steps: plain DP + AdamW against ZeroAdamW; then a resume from the state."""
    reference = build(seed, width, hidden, classes)
    reference_opt = optim.AdamW(decay_matrices_only(reference), lr=0.05)
    sharded = build(seed, width, hidden, classes)
    sharded_opt = ZeroAdamW(decay_matrices_only(sharded), comm, stage=stage, lr=0.05)
    for step in range(STEPS):
        plain_data_parallel_step(reference, reference_opt, seed, step, width, classes, clip)
        zero_step(sharded, sharded_opt, seed, step, width, classes, clip)
    saved_reference, saved_zero = reference_opt.state_dict(), sharded_opt.state_dict()
    result = {
        "seed": seed, "stage": stage, "clip": clip, "num_parameters": int(flat(reference).size),
        "max_weight_difference": float(np.max(np.abs(flat(reference) - flat(sharded)))),
        "weights_bit_identical": bool(np.array_equal(flat(reference), flat(sharded))),
        "max_state_difference": max_state_difference(saved_reference, saved_zero),
        "same_state_keys": sorted(saved_reference["state"]) == sorted(saved_zero["state"]),
        "same_step_count": all(int(saved_zero["state"][i]["step"]) == STEPS for i in saved_zero["state"]),
    }
    # resume: a fresh ZeroAdamW of ANOTHER stage loads plain AdamW's state; one more step on both must agree
    resumed = build(seed, width, hidden, classes)
    resumed.load_state_dict(reference.state_dict())
    resumed_opt = ZeroAdamW(decay_matrices_only(resumed), comm, stage=(stage + 1) % 3, lr=0.05)
    resumed_opt.load_state_dict(saved_reference)
    plain_data_parallel_step(reference, reference_opt, seed, STEPS, width, classes, clip)
    zero_step(resumed, resumed_opt, seed, STEPS, width, classes, clip)
    result["max_resume_difference"] = float(np.max(np.abs(flat(reference) - flat(resumed))))
    return result


def ledger_rows(seed, width, hidden, classes):
    """One step of a float16 model under each stage; this rank's ledger next to the exact bytes expected."""
    rows = []
    for stage in (0, 1, 2):
        model = build(seed, width, hidden, classes)
        for p in model.parameters():
            p.data = p.data.astype(np.float16)
        optimizer = ZeroAdamW(decay_matrices_only(model), comm, stage=stage, lr=1e-3)
        optimizer.zero_grad()
        for i, p in enumerate(model.parameters()):  # synthetic float16 gradients: the ledger only reads sizes
            p.grad = np.random.default_rng([seed, i, rank]).standard_normal(p.shape).astype(np.float16)
        optimizer.step()
        n = int(sum(p.data.size for p in model.parameters()))
        counts, _ = contiguous_shards(n, world_size)
        mine = n if stage == 0 else counts[rank]
        expected = {"parameters": 2 * n, "gradients": 2 * (mine if stage == 2 else n),
                    "master_weights": 4 * mine, "adam_moments": 8 * mine}
        rows.append({"stage": stage, "world_size": world_size, "rank": rank, "num_parameters": n,
                     "parameter_dtype": "float16", **memory_ledger(optimizer), "expected": expected,
                     "formula_per_parameter": zero_bytes_per_parameter(stage, world_size, np.float16)})
    return rows


def main():
    rng = np.random.default_rng(2024)  # the same draws on every rank
    comparisons = []
    for case in range(3):
        width, hidden, classes = (int(v) for v in rng.integers([2, 3, 2], [7, 12, 6]))
        seed = int(rng.integers(1 << 30))
        for stage in (0, 1, 2):
            for clip in (None, 0.05):
                comparisons.append(compare(seed, width, hidden, classes, stage, clip))
    ledgers = comm.gather(ledger_rows(7, 5, 9, 3), root=0)
    if rank == 0:
        print(json.dumps({"world_size": world_size, "comparisons": comparisons,
                          "ledgers": [row for rows in ledgers for row in rows]}))


main()
