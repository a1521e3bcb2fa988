"""Deliberately broken data parallelism (M46 and friends), each named after its bug.

The samplers have the signature of tinygrad_llm.distributed.DistributedSampler (test_distributed_sampler.py
proves the shard checks catch them); the averaging has the signature of average_gradients (the MPI program
tests/mpi_programs/data_parallel_checks.py runs it next to the library's, and test_data_parallel.py proves the
gradient check catches it).
"""
import numpy as np

from tinygrad_llm.distributed import DistributedSampler
from tinygrad_llm.distributed.mpi import import_mpi


class SamplerReadingTheWholeDataset(DistributedSampler):
    def next_batch(self):
        return self.next_global_batch()  # BUG: every rank trains on the whole global batch: K copies of one step


class SamplerWithHardCodedRank(DistributedSampler):
    def next_batch(self):
        return np.array_split(self.next_global_batch(), self.world_size)[0]  # BUG: every rank believes it is rank 0


class SamplerWithoutReshuffling(DistributedSampler):
    def permutation(self, epoch):
        return super().permutation(0)  # BUG: the seed ignores the epoch: every epoch visits the data in one order


def average_gradients_summed(parameters, comm, sample_count, bucket_bytes=None):
    MPI = import_mpi()
    for p in parameters:
        p.grad = np.zeros_like(p.data) if p.grad is None else np.ascontiguousarray(p.grad)
        comm.Allreduce(MPI.IN_PLACE, p.grad, op=MPI.SUM)  # BUG: no n_r / N weights: K times the mean gradient
    return comm.allreduce(sample_count)
