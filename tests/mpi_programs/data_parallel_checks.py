"""Run under mpiexec -n K: gradient averaging and the ring all-reduce, on the first k ranks for every k = 1..K.

Rank 0 prints one JSON object; tests/test_data_parallel.py asserts on it. Hypothesis draws the cases with
derandomize=True, so every rank of a group draws the same ones. The checks record errors instead of raising
them: an exception on one rank would leave the others waiting in a collective call.
"""
import json
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.distributed import (average_gradients, import_mpi, plan_buckets, ring_allreduce,
                                      ring_allreduce_bytes, stop_job_on_failure, world_communicator)
from tinygrad_llm.nn import GPT
from tinygrad_llm.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for broken_distributed
import broken_distributed as broken  # noqa: E402

VOCAB, CONTEXT = 11, 5
AVERAGINGS = {"library": average_gradients, "summed": broken.average_gradients_summed}
same_cases_on_every_rank = settings(max_examples=12, derandomize=True, database=None, deadline=None,
                                    suppress_health_check=list(HealthCheck))


class CountingCommunicator:
    """The communicator, counting the Allreduce calls made through it (bucketing: a few, not one per parameter)."""

    def __init__(self, comm):
        self.comm, self.allreduce_calls = comm, 0

    def Allreduce(self, *args, **kwargs):
        self.allreduce_calls += 1
        return self.comm.Allreduce(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.comm, name)


def float64_gpt():
    tgl.manual_seed(0)
    model = GPT(VOCAB, context_size=CONTEXT, embed_dim=8, num_heads=2, num_layers=1)
    for parameter in model.parameters():
        parameter.data = parameter.data.astype(np.float64)
    return model


def mean_loss_gradients(model, inputs, targets) -> list:
    """Gradients of the mean loss over the batch (None everywhere for an empty batch: no backward at all)."""
    for parameter in model.parameters():
        parameter.grad = None
    if len(inputs):
        F.cross_entropy(model(inputs), targets).backward()
    return [parameter.grad for parameter in model.parameters()]


def check_gradients(comm, results):
    rank, world_size = comm.Get_rank(), comm.Get_size()

    @same_cases_on_every_rank
    @given(counts=st.lists(st.integers(0, 4), min_size=world_size, max_size=world_size).filter(lambda c: sum(c) > 0),
           data_seed=st.integers(0, 2**16), bucket_bytes=st.sampled_from([64, 1000, 2**21]))
    def k_ranks_equal_one_process_on_the_concatenated_batch(counts, data_seed, bucket_bytes):
        rng = np.random.default_rng(data_seed)
        inputs, targets = rng.integers(0, VOCAB, (2, sum(counts), CONTEXT))
        model = float64_gpt()
        expected = mean_loss_gradients(model, inputs, targets)
        mine = slice(sum(counts[:rank]), sum(counts[:rank + 1]))
        row = {"ranks": world_size, "counts": counts, "bucket_bytes": bucket_bytes,
               "buckets": len(plan_buckets(model.parameters(), bucket_bytes)), "parameters": len(expected)}
        for name, average in AVERAGINGS.items():
            mean_loss_gradients(model, inputs[mine], targets[mine])
            counting = CountingCommunicator(comm)
            total = average(model.parameters(), counting, counts[rank], bucket_bytes=bucket_bytes)
            got = [parameter.grad for parameter in model.parameters()]
            # relative to the largest gradient entry of all: some gradients are exactly zero in theory (a key
            # bias shifts every score of a row alike) and hold only rounding noise, which has no relative error
            scale = max(float(np.abs(e).max()) for e in expected)
            row[f"{name}_error"] = max(float(np.abs(g - e).max()) for g, e in zip(got, expected)) / scale
            row[f"{name}_total"] = total
            row[f"{name}_allreduce_calls"] = counting.allreduce_calls
            flat = np.concatenate([g.ravel() for g in got])
            row[f"{name}_replicas_identical"] = all(np.array_equal(flat, other) for other in comm.allgather(flat))
        results.append(row)

    k_ranks_equal_one_process_on_the_concatenated_batch()


def check_ring(comm, results):
    MPI = import_mpi()
    rank, world_size = comm.Get_rank(), comm.Get_size()

    @same_cases_on_every_rank
    @given(n=st.integers(1, 300), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
    def ring_equals_allreduce_and_sends_the_formulas_bytes(n, dtype, seed):
        values = np.random.default_rng([seed, rank]).standard_normal(n).astype(dtype)
        ring, bytes_sent = ring_allreduce(comm, values)
        expected = np.empty_like(values)
        comm.Allreduce(values, expected, op=MPI.SUM)
        results.append({"ranks": world_size, "n": n, "itemsize": values.itemsize,
                        "max_error": float(np.abs(ring - expected).max()), "scale": float(np.abs(expected).max()),
                        "bytes_sent": comm.gather(bytes_sent, root=0),
                        "formula": ring_allreduce_bytes(n, world_size, values.itemsize),
                        "unchanged_input": bool(np.array_equal(values, np.random.default_rng([seed, rank])
                                                               .standard_normal(n).astype(dtype)))})

    ring_equals_allreduce_and_sends_the_formulas_bytes()


def main():
    MPI = import_mpi()
    world = world_communicator()
    report = {"world_size": world.Get_size(), "gradients": [], "ring": []}
    for k in range(1, world.Get_size() + 1):
        group = world.Split(0 if world.Get_rank() < k else MPI.UNDEFINED, world.Get_rank())
        if group != MPI.COMM_NULL:
            check_gradients(group, report["gradients"])
            check_ring(group, report["ring"])
            group.Free()
    if world.Get_rank() == 0:
        print(json.dumps(report))


if __name__ == "__main__":
    with stop_job_on_failure(world_communicator()):
        main()
