"""Flash-style scaled dot-product attention, compiled with Numba: never builds the (Tq x Tk) score matrix.

Same contract as kernels/reference/attention.py (read that first): q (B, H, Tq, D), k and v (B, H, Tk, D);
causal means query i sees key j only if j <= i + (Tk - Tq); padding_mask (B, Tk) is True for keys to ignore;
a query that sees no key gets zeros and lse = -inf. The forward returns (out, lse); the backward takes the
saved out and lse and returns (dq, dk, dv).

## The online softmax (the whole trick)

For one query row with scores s_1..s_T, the output is  o = sum_j exp(s_j - m) v_j / sum_j exp(s_j - m)
for ANY constant m; we take m = max_j s_j so that no exp overflows. The naive kernel needs all T scores to
know m before it can start. The online version walks over the keys in tiles and keeps, per query row,

    m   the largest score seen so far
    l   sum over the keys seen so far of exp(s_j - m)
    acc sum over the keys seen so far of exp(s_j - m) * v_j         (a D-vector, not yet divided by l)

When a new tile arrives with scores s_j (j in tile), the max may rise to m_new = max(m, max_j s_j). Every
term already in l and acc was computed against the OLD max, and exp(s - m_old) = exp(s - m_new) *
exp(m_new - m_old), so multiplying the old sums by

    alpha = exp(m_old - m_new)          (<= 1; exactly 1 when the max did not change)

re-expresses them against the new max. Then

    l   <- alpha * l   + sum_{j in tile} exp(s_j - m_new)
    acc <- alpha * acc + sum_{j in tile} exp(s_j - m_new) v_j
    m   <- m_new

and after the last tile o = acc / l and lse = m + log(l). This is EXACT (no approximation): it is the same
sum regrouped. Forgetting alpha (tests/broken_kernels_attention.py) is right only while the max never moves.

## Layout: queries along the vector lanes

The kernel works on TRANSPOSED tiles: S^T (keys down, queries across), Q^T, O^T (D down, queries across).
Then every per-query quantity (m, l, alpha, lse, the Jacobian term D_i) is a vector along the rows, and
the softmax bookkeeping is plain element-wise loops over contiguous memory, which LLVM vectorises: the
running max is `m[i] = max(m[i], s[j, i])` down the columns, 16 queries per AVX-512 instruction, with no
horizontal reduction. Every product is `_matmul_ab` below, whose inner loop also runs along contiguous
rows of width block_q or block_k (128). Small tiles (V^T, K^T, P, dS) are transposed into buffers where a
product needs them the other way round: O(tile) copies against O(tile * D) multiply-adds.

## Memory traffic

Naive attention writes and reads B*H*Tq*Tk scores, probabilities and (backward) their gradients: at T=1024,
B=H=4 that is 64 MiB per matrix in float32, far outside every cache, so the kernel waits on memory. Here a
task takes one block of BLOCK_Q queries (32 KiB at D=64, float32), then streams tiles of BLOCK_K keys and
values (32 KiB each), which stay in L1/L2 while every query of the block uses them: each key is read from
memory once per query BLOCK, not once per query. The scores live in one (BLOCK_K x BLOCK_Q) buffer, one
tile at a time. The only arrays written to memory are out (Tq x D) and lse (Tq): extra memory is O(T*D)
(measured by `bench kernels`: about 4 MiB at T=1024, B=H=4, D=64, against 192 MiB for the reference). With
causal attention, key tiles entirely after every query of the block are never loaded: half the work.

## The backward, recomputing instead of storing P

With P = softmax(S) the gradients are dV = P^T dO, dP = dO V^T, dS = P * (dP - D_i), dQ = dS K * scale,
dK = dS^T Q * scale, where D_i = sum_j P_ij dP_ij = rowsum(dO_i * O_i) (the softmax Jacobian term;
computed first, one dot product per query row). P_ij = exp(S_ij - lse_i) is rebuilt tile by tile from the
saved lse: one more Q K^T than storing P, but O(T*D) memory instead of O(T^2).

Parallelism without races: the forward runs one task per (batch, head, query block): each task owns its
rows of out and lse. The backward runs one task per (batch, head): dK and dV of a key tile accumulate over
every query block and dQ of a block over every key tile, and all of them belong to the one (b, h) the task
owns.

## Numba details (see shared/PERFORMANCE_NOTES.md)
- fastmath assumes no infinities: masked scores are a large finite negative (_NEG), never -inf; the
  -inf of a fully masked lse is written in Python, after the kernel.
- math.exp and float max reductions do not vectorise here: `fast_exp` and `maxnum` (fast_math.py) are a
  polynomial exp with range reduction and LLVM's maxnum.
- Constants are typed like the data (np.float32 in float32 kernels): a bare Python float would silently
  promote the float32 loops to float64.
- Inner loops run from 0 over contiguous 1-D views (a `range(k0, k1)` loop blocked vectorisation).
- One compiled signature per dtype: padding_mask=None passes a dummy mask with use_pad=False.
"""
import math

import numba
import numpy as np
from numba import prange

from .fast_math import fast_exp, maxnum

BLOCK_Q = 128  # queries per tile: the vector axis of every per-query loop
BLOCK_K = 128  # keys per tile: a (BLOCK_K x D) tile of K and of V, 32 KiB each at D=64 in float32: L1/L2-sized
_NEG = -1e30   # "minus infinity" for masked scores: finite, because fastmath code assumes no infinities


# ------------------------------------------------------------------ pieces shared by forward and backward
@numba.njit(cache=True, fastmath=True)
def _matmul_ab(a, b, c, m, n, kd, accumulate, zero):
    """c[:m, :n] = a[:m, :kd] @ b[:kd, :n] (or += when accumulate); rows of b and c are contiguous.

    Every product in attention is written in this one form. Row i of c is built as a sum of rows of b,
    c[i, :] += a[i, t] * b[t, :], so the innermost loop runs along a contiguous row (j = 0..n) and LLVM
    vectorises it: 16 float32 lanes per AVX-512 instruction, no horizontal sums. Two rows of c and four
    rows of b per pass: each loaded element of b feeds 2 rows, and each load and store of c carries 4
    multiply-adds. The rows of c stay in L1 between passes (a 128-wide float32 row is 512 bytes).

    Measured on this project's machine, one thread, float32 (64 x 128) = (64 x 64) @ (64 x 128): about
    95 GFLOP/s, level with numpy's BLAS at that size; a 4 x 4 dot-product register tile (the form that
    wins for big matrices, blocked_matmul.py) reached 45-60 here, because with kd = D = 64 each dot
    product's closing horizontal sum costs as much as the multiply-adds before it. The loop wants n large:
    at n = 64 it ran at about half that speed (per-pass overhead, and the checks LLVM inserts that c and
    b do not overlap), which is why the tiles put 128 queries or 128 keys along n.
    """
    kd4 = kd - kd % 4
    m2 = m - m % 2
    for i in range(0, m2, 2):
        c0, c1 = c[i], c[i + 1]
        a0, a1 = a[i], a[i + 1]
        if not accumulate:
            for j in range(n):
                c0[j] = zero
                c1[j] = zero
        for t in range(0, kd4, 4):
            x0, x1, x2, x3 = a0[t], a0[t + 1], a0[t + 2], a0[t + 3]
            y0, y1, y2, y3 = a1[t], a1[t + 1], a1[t + 2], a1[t + 3]
            b0, b1, b2, b3 = b[t], b[t + 1], b[t + 2], b[t + 3]
            for j in range(n):
                p0, p1, p2, p3 = b0[j], b1[j], b2[j], b3[j]
                c0[j] += x0 * p0 + x1 * p1 + x2 * p2 + x3 * p3
                c1[j] += y0 * p0 + y1 * p1 + y2 * p2 + y3 * p3
        for t in range(kd4, kd):                # kd not a multiple of 4
            x0, y0, b0 = a0[t], a1[t], b[t]
            for j in range(n):
                c0[j] += x0 * b0[j]
                c1[j] += y0 * b0[j]
    for i in range(m2, m):                      # m odd: the last row alone
        c0, a0 = c[i], a[i]
        if not accumulate:
            for j in range(n):
                c0[j] = zero
        for t in range(kd):
            x0, b0 = a0[t], b[t]
            for j in range(n):
                c0[j] += x0 * b0[j]


@numba.njit(cache=True, fastmath=True, inline="always")
def _transpose_into(x, rows, cols, xt):
    """xt[:cols, :rows] = x[:rows, :cols].T (a small tile, into a contiguous buffer)."""
    for r in range(rows):
        row = x[r]
        for col in range(cols):
            xt[col, r] = row[col]


@numba.njit(cache=True, fastmath=True, inline="always")
def _mask_scores_t(st, kn, qn, k0, q0, offset, pad, b, use_pad, causal, neg):
    """Set the masked entries of a transposed score tile st[:kn, :qn] (keys k0.., queries q0..) to `neg`.

    Key k0 + j is hidden from query q0 + i when it is padding, or (causal) when k0 + j > q0 + i + offset,
    i.e. from the queries i < k0 + j - offset - q0: a prefix of row j. Tiles before the diagonal have no
    such prefix and cost one comparison per row.
    """
    for j in range(kn):
        if use_pad and pad[b, k0 + j]:
            hidden = qn
        elif causal:
            hidden = min(max(k0 + j - offset - q0, 0), qn)
        else:
            hidden = 0
        srow = st[j]
        for i in range(hidden):
            srow[i] = neg


# ------------------------------------------------------------------ forward
@numba.njit(cache=True, parallel=True, fastmath=True)
def _forward_kernel(q, k, v, pad, use_pad, causal, scale, zero, neg, block_q, block_k, out, lse):
    """Fill out (B, H, Tq, D) and lse (B, H, Tq); lse = neg marks a query that sees no key.

    zero and neg are 0 and _NEG typed like the data, so no float32 loop is promoted to float64.
    """
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq                 # query i sees keys j <= i + offset
    n_qblocks = (Tq + block_q - 1) // block_q
    for task in prange(B * H * n_qblocks):
        b, h, qb = task // (H * n_qblocks), (task // n_qblocks) % H, task % n_qblocks
        q0 = qb * block_q
        qn = min(block_q, Tq - q0)
        qst = np.empty((D, qn), q.dtype)        # (Q scale)^T of this block
        for i in range(qn):
            qrow = q[b, h, q0 + i]
            for d in range(D):
                qst[d, i] = qrow[d] * scale
        ot = np.zeros((D, qn), q.dtype)         # acc^T: the running sum_j p_ij v_j, one column per query
        m = np.full(qn, neg, q.dtype)           # running max per query
        l = np.zeros(qn, q.dtype)               # running sum of exp(s - m) per query
        alpha = np.empty(qn, q.dtype)
        st = np.empty((block_k, qn), q.dtype)   # S^T, then P^T, of one key tile: never T x T
        vt = np.empty((D, block_k), q.dtype)
        # Causal: keys after the block's last query + offset are invisible to every query of the block,
        # so the loop stops there: the tiles above the diagonal are never touched.
        k_end = min(Tk, q0 + qn + offset) if causal else Tk
        for k0 in range(0, max(k_end, 0), block_k):
            kn = min(block_k, k_end - k0)
            _matmul_ab(k[b, h, k0:k0 + kn], qst, st, kn, qn, D, False, zero)    # S^T = K (Q scale)^T
            _mask_scores_t(st, kn, qn, k0, q0, offset, pad, b, use_pad, causal, neg)
            for i in range(qn):
                alpha[i] = m[i]                 # the old max, for now
            for j in range(kn):                 # the new max: down the columns, 16 queries at a time
                srow = st[j]
                for i in range(qn):
                    m[i] = maxnum(m[i], srow[i])
            for i in range(qn):
                alpha[i] = fast_exp(alpha[i] - m[i])    # rescales what was summed against the old max
                l[i] *= alpha[i]
            for d in range(D):
                orow = ot[d]
                for i in range(qn):
                    orow[i] *= alpha[i]
            for j in range(kn):
                srow = st[j]
                for i in range(qn):
                    p = fast_exp(srow[i] - m[i])
                    p = p if srow[i] > neg else zero    # masked keys contribute exactly 0
                    srow[i] = p
                    l[i] += p
            _transpose_into(v[b, h, k0:k0 + kn], kn, D, vt)
            _matmul_ab(vt, st, ot, D, qn, kn, True, zero)                      # acc^T += V^T P^T
        for i in range(qn):
            orow = out[b, h, q0 + i]
            if l[i] > zero:
                inv = 1 / l[i]
                for d in range(D):
                    orow[d] = ot[d, i] * inv
                lse[b, h, q0 + i] = m[i] + np.log(l[i])
            else:                               # sees no key: zeros, and lse = -inf set by the caller
                for d in range(D):
                    orow[d] = zero
                lse[b, h, q0 + i] = neg


# ------------------------------------------------------------------ backward
@numba.njit(cache=True, parallel=True, fastmath=True)
def _backward_kernel(q, k, v, out, lse, grad_out, pad, use_pad, causal, scale, zero, neg, block_q, block_k,
                     dq, dk, dv):
    """Fill dq, dk, dv, one (batch, head) per task. lse: finite (0 for a query that sees no key)."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq
    n_qblocks = (Tq + block_q - 1) // block_q
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        # Per query block, transposed: (Q scale)^T, dO^T and the dQ^T accumulator; O(T*D) per task.
        qst = np.zeros((n_qblocks, D, block_q), q.dtype)
        got = np.zeros((n_qblocks, D, block_q), q.dtype)
        dqt = np.zeros((n_qblocks, D, block_q), q.dtype)
        # D_i = rowsum(dO_i * O_i) = sum_j P_ij dP_ij: the softmax Jacobian term, one number per query.
        delta = np.empty(Tq, q.dtype)
        for i in range(Tq):
            orow, grow, qrow = out[b, h, i], grad_out[b, h, i], q[b, h, i]
            qb, col = i // block_q, i % block_q
            total = zero
            for d in range(D):
                total += orow[d] * grow[d]
                qst[qb, d, col] = qrow[d] * scale
                got[qb, d, col] = grow[d]
            delta[i] = total
        pt = np.empty((block_k, block_q), q.dtype)     # S^T, then P^T, of one (key tile, query block)
        dst = np.empty((block_k, block_q), q.dtype)    # dP^T, then dS^T
        p = np.empty((block_q, block_k), q.dtype)
        ds = np.empty((block_q, block_k), q.dtype)
        kt = np.empty((D, block_k), q.dtype)
        dkt = np.empty((D, block_k), q.dtype)          # dK^T and dV^T of the key tile
        dvt = np.empty((D, block_k), q.dtype)
        for k0 in range(0, Tk, block_k):
            kn = min(block_k, Tk - k0)
            # Causal: queries before k0 - offset see none of this tile's keys.
            first_query = max(0, k0 - offset) if causal else 0
            if first_query >= Tq:
                break
            k_tile, v_tile = k[b, h, k0:k0 + kn], v[b, h, k0:k0 + kn]
            _transpose_into(k_tile, kn, D, kt)
            dkt[:] = zero
            dvt[:] = zero
            for qb in range(first_query // block_q, n_qblocks):
                q0 = qb * block_q
                qn = min(block_q, Tq - q0)
                # P_ij = exp(S_ij - lse_i), rebuilt from the saved lse (nothing was stored).
                _matmul_ab(k_tile, qst[qb], pt, kn, qn, D, False, zero)          # S^T = K (Q scale)^T
                _matmul_ab(v_tile, got[qb], dst, kn, qn, D, False, zero)         # dP^T = V dO^T
                _mask_scores_t(pt, kn, qn, k0, q0, offset, pad, b, use_pad, causal, neg)
                lse_block, delta_block = lse[b, h, q0:q0 + qn], delta[q0:q0 + qn]
                for j in range(kn):
                    prow, dsrow = pt[j], dst[j]
                    for i in range(qn):
                        e = fast_exp(prow[i] - lse_block[i])
                        e = e if prow[i] > neg else zero
                        prow[i] = e
                        dsrow[i] = e * (dsrow[i] - delta_block[i])                # dS = P (dP - D_i)
                _transpose_into(pt, kn, qn, p)
                _transpose_into(dst, kn, qn, ds)
                _matmul_ab(got[qb], p, dvt, D, kn, qn, True, zero)              # dV^T += dO^T P
                _matmul_ab(qst[qb], ds, dkt, D, kn, qn, True, zero)             # dK^T += (Q scale)^T dS
                _matmul_ab(kt, dst, dqt[qb], D, qn, kn, True, zero)             # dQ^T += K^T dS^T
            for j in range(kn):
                dkrow, dvrow = dk[b, h, k0 + j], dv[b, h, k0 + j]
                for d in range(D):
                    dkrow[d] = dkt[d, j]
                    dvrow[d] = dvt[d, j]
        for i in range(Tq):
            dqrow = dq[b, h, i]
            qb, col = i // block_q, i % block_q
            for d in range(D):
                dqrow[d] = dqt[qb, d, col] * scale


# ------------------------------------------------------------------ the contract
def _prepare(q, k, v, padding_mask, scale):
    q, k, v = (np.ascontiguousarray(x) for x in (q, k, v))
    dtype = q.dtype
    if dtype not in (np.float32, np.float64) or k.dtype != dtype or v.dtype != dtype:
        raise TypeError(f"attention: q, k, v must all be float32 or all float64, got {q.dtype}, {k.dtype}, {v.dtype}")
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if padding_mask is None:      # a dummy (B, 1) mask keeps one compiled signature for both cases
        pad, use_pad = np.zeros((q.shape[0], 1), dtype=np.bool_), False
    else:
        pad, use_pad = np.ascontiguousarray(padding_mask, dtype=np.bool_), True
    return q, k, v, pad, use_pad, dtype.type(scale), dtype.type(0), dtype.type(_NEG)


def attention_forward(q, k, v, causal=False, padding_mask=None, scale=None, block_q=BLOCK_Q, block_k=BLOCK_K):
    """(output (B, H, Tq, D), lse (B, H, Tq)); lse is -inf for a query that sees no key.

    block_q and block_k only change the tiling (tests use small tiles to exercise many tiles), never the result.
    """
    q, k, v, pad, use_pad, scale, zero, neg = _prepare(q, k, v, padding_mask, scale)
    B, H, Tq, D = q.shape
    out = np.empty((B, H, Tq, D), dtype=q.dtype)
    lse = np.empty((B, H, Tq), dtype=q.dtype)
    if out.size:
        _forward_kernel(q, k, v, pad, use_pad, bool(causal), scale, zero, neg, int(block_q), int(block_k), out, lse)
    lse[lse <= neg] = -np.inf
    return out, lse


def attention_backward(q, k, v, out, lse, grad_out, causal=False, padding_mask=None, scale=None,
                       block_q=BLOCK_Q, block_k=BLOCK_K):
    """(dq, dk, dv), recomputing the probabilities tile by tile from the saved lse."""
    q, k, v, pad, use_pad, scale, zero, neg = _prepare(q, k, v, padding_mask, scale)
    out = np.ascontiguousarray(out, dtype=q.dtype)
    grad_out = np.ascontiguousarray(grad_out, dtype=q.dtype)
    # A query that saw no key has lse = -inf; every one of its scores is masked, so any finite value works.
    lse = np.where(np.isfinite(lse), lse, 0).astype(q.dtype)
    dq = np.zeros_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    if q.size and k.size:
        _backward_kernel(q, k, v, out, lse, grad_out, pad, use_pad, bool(causal), scale, zero, neg, int(block_q), int(block_k),
                         dq, dk, dv)
    return dq, dk, dv
