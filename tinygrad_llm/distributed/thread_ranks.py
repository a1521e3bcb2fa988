"""Ranks as threads: run K copies of a function at once in one process, joined by a real all-reduce.

Under `mpiexec -n K` each rank is a process and MPI moves the bytes. A notebook cell cannot start processes
that take part in its own computation, so `run_on_thread_ranks(fn, K)` runs fn(comm) on K threads instead; the
threads share nothing but `comm.Allreduce`, which blocks until every rank has contributed and then hands each
the sum, as MPI's does. Code written against an mpi4py communicator's Allreduce runs unchanged on both.

While the threads run, the ops use the reference NumPy kernels: the Numba kernels' thread pool (the workqueue
layer, chosen because its threads never spin) aborts the process when two threads enter it at once.
"""
from __future__ import annotations

import threading

import numpy as np

from ..kernels import get_kernels, set_kernels


class ThreadCommunicator:
    """One rank's handle: Get_rank, Get_size, Allreduce(sendbuf, recvbuf) with a sum and allgather(obj) (every
    rank's object, in rank order), like mpi4py's."""

    def __init__(self, rank: int, barrier: threading.Barrier, contributions: list):
        self.rank, self.barrier, self.contributions = rank, barrier, contributions

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return len(self.contributions)

    def Allreduce(self, sendbuf: np.ndarray, recvbuf: np.ndarray) -> None:
        self.contributions[self.rank] = np.array(sendbuf, copy=True)
        self.barrier.wait()  # every rank has posted its part
        recvbuf[...] = sum(self.contributions[1:], self.contributions[0])  # the same order on every rank
        self.barrier.wait()  # every rank has read the sum before anyone posts the next part

    def allgather(self, obj) -> list:
        self.contributions[self.rank] = obj
        self.barrier.wait()
        gathered = list(self.contributions)
        self.barrier.wait()
        return gathered


def run_on_thread_ranks(fn, world_size: int, timeout: float = 60.0) -> list:
    """fn(comm) on `world_size` threads at once; the results in rank order. An error on one rank stops all of
    them (the others' waits are broken instead of hanging) and is raised here, naming the rank."""
    if world_size < 1:
        raise ValueError(f"run_on_thread_ranks: world_size must be >= 1, got {world_size}")
    barrier, contributions = threading.Barrier(world_size, timeout=timeout), [None] * world_size
    results, errors = [None] * world_size, [None] * world_size

    def run_rank(rank):
        try:
            results[rank] = fn(ThreadCommunicator(rank, barrier, contributions))
        except BaseException as error:  # noqa: BLE001 - reported to the caller below
            errors[rank] = error
            barrier.abort()

    threads = [threading.Thread(target=run_rank, args=(rank,)) for rank in range(world_size)]
    kernels_before = get_kernels()
    set_kernels("reference")
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        set_kernels(kernels_before)
    first = next(((rank, e) for rank, e in enumerate(errors) if e and not isinstance(e, threading.BrokenBarrierError)),
                 next(((rank, e) for rank, e in enumerate(errors) if e), None))
    if first is not None:
        rank, error = first
        raise RuntimeError(f"run_on_thread_ranks: rank {rank} of {world_size} failed: {error!r}") from error
    return results
