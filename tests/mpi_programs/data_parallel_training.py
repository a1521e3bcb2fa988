"""Run under mpiexec -n 2 with an output folder: data-parallel training through the shared loop, then a failure.

    two_ranks/             4 steps on both ranks, batch_size 2 each
    one_rank/              rank 0 alone (its own one-rank communicator), batch_size 4: the same global batches
    resumed/               both ranks: 2 steps, stop, resume, 2 more (at_step_2.npz keeps the step-2 checkpoint)
    resumed_on_one_rank/   rank 0 alone resumes at_step_2.npz: a checkpoint of 2 ranks continued by 1
    failure/               both ranks train again and rank 1 raises during step 3

Rank 0 prints one JSON line before the failure; tests/test_data_parallel.py reads it and the files. Lines the
loop prints are prefixed with the printing rank, so the test sees that only rank 0 prints.
"""
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinygrad_llm.distributed import DataParallel, import_mpi, stop_job_on_failure, world_communicator
from tinygrad_llm.training import TrainConfig, loop, train_language_model

MPI = import_mpi()
world = world_communicator()
rank = world.Get_rank()
root = Path(sys.argv[1])
CONFIG = TrainConfig(model="gpt", max_chars=6000, context_size=16, batch_size=2, embed_dim=16, num_layers=1,
                     num_heads=2, steps=4, warmup_steps=1, eval_every=2, eval_batches=2, lr=3e-3, data_parallel=True)
writes = []


def record_writes(function):
    def recorded(*args, **kwargs):
        writes.append(function.__name__)
        return function(*args, **kwargs)
    return recorded


loop.save_training_checkpoint = record_writes(loop.save_training_checkpoint)
loop.write_logs = record_writes(loop.write_logs)


def train(folder, communicator=world, config=CONFIG, **options):
    return train_language_model(config, out_dir=root / folder, progress=False, communicator=communicator,
                                print_fn=lambda line: print(f"[rank {rank}] {line}", flush=True), **options)


def fail_on_the_last_rank_at_step_3():
    """From now on the last rank raises when it draws the batches of step 3 (the others wait in its Allreduce)."""
    draw = DataParallel.micro_batches

    def micro_batches(self):
        if self.rank == self.world_size - 1 and self.sampler.samples_seen == 2 * self.sampler.global_batch_size:
            raise RuntimeError("deliberate failure while drawing the batches of step 3")
        return draw(self)

    DataParallel.micro_batches = micro_batches


def main():
    two_ranks = train("two_ranks")
    if rank == 0:
        train("one_rank", MPI.COMM_SELF, replace(CONFIG, batch_size=CONFIG.batch_size * world.Get_size()))
    writes_before_resume = {"rank": rank, "writes": len(writes)}

    train("resumed", stop_after_step=2)
    if rank == 0:
        shutil.copy(root / "resumed/checkpoint.npz", root / "at_step_2.npz")
    world.Barrier()
    train("resumed", resume_from=root / "resumed/checkpoint.npz")
    if rank == 0:
        train("resumed_on_one_rank", MPI.COMM_SELF, resume_from=root / "at_step_2.npz")

    weights = np.concatenate([value.ravel() for value in two_ranks.model.state_dict().values()])
    same_weights = all(np.array_equal(weights, other) for other in world.allgather(weights))
    writes_by_rank = world.gather(writes_before_resume, root=0)
    if rank == 0:
        print(json.dumps({"world_size": world.Get_size(), "replicas_identical": same_weights,
                          "writes_by_rank": writes_by_rank}), flush=True)
    world.Barrier()

    fail_on_the_last_rank_at_step_3()
    train("failure", config=replace(CONFIG, eval_every=1))


if __name__ == "__main__":
    with stop_job_on_failure(world):
        main()
