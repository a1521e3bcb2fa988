"""Average the gradients of K ranks so that every rank holds the gradient of the whole global batch.

Rank r computed the gradient g_r of its mean loss over its n_r samples. The gradient of the mean loss over all
N = n_0 + ... + n_{K-1} samples is the weighted mean

    g = sum_r (n_r / N) g_r

which is the plain average (1/K) sum_r g_r when every rank has the same number of samples, and stays exact when
the last batch of an epoch is uneven. Each rank scales its gradient by n_r / N, and one Allreduce(SUM) adds the
results up on every rank. Summing without the weights gives K times the gradient (a K-times larger learning
rate in disguise).

Calling Allreduce once per parameter pays MPI's fixed cost per message dozens of times per step, so the
gradients are packed into a few flat buckets of about BUCKET_BYTES each (one call per bucket). PyTorch's
DistributedDataParallel also starts each bucket's all-reduce while backward is still filling the next one,
hiding communication behind computation; here backward finishes first, which is simpler to read.
"""
from __future__ import annotations

import numpy as np

from .mpi import import_mpi

BUCKET_BYTES = 2 * 2**20  # 2 MiB: a few calls per step for the main job's GPT (~3 MB of float32 gradients)


def plan_buckets(parameters, bucket_bytes: int = BUCKET_BYTES) -> list[list[int]]:
    """Parameter indices grouped in order into buckets of at most bucket_bytes (a bigger parameter gets its own)."""
    buckets, current, size = [], [], 0
    for index, parameter in enumerate(parameters):
        nbytes = parameter.data.size * np.dtype(np.float32).itemsize
        if current and size + nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append(index)
        size += nbytes
    return buckets + [current] if current else buckets


def average_gradients(parameters, comm, sample_count: int, bucket_bytes: int = BUCKET_BYTES) -> int:
    """Replace each parameter's .grad by the sample-weighted mean over all ranks; returns the global sample count.

    Collective: every rank calls it with the same parameters in the same order, including a rank that had no
    samples this step (sample_count 0, its gradients missing or zero). A parameter without a gradient on every
    rank keeps grad None, as it would in one process.
    """
    MPI = import_mpi()
    parameters = list(parameters)
    counts = np.array([sample_count, *(p.grad is not None for p in parameters)], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
    total, ranks_with_gradient = int(counts[0]), counts[1:]
    if total == 0:
        raise ValueError("average_gradients: no rank had any samples this step (global sample count 0); "
                         "check the sampler's batch_size and the data set size")
    weight = sample_count / total
    for bucket in plan_buckets(parameters, bucket_bytes):
        members = [parameters[i] for i in bucket if ranks_with_gradient[i]]
        if not members:
            continue
        dtype = np.result_type(*(p.data.dtype for p in members), np.float32)
        flat = np.concatenate([(p.grad if p.grad is not None else np.zeros_like(p.data)).ravel() for p in members]
                              ).astype(dtype, copy=False) * weight
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        offset = 0
        for p in members:
            p.grad = flat[offset:offset + p.data.size].reshape(p.data.shape).astype(p.data.dtype, copy=False)
            offset += p.data.size
    return total
