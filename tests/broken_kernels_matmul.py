"""Deliberately broken matmul kernels, named after the bug; tests/test_kernels_matmul.py proves its
checks catch each one."""
import numpy as np
from numba import njit, prange


KCHUNK = 4096  # the k loop is cut into chunks of this length, and prange runs over the chunks


@njit(parallel=True, cache=True)
def _race_kernel(A, B, C):
    # THE BUG: the loop split over threads is the REDUCTION loop over k. Each iteration (one chunk of k)
    # reads C[i, j] into a register, adds its chunk's part of the dot product, and writes it back. Every
    # iteration does that to the SAME elements, so when two threads work at the same time, one reads
    # C[i, j], the other writes its sum, and the first then writes back a value that never saw it: that
    # addition is lost. prange raises no error and no warning; only the result shows it.
    # (The library kernel splits the OUTPUT over threads, one block of C each, and keeps each k loop
    # inside one thread.)
    # Built to be caught reliably: the read and the write are far apart (a whole chunk of k), so any overlap
    # of the two threads in time loses updates, even when the OS interleaves them on one busy core.
    M, K = A.shape
    N = B.shape[1]
    for chunk in prange((K + KCHUNK - 1) // KCHUNK):
        k0 = chunk * KCHUNK
        k1 = min(k0 + KCHUNK, K)
        for i in range(M):
            for j in range(N):
                s = C[i, j]  # read the shared accumulator ...
                for k in range(k0, k1):
                    s += A[i, k] * B[k, j]
                C[i, j] = s  # ... and write it back: lost if another thread wrote C[i, j] in between


def matmul_with_race_on_shared_accumulator(a, b):
    """a @ b (2-D) with a prange over chunks of k whose iterations all add into the same elements of C."""
    dtype = np.result_type(a, b)
    C = np.zeros((a.shape[0], b.shape[1]), dtype=dtype)
    if a.shape[1]:
        _race_kernel(np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(b, dtype=dtype), C)
    return C
