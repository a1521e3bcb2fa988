"""Reaching MPI: import mpi4py only when a distributed feature is used, and launch K processes under mpiexec.

MPI (the Message Passing Interface) runs the same program as K processes, called ranks 0..K-1, that share
nothing and exchange arrays through a communicator. `mpiexec -n K python prog.py` starts them; on several
machines, `mpiexec -f hostfile -n K ...` spreads them over the hosts listed in the file. A program run without
mpiexec is a world of one rank, so every distributed code path also runs (trivially) in a plain process.

Nothing may hang: a rank that dies while the others wait in a collective call would block them forever.
MPICH's mpiexec kills the whole job after MPIEXEC_TIMEOUT seconds, and `run_mpi` also puts a timeout on the
subprocess itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

INSTALL_HINT = 'pip install -e ".[distributed]"'


def import_mpi():
    """The mpi4py.MPI module, or an error saying how to install it (importing it initialises MPI)."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"tinygrad_llm.distributed needs mpi4py and an MPI library; install them with "
                          f"`{INSTALL_HINT}` (MPICH from PyPI gives mpiexec, mpi4py the bindings)") from error
    return MPI


def world_communicator():
    """MPI.COMM_WORLD: every rank this job started (one rank when run without mpiexec)."""
    return import_mpi().COMM_WORLD


def mpiexec_path() -> str | None:
    """Where mpiexec is, or None when MPI is not installed: first beside this Python (the mpich wheel puts it in
    the environment's bin folder, which is on PATH only when the environment is activated), then on PATH."""
    beside_python = Path(sys.executable).parent / "mpiexec"
    return str(beside_python) if beside_python.is_file() else shutil.which("mpiexec")


def run_mpi(ranks: int, args: list[str], timeout_s: float = 120, env: dict | None = None,
            hostfile: str | None = None) -> subprocess.CompletedProcess:
    """Run `python args...` as `ranks` MPI processes and return the finished process (stdout, stderr, returncode).

    mpiexec kills the job after timeout_s (MPIEXEC_TIMEOUT), and the subprocess gets a few seconds more before
    Python kills it, so a deadlocked job fails instead of hanging. Each rank gets OPENBLAS_NUM_THREADS=1 unless
    env says otherwise: K ranks on K cores must not each start a pool of BLAS threads.
    """
    mpiexec = mpiexec_path()
    if mpiexec is None:
        raise FileNotFoundError(f"run_mpi: no mpiexec on PATH; install MPI with `{INSTALL_HINT}`")
    if ranks < 1:
        raise ValueError(f"run_mpi: ranks must be at least 1, got {ranks}")
    environment = {"OPENBLAS_NUM_THREADS": "1", **os.environ, **(env or {}),
                   "MPIEXEC_TIMEOUT": str(max(1, int(timeout_s)))}
    command = [mpiexec, *(["-f", hostfile] if hostfile else []), "-n", str(ranks), sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout_s + 15)
