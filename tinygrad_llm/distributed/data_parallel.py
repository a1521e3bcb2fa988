"""Data-parallel training: what the shared training loop needs to run the same model on K MPI processes.

Every rank holds a full copy of the model, built from the same seed, so all copies start equal. Each step:

    rank r: its own micro-batches from the DistributedSampler -> forward -> backward   (no communication)
    all:    average the gradients (sample-weighted Allreduce)                          (the only exchange)
    rank r: clip, AdamW step, schedule, on the same averaged gradient                  (copies stay equal)

So K ranks with batch_size B take the step one process takes with a global batch of K * B windows. The data
set is the non-overlapping windows of the training ids, each trained on once per epoch by exactly one rank.

Evaluation runs on every rank with the same generator, on the same weights: every rank gets the same numbers
without sending them, and so makes the same early-stopping decision (a rank that stopped alone would leave the
others waiting in their next Allreduce). It costs no wall time, since the other ranks would wait for rank 0
anyway. Only rank 0 prints and writes files.
"""
from __future__ import annotations

import numpy as np

from ..data.windows import evaluation_windows
from ..random import manual_seed
from .gradient_averaging import average_gradients
from .mpi import world_communicator
from .sampler import DistributedSampler

DROPOUT_STREAM = 5  # dropout masks of rank r at each step come from (seed, DROPOUT_STREAM, r, samples seen)


class DataParallel:
    """This rank's batches and the gradient exchange, for `train --data-parallel` (comm: an mpi4py communicator)."""

    def __init__(self, train_ids: np.ndarray, config, comm=None):
        self.comm = comm if comm is not None else world_communicator()
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        self.inputs, self.targets = evaluation_windows(train_ids, config.context_size)
        self.sampler = DistributedSampler(len(self.inputs), config.batch_size, self.rank, self.world_size, config.seed)
        self.seed, self.grad_accum_steps, self.context_size = config.seed, config.grad_accum_steps, config.context_size
        self.step_samples, self.step_tokens = 0, 0  # this rank's samples, and all ranks' tokens, in the last step

    @property
    def is_main(self) -> bool:
        """Rank 0: the one rank that prints, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def tokens_seen(self) -> int:
        """Tokens trained on by all ranks since the start of training (independent of the number of ranks)."""
        return self.sampler.samples_seen * self.context_size

    def micro_batches(self) -> list:
        """This rank's (inputs, targets, divisor) for one optimizer step: grad_accum_steps global batches.

        Dividing each micro-batch's mean loss by `divisor` (this step's samples on this rank / the micro-batch's)
        makes the summed gradients the gradient of this rank's mean loss over the step; with equal micro-batches
        it is grad_accum_steps, as in one process. Dropout masks are seeded per rank and step: ranks that shared
        one stream would drop the same units on different data.
        """
        manual_seed([self.seed, DROPOUT_STREAM, self.rank, self.sampler.samples_seen])
        shards = [self.sampler.next_batch() for _ in range(self.grad_accum_steps)]
        self.step_samples = sum(len(shard) for shard in shards)
        return [(self.inputs[shard], self.targets[shard], self.step_samples / len(shard)) for shard in shards
                if len(shard)]

    def average(self, parameters, loss_value: float) -> float:
        """The seam after backward: average the gradients over all ranks; returns the global batch's mean loss."""
        total = average_gradients(parameters, self.comm, self.step_samples)
        self.step_tokens = total * self.context_size
        return self.comm.allreduce(loss_value * self.step_samples) / total
