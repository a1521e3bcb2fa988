"""C = A @ B with Numba, written the way BLAS libraries get fast.

Same contract as kernels/reference/matmul.py: 2-D (M, K) @ (K, N) or batched (Bt, M, K) @ (Bt, K, N),
float32 or float64, any sizes (0 included), inputs never modified, output dtype = input dtype.

Why a naive triple loop is slow
-------------------------------
A matmul does 2*M*N*K floating-point operations on only (M*K + K*N + M*N) numbers, so each number can
be reused ~n times. The CPU can do two 16-wide float32 fused multiply-adds per cycle (Zen 5, AVX-512:
~230 GFLOP/s per core), but it can only fetch ~30 GB/s (~8 G floats/s) from memory. The naive loop
    for i, for j, for k: C[i, j] += A[i, k] * B[k, j]
walks down a COLUMN of B (one cache line fetched per useful float) and reloads everything from memory
for every (i, j): it runs at a few GFLOP/s. Every trick below exists to feed the multiply units from
registers and caches instead of memory. (kernels/numba_cpu/matmul_ladder.py takes these steps one at
a time, with a function per step, for the kernels notebook.)

The tricks
----------
1. Packing. B is copied once into B^T (N, K), contiguous: now C[i, j] = dot(row i of A, row j of B^T)
   and BOTH operands are read along contiguous rows, which the hardware prefetcher streams and the
   compiler loads 16 floats at a time. A non-contiguous A (a transposed view from the backward pass) is
   copied to rows too. The copies cost O(MK + KN) memory traffic, against O(MNK) arithmetic; the
   transposing copy itself is done in cache-sized strips (`_transpose`). When A has fewer than 4 rows
   (one token at a time) the copy of B would cost more than the product, and `_matmul_skinny` streams
   B as it is instead.
2. A register tile (the micro-kernel, `_tile_4x4`). Instead of one dot product at a time, compute a
   4x4 block of C together: per step of k it loads 4 values of A and 4 of B^T and does 16
   multiply-adds, so each load feeds 4 FMAs instead of 1. The 16 running sums live in registers;
   LLVM vectorises the k loop (16 vector accumulators, summed across lanes once at the end). This is
   the dot-product form of the micro-kernel; BLAS libraries use an outer-product form instead, which
   was measured slow (9-18 GFLOP/s) and very slow to compile (13-180 s) under Numba.
3. Cache blocking. k runs in slices of KC = 1024, and C in blocks of MC x NC = 128 x 64. The block's
   panel of B^T (NC x KC: 256 KiB in float32, 512 KiB in float64) stays in the 1 MiB L2 cache while
   all MC/4 = 32 row tiles of the block sweep across it, so it comes from memory once per block instead
   of once per tile; the 4 rows of A of the current tile (16 KiB in float32) stay in the 48 KiB L1
   cache while that tile sweeps. The k slice is long on purpose: each 4x4 tile ends with 16 sums
   across vector lanes (shuffles, no FMAs), paid once per slice, so a long slice pays them rarely.
4. Threads. The C blocks (over the batch too) are independent: each is written by exactly one
   iteration of a `prange` loop, which runs its own k slices in order, so there is no race and no
   lock. (tests/broken_kernels_matmul.py shows what happens when two iterations share an accumulator.)
5. Small products run the same loops on one thread (`_matmul_serial`): starting the threads costs more
   than the whole product below a size that depends on Numba's threading layer (PARALLEL_MIN_WORK):
   ~2 us per launch under "omp" (its threads spin while waiting), but ~200-350 us under "workqueue",
   the layer kernels/numba_cpu/__init__.py picks so that Numba's and the BLAS's threads do not fight.
   A 128^3 product takes ~70 us on one core.

Numba details that decide the speed (measured on this machine; see shared/PERFORMANCE_NOTES.md)
- The inner loops slice a view (`A[b, i, k0:k1]`) and run `for k in range(kc)`: a `range(k0, k1)`
  loop over the big array stopped the vectoriser (~4x slower).
- Rows are sliced straight from the 3-D arrays, `A[b, i, k0:k1]`, which Numba types as contiguous
  ('C' layout). Slicing a 2-D panel first, `A[b, :, k0:k1][i]`, gives layout 'A' (any stride), and the
  vectoriser gave up: the kernel ran ~5x slower.
- Vectorising a sum changes the order of the additions, which IEEE arithmetic forbids unless told:
  `fastmath={"reassoc", "contract"}` allows exactly that (and fused multiply-add), and NOT the
  "no NaN / no infinity" assumptions of `fastmath=True`, so inf and nan still propagate.
- Accumulators start at a zero of the array's own dtype (`zero`, passed in): a Python `0.0` is a
  float64 and would silently turn a float32 kernel into a float64 one (2-3x slower).
- `cache=True` writes the compiled code to __pycache__, so the next process skips the compile (cold:
  ~3 s per dtype for the serial and ~3-4 s for the parallel kernel; warm: ~0.2-0.3 s for the first call).
  A `with numba.parallel_chunksize(1):` block inside the kernel made it uncachable (numba 0.68 fails
  while saving it), so the threads split the tasks in Numba's default even chunks.
"""
import numba
import numpy as np
from numba import njit, prange

MR = 4  # rows of C in one register tile
NR = 4  # columns of C in one register tile
MC = 128  # rows of C in one cache block (a multiple of MR)
NC = 64  # columns of C in one cache block (a multiple of NR)
KC = 1024  # length of the k slice a block works on

_FLAGS = dict(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy", boundscheck=False)


@njit(inline="always", **_FLAGS)
def _tile_4x4(a0, a1, a2, a3, b0, b1, b2, b3, C, b, i, j, zero):
    """The micro-kernel: C[b, i:i+4, j:j+4] += the 16 dot products of 4 rows of A with 4 rows of B^T.

    The a's and b's are contiguous slices of length kc. 16 scalar accumulators, written out one by one
    so that the compiler keeps each in a (vector) register: arrays would live in memory."""
    c00 = zero; c01 = zero; c02 = zero; c03 = zero
    c10 = zero; c11 = zero; c12 = zero; c13 = zero
    c20 = zero; c21 = zero; c22 = zero; c23 = zero
    c30 = zero; c31 = zero; c32 = zero; c33 = zero
    for k in range(a0.shape[0]):
        x0 = a0[k]; x1 = a1[k]; x2 = a2[k]; x3 = a3[k]
        y0 = b0[k]; y1 = b1[k]; y2 = b2[k]; y3 = b3[k]
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3
    C[b, i, j] += c00; C[b, i, j + 1] += c01; C[b, i, j + 2] += c02; C[b, i, j + 3] += c03
    C[b, i + 1, j] += c10; C[b, i + 1, j + 1] += c11; C[b, i + 1, j + 2] += c12; C[b, i + 1, j + 3] += c13
    C[b, i + 2, j] += c20; C[b, i + 2, j + 1] += c21; C[b, i + 2, j + 2] += c22; C[b, i + 2, j + 3] += c23
    C[b, i + 3, j] += c30; C[b, i + 3, j + 1] += c31; C[b, i + 3, j + 2] += c32; C[b, i + 3, j + 3] += c33


@njit(inline="always", **_FLAGS)
def _dot(x, y, zero):
    """One dot product of two contiguous slices: the edge tiles, where fewer than 4 rows or columns are left."""
    s = zero
    for k in range(x.shape[0]):
        s += x[k] * y[k]
    return s


@njit(**_FLAGS)
def _block(A, Bt, C, b, i0, i1, j0, j1, zero):
    """C[b, i0:i1, j0:j1] += A[b, i0:i1] @ Bt[b, j0:j1].T: one cache block, k slice by k slice, in 4x4 tiles."""
    K = A.shape[2]
    for k0 in range(0, K, KC):
        k1 = min(k0 + KC, K)
        # Rows sliced straight from the 3-D arrays: contiguous slices (see "Numba details" above).
        i = i0
        while i + MR <= i1:  # full 4-row tiles
            a0 = A[b, i, k0:k1]; a1 = A[b, i + 1, k0:k1]; a2 = A[b, i + 2, k0:k1]; a3 = A[b, i + 3, k0:k1]
            j = j0
            while j + NR <= j1:
                _tile_4x4(a0, a1, a2, a3, Bt[b, j, k0:k1], Bt[b, j + 1, k0:k1], Bt[b, j + 2, k0:k1],
                          Bt[b, j + 3, k0:k1], C, b, i, j, zero)
                j += NR
            for jj in range(j, j1):  # right edge: fewer than 4 columns left
                for ii in range(i, i + MR):
                    C[b, ii, jj] += _dot(A[b, ii, k0:k1], Bt[b, jj, k0:k1], zero)
            i += MR
        for ii in range(i, i1):  # bottom edge: fewer than 4 rows left
            for jj in range(j0, j1):
                C[b, ii, jj] += _dot(A[b, ii, k0:k1], Bt[b, jj, k0:k1], zero)


@njit(parallel=True, **_FLAGS)
def _matmul_parallel(A, Bt, C, zero):
    """C[b] += A[b] @ Bt[b].T for every b; A (nb, M, K), Bt (nb, N, K) and C (nb, M, N) C-contiguous.

    The work is cut into tasks, one per MC x NC block of one C[b], and `prange` hands them to the threads.
    One task owns its block of C: no two iterations ever write the same element, so there is no race.
    (Splitting over k instead would make two threads add into the same C[i, j]: a race.)"""
    nb, M, K = A.shape
    N = Bt.shape[1]
    m_blocks = (M + MC - 1) // MC
    n_blocks = (N + NC - 1) // NC
    for task in prange(nb * m_blocks * n_blocks):
        b = task // (m_blocks * n_blocks)
        i0 = (task // n_blocks) % m_blocks * MC
        j0 = task % n_blocks * NC
        _block(A, Bt, C, b, i0, min(i0 + MC, M), j0, min(j0 + NC, N), zero)


@njit(**_FLAGS)
def _matmul_serial(A, Bt, C, zero):
    """The same loops on one thread, for small products (point 5 of the module docstring)."""
    nb, M, K = A.shape
    N = Bt.shape[1]
    for b in range(nb):
        for i0 in range(0, M, MC):
            for j0 in range(0, N, NC):
                _block(A, Bt, C, b, i0, min(i0 + MC, M), j0, min(j0 + NC, N), zero)


# Below this many multiply-adds (M*N*K summed over the batch), one thread beats two: see point 5 above.
# It depends on what starting the threads costs, i.e. on Numba's threading layer (measured here, idle
# 2-core machine, 256^3 float32: serial 400-500 us; parallel 236 us under "omp", 505 us under "omp" with
# OMP_WAIT_POLICY=PASSIVE, 450 us under "workqueue", whose every launch cost ~200-350 us).
PARALLEL_MIN_WORK = {"workqueue": 2**25, "omp": 2**20, "tbb": 2**22}  # 2**25 = 322**3, 2**20 = 101**3


def _parallel_min_work() -> int:
    try:
        layer = numba.threading_layer()  # the layer actually running, once a parallel kernel has run
    except ValueError:
        layer = numba.config.THREADING_LAYER  # before: the one asked for (kernels/numba_cpu/__init__.py)
    return PARALLEL_MIN_WORK.get(layer, 2**22)


@njit(**_FLAGS)
def _matmul_skinny(A, B, C):
    """C[b] += A[b] @ B[b] for A with fewer than MR rows (a token at a time, a vector): B NOT transposed.

    With M < 4 there is no register tile to fill, and packing B^T would cost more than the product: each
    row of C is built as sum_k A[i, k] * (row k of B), 4 values of k per pass, streaming B row by row.
    It reads all of B once per row of A: bound by memory bandwidth, which a second thread would not add."""
    nb, M, K = A.shape
    for b in range(nb):
        for i in range(M):
            c = C[b, i]
            k = 0
            while k + 4 <= K:
                a0 = A[b, i, k]; a1 = A[b, i, k + 1]; a2 = A[b, i, k + 2]; a3 = A[b, i, k + 3]
                b0 = B[b, k]; b1 = B[b, k + 1]; b2 = B[b, k + 2]; b3 = B[b, k + 3]
                for j in range(c.shape[0]):
                    c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j]
                k += 4
            for kk in range(k, K):
                aik = A[b, i, kk]
                bk = B[b, kk]
                for j in range(c.shape[0]):
                    c[j] += aik * bk[j]


TT = 32  # side of the square tiles of the packing transpose


@njit(**_FLAGS)
def _transpose(X, Y):
    """Y[b] = X[b].T, X (nb, R, S) and Y (nb, S, R) both C-contiguous: the packing copy.

    A transposing copy reads one of the two arrays down its columns, touching a new cache line for every
    element. Going through X in strips of TT rows, the TT cache lines of a strip stay in L1 while each row
    piece of Y is written in one contiguous run. Measured here: 1.5-2x faster than NumPy's own transposing
    copy (0.6-2 GB/s, far below the ~30 GB/s memory can give: a transpose is hard for caches). One thread:
    a prange here cost more to start under the "workqueue" layer (~200-350 us) than it saved."""
    nb, R, S = X.shape
    for b in range(nb):
        Xb = X[b]
        Yb = Y[b]
        for r0 in range(0, R, TT):
            r1 = min(r0 + TT, R)
            for s in range(S):
                y = Yb[s, r0:r1]  # contiguous run of Y ...
                for r in range(y.shape[0]):
                    y[r] = Xb[r0 + r, s]  # ... from a column piece of the strip, in L1


def _as_rows(x: np.ndarray) -> np.ndarray:
    """x (nb, R, S) as a C-contiguous array (x itself when it already is): rows contiguous, for the kernel.

    The common non-contiguous case is a transposed view of a contiguous array (`W.T` and `x.T` in the
    backward pass, B^T of a contiguous B): those big enough are copied by the tiled `_transpose`."""
    if x.flags.c_contiguous:
        return x
    xt = np.swapaxes(x, -1, -2)
    if xt.flags.c_contiguous and x.size >= TT * TT * 16:
        out = np.empty(x.shape, dtype=x.dtype)
        _transpose(xt, out)
        return out
    return np.ascontiguousarray(x)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for (M, K) @ (K, N) or (Bt, M, K) @ (Bt, K, N), float32 or float64 (kernels/reference/matmul.py).

    Packs (copies) the operands into the layouts the kernel reads, A by rows and B^T by rows, then runs
    the blocked kernel, on two threads when the product is big enough. The inputs are only read."""
    if a.ndim != b.ndim or a.ndim not in (2, 3) or a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(
            f"matmul kernel: expected (M, K) @ (K, N) or (Bt, M, K) @ (Bt, K, N), got {a.shape} @ {b.shape}; "
            "the op (tinygrad_llm/ops/matmul.py) broadcasts and reshapes operands before calling the kernel"
        )
    dtype = np.result_type(a, b)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"matmul kernel: float32 or float64 inputs only, got {a.dtype} and {b.dtype}")
    two_d = a.ndim == 2
    a, b = (a[None], b[None]) if two_d else (a, b)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)  # a copy only for mixed dtypes
    nb, M, K = a.shape
    C = np.zeros((nb, M, b.shape[2]), dtype=dtype)
    work = C.size * K
    if work == 0:
        pass  # an empty product, or K = 0: the sum of nothing is 0
    elif M < MR:
        _matmul_skinny(_as_rows(a), _as_rows(b), C)
    else:
        A = _as_rows(a)  # packing: rows of A contiguous (a copy only if needed)
        Bt = _as_rows(np.swapaxes(b, -1, -2))  # packing: rows of B^T contiguous
        if work >= _parallel_min_work():
            _matmul_parallel(A, Bt, C, dtype.type(0))
        else:
            _matmul_serial(A, Bt, C, dtype.type(0))
    return C[0] if two_d else C
