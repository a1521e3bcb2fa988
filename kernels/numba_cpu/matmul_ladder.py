"""The matmul ladder: from the textbook triple loop to the BLAS-style kernel, one idea per step.

Each step computes the same C = A @ B (same contract as kernels/reference/matmul.py: 2-D or batched,
float32 or float64) and adds one idea to the step before it (step 3 two, said below). The kernels notebook and
`python -m tinygrad_llm bench kernels` time them against numpy's BLAS; shared/PERFORMANCE_NOTES.md
has what they reached on this project's 2-core machine (fp32, 2 threads): naive 0.002-0.08x BLAS,
i-k-j with prange 0.2-0.47x, the packed, register-tiled kernel 0.6-0.77x.

    matmul_naive            i-j-k: C[i, j] = sum_k A[i, k] B[k, j]; the inner loop walks DOWN a column
                            of B (a new cache line for every multiply-add) and cannot vectorise.
    matmul_ikj              i-k-j order: C[i, :] += A[i, k] * B[k, :]. The inner loop now streams a
                            ROW of B and a row of C, contiguous: the compiler turns it into 16-wide
                            vector FMAs. Rows of C are independent, so `prange` splits them over threads.
    matmul_blocked          the same i-k-j loops inside cache blocks: a KC x NC block of B (256 KiB at
                            float32) is reused by every row of an MC-row block while it sits in the L2
                            cache, and the NC-wide piece of a row of C stays in L1 across the k loop.
                            The inner loop of i-k-j loads AND stores c[j] for every single FMA, so it
                            is limited by loads and stores, not by memory; taking 4 values of k per pass
                            (c[j] += a0 b0[j] + a1 b1[j] + a2 b2[j] + a3 b3[j]) loads and stores c once
                            per 4 FMAs. Blocking alone gained little here: B only stops fitting in the
                            caches at n >= 1024.
    matmul_packed_parallel  the library kernel (kernels/numba_cpu/blocked_matmul.py): B packed as B^T, a 4x4
                            register tile of dot products, cache blocks, prange over the blocks.

Each step's kernel works on one 2-D C-contiguous product; `_batched` feeds it each product of a batch.
"""
import numpy as np
from numba import njit, prange

from .blocked_matmul import matmul as matmul_packed_parallel

__all__ = ["matmul_naive", "matmul_ikj", "matmul_blocked", "matmul_packed_parallel"]


@njit(cache=True)
def _naive(A, B, C):
    """Step 1: three nested loops, exactly the definition. One thread, no vectorisation."""
    M, K = A.shape
    N = B.shape[1]
    for i in range(M):
        for j in range(N):
            s = C[i, j]  # C starts at zero, so this is a zero of the right dtype (a Python 0.0 would be float64)
            for k in range(K):
                s += A[i, k] * B[k, j]
            C[i, j] = s


@njit(parallel=True, cache=True)
def _ikj(A, B, C):
    """Step 2: swap the loops to i-k-j so the innermost loop runs along rows; rows of C over the threads.

    No fastmath needed: each C[i, j] still gets its terms added in the order k = 0, 1, 2, ...; the
    vector lanes are different j's, not a reordered sum."""
    M, K = A.shape
    for i in prange(M):  # each iteration owns row i of C: no two threads write the same element
        c = C[i]
        for k in range(K):
            aik = A[i, k]
            b = B[k]
            for j in range(c.shape[0]):  # loop from 0 over row views: contiguous, so it vectorises
                c[j] += aik * b[j]


MC, NC, KC = 64, 256, 256  # cache blocks of the blocked step: rows of C, columns of C, length of k


@njit(parallel=True, cache=True)
def _blocked(A, B, C):
    """Step 3: i-k-j inside cache blocks, 4 values of k per pass. For one MC-row block of C (one prange
    iteration, so no races), a KC x NC block of B is loaded into cache once and used by all MC rows before
    moving on. (No fastmath: the order of every addition is written out, so there is nothing to reorder.)"""
    M, K = A.shape
    N = B.shape[1]
    for ib in prange((M + MC - 1) // MC):
        i0 = ib * MC
        i1 = min(i0 + MC, M)
        for j0 in range(0, N, NC):
            j1 = min(j0 + NC, N)
            for k0 in range(0, K, KC):
                k1 = min(k0 + KC, K)
                for i in range(i0, i1):
                    c = C[i, j0:j1]  # a row piece of C: stays in L1 over the k loop
                    k = k0
                    while k + 4 <= k1:  # 4 rows of the B block per pass: c is loaded and stored once per 4 FMAs
                        a0 = A[i, k]; a1 = A[i, k + 1]; a2 = A[i, k + 2]; a3 = A[i, k + 3]
                        b0 = B[k, j0:j1]; b1 = B[k + 1, j0:j1]; b2 = B[k + 2, j0:j1]; b3 = B[k + 3, j0:j1]
                        for j in range(c.shape[0]):
                            c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j]
                        k += 4
                    for kk in range(k, k1):  # the last k1 - k0 mod 4 rows
                        aik = A[i, kk]
                        b = B[kk, j0:j1]
                        for j in range(c.shape[0]):
                            c[j] += aik * b[j]


def _batched(kernel, a, b):
    """Run a 2-D kernel on a 2-D product or on each product of a batch (contiguous copies of the inputs,
    which are never modified)."""
    if a.ndim != b.ndim or a.ndim not in (2, 3) or a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"matmul ladder: expected (M, K) @ (K, N) or (Bt, M, K) @ (Bt, K, N), got {a.shape} @ {b.shape}")
    dtype = np.result_type(a, b)
    A = np.ascontiguousarray(a, dtype=dtype)
    B = np.ascontiguousarray(b, dtype=dtype)
    C = np.zeros(a.shape[:-1] + b.shape[-1:], dtype=dtype)
    if C.ndim == 2:
        kernel(A, B, C)
    else:
        for t in range(C.shape[0]):
            kernel(A[t], B[t], C[t])
    return C


def matmul_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ladder step 1: the triple loop i-j-k."""
    return _batched(_naive, a, b)


def matmul_ikj(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ladder step 2: i-k-j loop order (vectorises), prange over rows of C."""
    return _batched(_ikj, a, b)


def matmul_blocked(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ladder step 3: i-k-j inside cache blocks, prange over blocks of rows."""
    return _batched(_blocked, a, b)
