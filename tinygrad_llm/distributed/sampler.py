"""Which samples each rank trains on: one shuffled pass over the data per epoch, split between the ranks.

Every rank builds the same permutation of the sample indices from (seed, epoch), with no communication. The
permutation is read in global batches of world_size * batch_size indices, and rank r takes its own slice of
each global batch:

    epoch permutation   [ 7  2  9  0 | 4  8  1  5 | 3  6 ]      10 samples, 2 ranks, batch_size 2
    rank 0 takes          7  2         4  8         3
    rank 1 takes                9  0         1  5      6          the last global batch is uneven

So the ranks' shards are disjoint and together cover the data, no sample repeats within an epoch, and the next
epoch reshuffles. A rank that hard-codes rank 0, or reads the whole data set, trains on duplicates: K ranks then
do the work of one.

The position in the data (epoch, samples consumed in it) counts global samples, so it does not depend on the
number of ranks: a checkpoint written by 4 ranks resumes on 2 at the same place in the same permutation.
"""
from __future__ import annotations

import numpy as np

PERMUTATION_STREAM = 4  # keeps the sampler's generator apart from the loop's other (seed, stream, ...) generators


class DistributedSampler:
    """This rank's indices of each global batch of `num_samples` samples, reshuffled every epoch from `seed`."""

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int = 0):
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"DistributedSampler: need num_samples >= 1 and batch_size >= 1, got "
                             f"num_samples={num_samples}, batch_size={batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"DistributedSampler: rank must be in [0, world_size={world_size}), got {rank}; pass "
                             "comm.Get_rank() and comm.Get_size(), never a hard-coded rank")
        self.num_samples, self.batch_size, self.rank, self.world_size, self.seed = (
            num_samples, batch_size, rank, world_size, seed)
        self.epoch, self.consumed = 0, 0
        self._permutation = self.permutation(0)

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of all samples in `epoch`: the same on every rank."""
        return np.random.default_rng([self.seed, PERMUTATION_STREAM, epoch]).permutation(self.num_samples)

    @property
    def global_batch_size(self) -> int:
        return self.world_size * self.batch_size

    @property
    def samples_seen(self) -> int:
        """Global samples consumed since the start of training (over all ranks and epochs)."""
        return self.epoch * self.num_samples + self.consumed

    def next_global_batch(self) -> np.ndarray:
        """The next world_size * batch_size indices of the permutation (fewer at the end of an epoch)."""
        batch = self._permutation[self.consumed:self.consumed + self.global_batch_size]
        self.consumed += len(batch)
        if self.consumed == self.num_samples:
            self.epoch, self.consumed = self.epoch + 1, 0
            self._permutation = self.permutation(self.epoch)
        return batch

    def next_batch(self) -> np.ndarray:
        """This rank's part of the next global batch: batch_size indices, or, in an uneven last batch, a share
        that differs from the other ranks' by at most one (possibly none)."""
        return np.array_split(self.next_global_batch(), self.world_size)[self.rank]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        if not 0 <= state["consumed"] < self.num_samples:
            raise ValueError(f"DistributedSampler.load_state_dict: consumed={state['consumed']} is outside an epoch "
                             f"of {self.num_samples} samples; the checkpoint was written for other data")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._permutation = self.permutation(self.epoch)
