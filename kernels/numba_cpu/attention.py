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

## Memory traffic

Naive attention writes and reads B*H*Tq*Tk scores, probabilities and (backward) their gradients: at T=1024,
B=H=4 that is 64 MiB per matrix in float32, far outside every cache, so the kernel waits on memory. Here a
task takes one block of BLOCK_Q queries (16 KiB at D=64, float32), then streams tiles of BLOCK_K keys and
values (32 KiB each), which stay in L1/L2 while every query row of the block uses them: each key is read
from memory once per query BLOCK, not once per query. The scores live in one (BLOCK_Q x BLOCK_K) buffer,
one tile at a time. The only arrays written to memory are out (Tq x D) and lse (Tq): extra memory is
O(T*D) (measured: 4 MiB at T=1024, B=H=4, D=64, against 192 MiB for the reference). With causal
attention, key tiles entirely above the diagonal (after every query of the block) are never loaded:
half the work.

## The backward, recomputing instead of storing P

With P = softmax(S) the gradients are dV = P^T dO, dP = dO V^T, dS = P * (dP - D_i), dQ = dS K * scale,
dK = dS^T Q * scale, where D_i = sum_j P_ij dP_ij = rowsum(dO_i * O_i) (the softmax Jacobian term;
computed first, one dot product per query row). P_ij = exp(S_ij - lse_i) is rebuilt tile by tile from the
saved lse: one more Q K^T than storing P, but O(T*D) memory instead of O(T^2).

Parallelism without races: the forward runs one task per (batch, head, query block): each task owns its
rows of out and lse. The backward runs one task per (batch, head): dK and dV of a key tile accumulate over
every query row and dQ of a row over every key tile, and all of them belong to the one (b, h) the task owns.

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

BLOCK_Q = 64   # query rows per forward task
BLOCK_K = 128  # keys per tile: a (BLOCK_K x D) tile of K and of V, 32 KiB each at D=64 in float32: L1/L2-sized
_NEG = -1e30   # "minus infinity" for masked scores: finite, because fastmath code assumes no infinities


# ------------------------------------------------------------------ two building blocks LLVM can vectorise
# ------------------------------------------------------------------ pieces shared by forward and backward
@numba.njit(cache=True, fastmath=True)
def _matmul_abt(a, b, c, m, n, kd, accumulate, zero):
    """c[:m, :n] = a[:m, :kd] @ b[:n, :kd].T (or += when accumulate): every product in attention, as rows.

    All six products of attention (Q K^T and P V forward; Q K^T, dO V^T, P^T dO, dS^T Q and dS K backward)
    are written in this one form, both operands read along contiguous rows, by passing transposed tiles
    where needed (V^T, K^T, P^T, dS^T, Q^T and dO^T tiles are copied into small buffers: O(tile) work
    against O(tile * D) multiply-adds). A 4 x 4 block of c is 16 dot products kept in registers while
    the loop over kd runs: each loaded element of a is used 4 times and of b 4 times, and LLVM vectorises
    the kd loop (16 vector accumulators). Rows and columns left over (m or n not a multiple of 4) take
    a plain loop.

    Where it loses to BLAS: each dot product ends with a horizontal sum of its vector accumulator
    (about 8 shuffle-and-add instructions). With kd = D = 64 that is as much work as the 4 vector FMAs
    that produced it, so this tile runs at about 0.6x numpy's BLAS at 64 x 64 x 64. BLAS micro-kernels
    avoid it by vectorising over the output's columns (outer products), which Numba compiles poorly
    (shared/PERFORMANCE_NOTES.md, trap 8).
    """
    m4, n4 = m - m % 4, n - n % 4
    for i in range(0, m4, 4):
        a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
        for j in range(0, n4, 4):
            b0, b1, b2, b3 = b[j], b[j + 1], b[j + 2], b[j + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for t in range(kd):
                x0, x1, x2, x3 = a0[t], a1[t], a2[t], a3[t]
                y0, y1, y2, y3 = b0[t], b1[t], b2[t], b3[t]
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
                s20 += x2 * y0
                s21 += x2 * y1
                s22 += x2 * y2
                s23 += x2 * y3
                s30 += x3 * y0
                s31 += x3 * y1
                s32 += x3 * y2
                s33 += x3 * y3
            if accumulate:
                s00 += c[i, j]
                s01 += c[i, j + 1]
                s02 += c[i, j + 2]
                s03 += c[i, j + 3]
                s10 += c[i + 1, j]
                s11 += c[i + 1, j + 1]
                s12 += c[i + 1, j + 2]
                s13 += c[i + 1, j + 3]
                s20 += c[i + 2, j]
                s21 += c[i + 2, j + 1]
                s22 += c[i + 2, j + 2]
                s23 += c[i + 2, j + 3]
                s30 += c[i + 3, j]
                s31 += c[i + 3, j + 1]
                s32 += c[i + 3, j + 2]
                s33 += c[i + 3, j + 3]
            c[i, j], c[i, j + 1], c[i, j + 2], c[i, j + 3] = s00, s01, s02, s03
            c[i + 1, j], c[i + 1, j + 1], c[i + 1, j + 2], c[i + 1, j + 3] = s10, s11, s12, s13
            c[i + 2, j], c[i + 2, j + 1], c[i + 2, j + 2], c[i + 2, j + 3] = s20, s21, s22, s23
            c[i + 3, j], c[i + 3, j + 1], c[i + 3, j + 2], c[i + 3, j + 3] = s30, s31, s32, s33
        for j in range(n4, n):                  # leftover columns: 4 x 1
            bj = b[j]
            s0 = s1 = s2 = s3 = zero
            for t in range(kd):
                y = bj[t]
                s0 += a0[t] * y
                s1 += a1[t] * y
                s2 += a2[t] * y
                s3 += a3[t] * y
            if accumulate:
                s0 += c[i, j]
                s1 += c[i + 1, j]
                s2 += c[i + 2, j]
                s3 += c[i + 3, j]
            c[i, j], c[i + 1, j], c[i + 2, j], c[i + 3, j] = s0, s1, s2, s3
    for i in range(m4, m):                      # leftover rows: 1 x 1
        ai = a[i]
        for j in range(n):
            bj = b[j]
            total = zero
            for t in range(kd):
                total += ai[t] * bj[t]
            c[i, j] = total + c[i, j] if accumulate else total


@numba.njit(cache=True, fastmath=True, inline="always")
def _transpose_into(x, rows, cols, xt):
    """xt[:cols, :rows] = x[:rows, :cols].T (a small tile, into a contiguous buffer)."""
    for r in range(rows):
        row = x[r]
        for col in range(cols):
            xt[col, r] = row[col]


@numba.njit(cache=True, fastmath=True, inline="always")
def _mask_row(srow, kn, last_visible, pad_tile, use_pad, neg):
    """Set masked scores to `neg`: keys j > last_visible (causal) and padded keys."""
    for j in range(kn):
        hidden = (j > last_visible) or (use_pad and pad_tile[j])
        srow[j] = neg if hidden else srow[j]


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
        qs = np.empty((qn, D), q.dtype)        # this block's queries, pre-multiplied by scale
        for i in range(qn):
            qrow, qsrow = q[b, h, q0 + i], qs[i]
            for d in range(D):
                qsrow[d] = qrow[d] * scale
        acc = out[b, h, q0:q0 + qn]            # the running sum_j p_j v_j lives in the output rows
        acc[:] = zero
        m = np.full(qn, neg, q.dtype)          # running max per row
        l = np.zeros(qn, q.dtype)              # running sum of exp(s - m) per row
        s = np.empty((qn, block_k), q.dtype)   # scores, then probabilities, of one tile: never T x T
        vt = np.empty((D, block_k), q.dtype)
        # Causal: keys after the block's last query + offset are invisible to every row of the block,
        # so the loop stops there: the tiles above the diagonal are never touched.
        k_end = min(Tk, q0 + qn + offset) if causal else Tk
        for k0 in range(0, max(k_end, 0), block_k):
            kn = min(block_k, k_end - k0)
            _matmul_abt(qs, k[b, h, k0:k0 + kn], s, qn, kn, D, False, zero)    # S = (Q scale) K^T
            pad_tile = pad[b, k0:k0 + kn]
            # Only tiles that cross the diagonal (or hold padding) need the per-score mask.
            needs_mask = use_pad or (causal and k0 + kn - 1 > q0 + offset)
            for i in range(qn):
                srow = s[i]
                if needs_mask:
                    last = q0 + i + offset - k0 if causal else kn
                    _mask_row(srow, kn, last, pad_tile, use_pad, neg)
                tile_max = neg
                for j in range(kn):
                    tile_max = maxnum(tile_max, srow[j])
                m_new = maxnum(m[i], tile_max)
                alpha = fast_exp(m[i] - m_new)      # rescales what was summed against the old max
                row_sum = zero
                for j in range(kn):
                    p = fast_exp(srow[j] - m_new)
                    p = p if srow[j] > neg else zero  # masked keys contribute exactly 0
                    srow[j] = p
                    row_sum += p
                l[i] = l[i] * alpha + row_sum
                m[i] = m_new
                if alpha != 1:
                    arow = acc[i]
                    for d in range(D):
                        arow[d] *= alpha
            _transpose_into(v[b, h, k0:k0 + kn], kn, D, vt)
            _matmul_abt(s, vt, acc, qn, D, kn, True, zero)                     # acc += P V
        for i in range(qn):
            if l[i] > zero:
                li = l[i]
                arow = acc[i]
                for d in range(D):
                    arow[d] /= li
                lse[b, h, q0 + i] = m[i] + np.log(li)
            else:                               # sees no key: zeros, and lse = -inf set by the caller
                lse[b, h, q0 + i] = neg


# ------------------------------------------------------------------ backward
@numba.njit(cache=True, parallel=True, fastmath=True)
def _backward_kernel(q, k, v, out, lse, grad_out, pad, use_pad, causal, scale, zero, neg, block_q, block_k,
                     dq, dk, dv):
    """dq, dk, dv (zero-filled on entry), one (batch, head) per task. lse: finite (0 where no key)."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        # D_i = rowsum(dO_i * O_i) = sum_j P_ij dP_ij: the softmax Jacobian term, one number per query.
        delta = np.empty(Tq, q.dtype)
        qs = np.empty((Tq, D), q.dtype)
        for i in range(Tq):
            orow, grow, qrow, qsrow = out[b, h, i], grad_out[b, h, i], q[b, h, i], qs[i]
            total = zero
            for d in range(D):
                total += orow[d] * grow[d]
                qsrow[d] = qrow[d] * scale
            delta[i] = total
        p = np.empty((block_q, block_k), q.dtype)      # P of one (query block, key tile)
        ds = np.empty((block_q, block_k), q.dtype)     # dP, then dS, of the same tile
        pt = np.empty((block_k, block_q), q.dtype)
        dst = np.empty((block_k, block_q), q.dtype)
        qt = np.empty((D, block_q), q.dtype)
        got = np.empty((D, block_q), q.dtype)
        kt = np.empty((D, block_k), q.dtype)
        dk_tile = np.empty((block_k, D), q.dtype)
        dv_tile = np.empty((block_k, D), q.dtype)
        for k0 in range(0, Tk, block_k):
            kn = min(block_k, Tk - k0)
            # Causal: queries before k0 - offset see none of this tile's keys.
            i_start = max(0, k0 - offset) if causal else 0
            if i_start >= Tq:
                break
            k_tile, v_tile = k[b, h, k0:k0 + kn], v[b, h, k0:k0 + kn]
            _transpose_into(k_tile, kn, D, kt)
            pad_tile = pad[b, k0:k0 + kn]
            dk_tile[:] = zero
            dv_tile[:] = zero
            for q0 in range(i_start, Tq, block_q):
                qn = min(block_q, Tq - q0)
                # P_ij = exp(S_ij - lse_i), rebuilt from the saved lse (nothing was stored).
                _matmul_abt(qs[q0:q0 + qn], k_tile, p, qn, kn, D, False, zero)
                g_blk = grad_out[b, h, q0:q0 + qn]
                _matmul_abt(g_blk, v_tile, ds, qn, kn, D, False, zero)        # dP = dO V^T
                for i in range(qn):
                    prow, dsrow = p[i], ds[i]
                    if use_pad or (causal and k0 + kn - 1 > q0 + i + offset):
                        _mask_row(prow, kn, q0 + i + offset - k0 if causal else kn, pad_tile, use_pad, neg)
                    lse_i, delta_i = lse[b, h, q0 + i], delta[q0 + i]
                    for j in range(kn):
                        e = fast_exp(prow[j] - lse_i)
                        e = e if prow[j] > neg else zero
                        prow[j] = e
                        dsrow[j] = e * (dsrow[j] - delta_i)                    # dS = P (dP - D_i)
                _transpose_into(p, qn, kn, pt)
                _transpose_into(ds, qn, kn, dst)
                _transpose_into(g_blk, qn, D, got)
                _transpose_into(q[b, h, q0:q0 + qn], qn, D, qt)
                _matmul_abt(pt, got, dv_tile, kn, D, qn, True, zero)          # dV += P^T dO
                _matmul_abt(dst, qt, dk_tile, kn, D, qn, True, zero)          # dK += dS^T Q
                _matmul_abt(ds, kt, dq[b, h, q0:q0 + qn], qn, D, kn, True, zero)  # dQ += dS K
            for j in range(kn):
                dkrow, dvrow, dkt, dvt = dk[b, h, k0 + j], dv[b, h, k0 + j], dk_tile[j], dv_tile[j]
                for d in range(D):
                    dkrow[d] = dkt[d] * scale
                    dvrow[d] = dvt[d]
        for i in range(Tq):
            dqrow = dq[b, h, i]
            for d in range(D):
                dqrow[d] *= scale


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
