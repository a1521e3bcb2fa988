"""Rank 1 is killed by the operating system (SIGKILL: no Python error, no MPI_Abort) while rank 0 waits for it in
an Allreduce. mpiexec must notice the dead process and stop the job at once, not leave rank 0 waiting."""
import os
import signal

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
values = np.ones(4)
comm.Allreduce(MPI.IN_PLACE, values)  # both ranks are up
if comm.Get_rank() == 1:
    os.kill(os.getpid(), signal.SIGKILL)
comm.Allreduce(MPI.IN_PLACE, values)  # rank 0 waits here for a rank that no longer exists
print(f"rank {comm.Get_rank()} finished", flush=True)
