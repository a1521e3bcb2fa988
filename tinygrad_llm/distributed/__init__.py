"""Training on several processes with MPI (chapter 10).

Every function takes a plain mpi4py communicator; mpi4py itself is imported only when one is first needed, so
the rest of the library works without MPI installed (`pip install -e ".[distributed]"` adds it).

    sampler.py              each rank's disjoint shard of every global batch, reshuffled each epoch
    gradient_averaging.py   the sample-weighted gradient mean, with bucketed Allreduce over flat buffers
    ring_allreduce.py       a ring all-reduce written out with Sendrecv, counting the bytes it sends
    data_parallel.py        what the training loop calls for `train --data-parallel`
    failures.py             one failing rank stops the whole job, naming itself
    mpi.py                  importing mpi4py lazily; launching K processes under mpiexec with a timeout
    zero.py                 ZeRO stages 1 and 2: optimizer state (and gradients) sharded over the ranks
    memory_ledger.py        the bytes each rank holds, against ZeRO's per-parameter formulas
    tensor_parallel.py      the Transformer MLP split column-then-row over ranks
    pipeline_schedule.py    a GPipe schedule simulator and its bubble
    thread_ranks.py         ranks as threads in one process, for a notebook cell

Run `mpiexec -n 2 python -m tinygrad_llm train --data-parallel` to train on two processes.
"""
from .data_parallel import DataParallel
from .failures import stop_job_on_failure
from .gradient_averaging import average_gradients, plan_buckets
from .mpi import import_mpi, mpiexec_path, run_mpi, world_communicator
from .ring_allreduce import ring_allreduce, ring_allreduce_bytes
from .sampler import DistributedSampler

__all__ = [
    "DistributedSampler", "average_gradients", "plan_buckets", "ring_allreduce", "ring_allreduce_bytes",
    "DataParallel", "stop_job_on_failure", "import_mpi", "world_communicator", "mpiexec_path", "run_mpi",
]
