"""When one rank fails, stop every rank, and say which one failed and why.

Ranks meet in collective calls (Allreduce, Barrier): if rank 2 raises and simply exits, ranks 0, 1 and 3 wait
in their next Allreduce forever (MPICH's mpiexec does not stop them when one rank exits with an error; only
MPIEXEC_TIMEOUT would, much later). MPI_Abort ends the whole job at once. A rank killed by a signal (out of memory,
kill -9) has no chance to call it, but there mpiexec sees the process die and ends the job itself, naming the signal
(tests/test_data_parallel.py checks both). Files already written survive it,
because the training loop only ever writes a file under a temporary name and renames it when complete.

    with stop_job_on_failure(comm):
        train(...)

(`python -m mpi4py prog.py` also aborts on an uncaught exception; this wrapper adds the rank to the message.)
"""
from __future__ import annotations

import sys
import time
import traceback
from contextlib import contextmanager

ABORT_GRACE_S = 1.0  # seconds between printing the failure and aborting the job


def failure_message(rank: int, world_size: int, error: BaseException) -> str:
    return f"rank {rank} of {world_size} failed: {type(error).__name__}: {error}"


@contextmanager
def stop_job_on_failure(comm, exit_code: int = 1):
    """Run the block; if it raises on this rank, print 'rank r of K failed: ...' and the traceback to stderr,
    then MPI_Abort the job, so no other rank waits forever. A clean SystemExit(0) passes through."""
    try:
        yield
    except BaseException as error:  # KeyboardInterrupt and SystemExit(!= 0) must stop the others too
        if isinstance(error, SystemExit) and error.code in (None, 0):
            raise
        # one write, the message first: MPI_Abort tears the job down while mpiexec may still be forwarding output
        sys.stdout.flush()
        sys.stderr.write(f"{failure_message(comm.Get_rank(), comm.Get_size(), error)}\n{traceback.format_exc()}")
        sys.stderr.flush()
        # MPI_Abort kills the job's processes at once, mpiexec's output forwarders included: on a loaded machine
        # the message above was lost before they passed it on. A moment's wait lets it reach the terminal.
        time.sleep(ABORT_GRACE_S)
        comm.Abort(exit_code)
