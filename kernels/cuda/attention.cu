// Flash-style scaled dot-product attention, forward and backward: the contract of
// kernels/reference/attention.py. Never builds the (Tq x Tk) score matrix.
//
// q (B, H, Tq, D), k and v (B, H, Tk, D), row-major and contiguous; head dim D <= MAX_HEAD_DIM.
// causal: query i sees key j only if j <= i + (Tk - Tq) (the queries are the LAST Tq positions, as when
// decoding with a cache). padding (B, Tk) bytes, nonzero = padded key, ignored. A query that sees no key
// at all gets output 0 and lse = -inf. forward -> (out, lse); backward -> (dq, dk, dv).
//
// ## The online softmax (see kernels/numba_cpu/attention.py for the full derivation)
// A query keeps a running max m, a running sum l = sum exp(s_j - m) and a running, un-normalised output
// acc = sum exp(s_j - m) v_j while the keys stream past in tiles. When a tile raises the max to m', the
// old sums are multiplied by exp(m - m') (<= 1) so that everything is measured against m' again. After
// the last tile, out = acc / l and lse = m + log l. Exact, not an approximation: the same sum regrouped.
//
// ## Thread/block mapping: "a warp per row, a lane per tile element"
// Every kernel here has the same shape. A block is ATTENTION_WARPS = 4 warps (128 threads) and owns
// BLOCK_ROWS = 8 rows of one side (queries in the forward and dq kernels, keys in the dk/dv kernel), two
// per warp. It streams tiles of TILE = 32 rows of the OTHER side through shared memory, one tile element
// per lane. For one of its rows, a warp then does:
//   1. lane j computes the score of (its row, tile element j): a length-D dot product read from shared
//      memory. The row's vector is the same address for all 32 lanes (a broadcast, one transaction);
//      tile element j's vector is at j * (D + 1): the +1 of padding puts the 32 lanes' reads of one
//      dimension in 32 different banks (with stride D, a multiple of 32, all would hit one bank and be
//      served one after another: a 32-way bank conflict).
//   2. warp_max / warp_sum (5 shuffles each) give the row's tile max and sum of probabilities.
//   3. the row's D-vector accumulator lives in REGISTERS, split over the lanes: lane l owns dimensions
//      l, l + 32, l + 64, l + 96 (DIMS_PER_LANE = 4, hence MAX_HEAD_DIM = 128). To add sum_j p_j v_j,
//      the warp loops over j: __shfl_sync broadcasts p_j from lane j, and each lane adds p_j times its own
//      dimensions of v_j (32 lanes read 32 neighbouring elements of one shared row: conflict-free).
// Which rows a block writes is fixed, so no two blocks ever write the same output: no atomics, and
// results are identical from run to run.
//
// ## Kernels and memory traffic
// attention_forward: grid = (ceil(Tq / 8) * B * H) blocks (flattened, so B * H is not limited by
//   gridDim.y); each loads its 8 queries (pre-multiplied by scale) once, then streams K and V tiles.
//   A K/V tile loaded from global memory serves 8 queries, so K and V are read Tq / 8 times per head
//   (mostly from L2), and the only writes are out (Tq x D) and lse (Tq): extra memory O(T * D), never
//   O(T^2). Causal: tiles entirely after the block's last visible key are never loaded (half the work).
// attention_backward_delta: D_i = rowsum(dO_i * O_i), one warp per query row (4 rows per block). It is
//   the softmax Jacobian's term in dS = P * (dP - D_i), needed by both kernels below: computed once.
// attention_backward_dq: the forward's mapping (queries are rows, key tiles stream): recompute
//   P_ij = exp(S_ij - lse_i) from the saved lse, dP_ij = dO_i . v_j, dS_ij = P_ij (dP_ij - D_i),
//   and accumulate dQ_i = scale * sum_j dS_ij k_j in registers.
// attention_backward_dkdv: the transpose (keys are rows, query tiles stream): recompute P_ij and dS_ij
//   the same way, accumulate dV_j = sum_i P_ij dO_i and dK_j = scale * sum_i dS_ij q_i. Causal: query
//   tiles that see none of the block's keys are skipped.
// Splitting dQ from dK/dV computes the scores twice (one extra Q K^T, O(T^2 D) flops) to avoid atomic
// additions into dQ (which would make results depend on scheduling order): the readable, deterministic
// choice. Arithmetic runs on CUDA cores (FMA) in the input's precision, not on tensor cores.
//
// ## Shared memory (dynamic, sized by Python in cuda_launch.py: keep the two in sync)
// Every kernel carves at most two row arrays [BLOCK_ROWS][D], two tile arrays [TILE][D + 1] and two tile
// vectors [TILE] out of one buffer: (2 * 8 * D + 2 * 32 * (D + 1) + 2 * 32) * sizeof(T) bytes, 40.5 KiB
// for float32 at D = 128. float64 above D = 75 needs more than the default 48 KiB; Python raises the
// kernel's limit (up to the device's opt-in maximum: 163 KiB on A100, 227 KiB on H100).
#include "common.cuh"

constexpr int ATTENTION_WARPS = 4;                        // warps per block: 128 threads
constexpr int ROWS_PER_WARP = 2;                          // rows (queries or keys) each warp owns
constexpr int BLOCK_ROWS = ATTENTION_WARPS * ROWS_PER_WARP;
constexpr int TILE = WARP_SIZE;                           // tile elements: one per lane
constexpr int MAX_HEAD_DIM = 128;
constexpr int DIMS_PER_LANE = MAX_HEAD_DIM / WARP_SIZE;   // dimensions of an accumulator each lane holds

// One buffer for every instantiation: `extern __shared__ T s[]` would clash between float and double.
extern __shared__ __align__(16) unsigned char attention_shared[];

// Copy rows [first, first + count) of a row-major (n_rows, d) array into shared memory, `stride` apart,
// multiplied by `factor`; rows past n_rows become zeros (so a partial tile adds exactly nothing). The
// whole block copies: consecutive threads copy consecutive elements, so the global reads coalesce.
template <typename T>
__device__ void load_rows(T* dst, const T* src, int first, int count, int n_rows, int d, int stride, T factor) {
    for (int e = threadIdx.x; e < count * d; e += blockDim.x) {
        const int r = e / d;
        const int dim = e % d;
        dst[r * stride + dim] = (first + r < n_rows) ? src[(long long)(first + r) * d + dim] * factor : T(0);
    }
}

template <typename T> __device__ inline T dot(const T* a, const T* b, int d) {
    T total = T(0);
    for (int dim = 0; dim < d; ++dim) total += a[dim] * b[dim];
    return total;
}

// acc[dims of this lane] += weight_j * rows[j][dims] for j = 0..TILE-1, weight_j held by lane j.
template <typename T>
__device__ inline void accumulate_tile(T (&acc)[DIMS_PER_LANE], T weight, const T* tile_rows, int d, int lane) {
    for (int j = 0; j < TILE; ++j) {
        const T weight_j = __shfl_sync(FULL_WARP, weight, j);
        const T* row_j = tile_rows + j * (d + 1);
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) {
            const int dim = lane + c * WARP_SIZE;
            if (dim < d) acc[c] += weight_j * row_j[dim];
        }
    }
}

// Where one (batch, head) starts, and which block of rows this block owns.
struct BlockPlace {
    long long head;  // b * H + h
    int batch;
    int first_row;
};

__device__ inline BlockPlace place_block(int n_rows, int n_heads) {
    const int row_blocks = (n_rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    const long long head = blockIdx.x / row_blocks;
    return {head, (int)(head / n_heads), (int)(blockIdx.x % row_blocks) * BLOCK_ROWS};
}

__device__ inline bool key_is_open(const unsigned char* padding, int key) {
    return padding == nullptr || padding[key] == 0;
}

// ------------------------------------------------------------------ forward
template <typename T>
__device__ void attention_forward(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                  const unsigned char* __restrict__ padding, int causal, T scale, int n_heads,
                                  int tq, int tk, int d, T* __restrict__ out, T* __restrict__ lse) {
    const BlockPlace place = place_block(tq, n_heads);
    const int warp = threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    const int offset = tk - tq;  // query i sees keys j <= i + offset
    q += place.head * tq * d;
    k += place.head * tk * d;
    v += place.head * tk * d;
    out += place.head * tq * d;
    lse += place.head * tq;
    if (padding != nullptr) padding += (long long)place.batch * tk;

    T* q_rows = reinterpret_cast<T*>(attention_shared);  // [BLOCK_ROWS][d], times scale
    T* k_tile = q_rows + BLOCK_ROWS * d;                  // [TILE][d + 1]
    T* v_tile = k_tile + TILE * (d + 1);                  // [TILE][d + 1]
    load_rows(q_rows, q, place.first_row, BLOCK_ROWS, tq, d, d, scale);

    T row_max[ROWS_PER_WARP], row_sum[ROWS_PER_WARP], acc[ROWS_PER_WARP][DIMS_PER_LANE];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        row_max[r] = negative_infinity<T>();
        row_sum[r] = T(0);
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) acc[r][c] = T(0);
    }

    // Causal: the block's last query sees keys up to min(first_row + BLOCK_ROWS, tq) - 1 + offset.
    const int key_end = causal ? max(0, min(place.first_row + BLOCK_ROWS, tq) + offset) : tk;
    for (int k0 = 0; k0 < key_end; k0 += TILE) {
        __syncthreads();  // the previous tile is no longer read (and q_rows is complete)
        load_rows(k_tile, k, k0, TILE, tk, d, d + 1, T(1));
        load_rows(v_tile, v, k0, TILE, tk, d, d + 1, T(1));
        __syncthreads();
        const int key = k0 + lane;
        const bool key_exists = key < tk && key_is_open(padding, key);
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            const int local_row = warp * ROWS_PER_WARP + r;
            const int query = place.first_row + local_row;
            if (query >= tq) continue;  // the same for the whole warp, like every branch on `query`
            const bool visible = key_exists && (!causal || key <= query + offset);
            const T score = visible ? dot(q_rows + local_row * d, k_tile + lane * (d + 1), d) : negative_infinity<T>();
            const T new_max = max_(row_max[r], warp_max(score));
            if (new_max == negative_infinity<T>()) continue;  // no key visible to this query yet
            const T rescale = exp_(row_max[r] - new_max);      // 0 on the first visible tile: old max -inf
            const T p = visible ? exp_(score - new_max) : T(0);
            row_sum[r] = row_sum[r] * rescale + warp_sum(p);
            row_max[r] = new_max;
#pragma unroll
            for (int c = 0; c < DIMS_PER_LANE; ++c) acc[r][c] *= rescale;
            accumulate_tile(acc[r], p, v_tile, d, lane);
        }
    }

#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        const int query = place.first_row + warp * ROWS_PER_WARP + r;
        if (query >= tq) continue;
        const bool sees_a_key = row_sum[r] > T(0);
        const T inverse_sum = sees_a_key ? T(1) / row_sum[r] : T(0);
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) {
            const int dim = lane + c * WARP_SIZE;
            if (dim < d) out[(long long)query * d + dim] = acc[r][c] * inverse_sum;
        }
        if (lane == 0) lse[query] = sees_a_key ? row_max[r] + log_(row_sum[r]) : negative_infinity<T>();
    }
}

// ------------------------------------------------------------------ backward
template <typename T>
__device__ void attention_backward_delta(const T* __restrict__ out, const T* __restrict__ grad_out,
                                         long long n_rows, int d, T* __restrict__ delta) {
    const long long row = (long long)blockIdx.x * ATTENTION_WARPS + threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    if (row >= n_rows) return;  // a whole warp leaves together, and no __syncthreads follows
    T partial = T(0);
    for (int dim = lane; dim < d; dim += WARP_SIZE) partial += out[row * d + dim] * grad_out[row * d + dim];
    partial = warp_sum(partial);
    if (lane == 0) delta[row] = partial;
}

template <typename T>
__device__ void attention_backward_dq(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                      const T* __restrict__ grad_out, const T* __restrict__ lse,
                                      const T* __restrict__ delta, const unsigned char* __restrict__ padding,
                                      int causal, T scale, int n_heads, int tq, int tk, int d, T* __restrict__ dq) {
    const BlockPlace place = place_block(tq, n_heads);
    const int warp = threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    const int offset = tk - tq;
    q += place.head * tq * d;
    k += place.head * tk * d;
    v += place.head * tk * d;
    grad_out += place.head * tq * d;
    lse += place.head * tq;
    delta += place.head * tq;
    dq += place.head * tq * d;
    if (padding != nullptr) padding += (long long)place.batch * tk;

    T* q_rows = reinterpret_cast<T*>(attention_shared);  // [BLOCK_ROWS][d], times scale
    T* grad_rows = q_rows + BLOCK_ROWS * d;               // [BLOCK_ROWS][d]
    T* k_tile = grad_rows + BLOCK_ROWS * d;               // [TILE][d + 1]
    T* v_tile = k_tile + TILE * (d + 1);                  // [TILE][d + 1]
    load_rows(q_rows, q, place.first_row, BLOCK_ROWS, tq, d, d, scale);
    load_rows(grad_rows, grad_out, place.first_row, BLOCK_ROWS, tq, d, d, T(1));

    T acc[ROWS_PER_WARP][DIMS_PER_LANE];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r)
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) acc[r][c] = T(0);

    const int key_end = causal ? max(0, min(place.first_row + BLOCK_ROWS, tq) + offset) : tk;
    for (int k0 = 0; k0 < key_end; k0 += TILE) {
        __syncthreads();
        load_rows(k_tile, k, k0, TILE, tk, d, d + 1, T(1));
        load_rows(v_tile, v, k0, TILE, tk, d, d + 1, T(1));
        __syncthreads();
        const int key = k0 + lane;
        const bool key_exists = key < tk && key_is_open(padding, key);
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            const int local_row = warp * ROWS_PER_WARP + r;
            const int query = place.first_row + local_row;
            if (query >= tq) continue;
            // A visible key means this query sees at least one key, so its lse is finite.
            const bool visible = key_exists && (!causal || key <= query + offset);
            T grad_score = T(0);
            if (visible) {
                const T p = exp_(dot(q_rows + local_row * d, k_tile + lane * (d + 1), d) - lse[query]);
                const T grad_p = dot(grad_rows + local_row * d, v_tile + lane * (d + 1), d);
                grad_score = p * (grad_p - delta[query]);
            }
            accumulate_tile(acc[r], grad_score, k_tile, d, lane);
        }
    }

#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        const int query = place.first_row + warp * ROWS_PER_WARP + r;
        if (query >= tq) continue;
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) {
            const int dim = lane + c * WARP_SIZE;
            if (dim < d) dq[(long long)query * d + dim] = acc[r][c] * scale;
        }
    }
}

template <typename T>
__device__ void attention_backward_dkdv(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                        const T* __restrict__ grad_out, const T* __restrict__ lse,
                                        const T* __restrict__ delta, const unsigned char* __restrict__ padding,
                                        int causal, T scale, int n_heads, int tq, int tk, int d,
                                        T* __restrict__ dk, T* __restrict__ dv) {
    const BlockPlace place = place_block(tk, n_heads);
    const int warp = threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    const int offset = tk - tq;
    q += place.head * tq * d;
    k += place.head * tk * d;
    v += place.head * tk * d;
    grad_out += place.head * tq * d;
    lse += place.head * tq;
    delta += place.head * tq;
    dk += place.head * tk * d;
    dv += place.head * tk * d;
    if (padding != nullptr) padding += (long long)place.batch * tk;

    T* k_rows = reinterpret_cast<T*>(attention_shared);  // [BLOCK_ROWS][d]
    T* v_rows = k_rows + BLOCK_ROWS * d;                  // [BLOCK_ROWS][d]
    T* q_tile = v_rows + BLOCK_ROWS * d;                  // [TILE][d + 1], times scale
    T* grad_tile = q_tile + TILE * (d + 1);               // [TILE][d + 1]
    T* lse_tile = grad_tile + TILE * (d + 1);             // [TILE]
    T* delta_tile = lse_tile + TILE;                      // [TILE]
    load_rows(k_rows, k, place.first_row, BLOCK_ROWS, tk, d, d, T(1));
    load_rows(v_rows, v, place.first_row, BLOCK_ROWS, tk, d, d, T(1));

    T grad_k[ROWS_PER_WARP][DIMS_PER_LANE], grad_v[ROWS_PER_WARP][DIMS_PER_LANE];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r)
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) grad_k[r][c] = grad_v[r][c] = T(0);

    // Causal: queries i < first_row - offset see none of this block's keys (all >= first_row).
    const int query_begin = causal ? min(tq, max(0, place.first_row - offset)) : 0;
    for (int q0 = query_begin; q0 < tq; q0 += TILE) {
        __syncthreads();
        load_rows(q_tile, q, q0, TILE, tq, d, d + 1, scale);
        load_rows(grad_tile, grad_out, q0, TILE, tq, d, d + 1, T(1));
        if (threadIdx.x < TILE) {
            const bool exists = q0 + threadIdx.x < tq;
            lse_tile[threadIdx.x] = exists ? lse[q0 + threadIdx.x] : T(0);
            delta_tile[threadIdx.x] = exists ? delta[q0 + threadIdx.x] : T(0);
        }
        __syncthreads();
        const int query = q0 + lane;
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            const int local_row = warp * ROWS_PER_WARP + r;
            const int key = place.first_row + local_row;
            if (key >= tk) continue;
            const bool visible = query < tq && key_is_open(padding, key) && (!causal || key <= query + offset);
            T p = T(0);
            T grad_score = T(0);
            if (visible) {
                p = exp_(dot(q_tile + lane * (d + 1), k_rows + local_row * d, d) - lse_tile[lane]);
                const T grad_p = dot(grad_tile + lane * (d + 1), v_rows + local_row * d, d);
                grad_score = p * (grad_p - delta_tile[lane]);
            }
            accumulate_tile(grad_v[r], p, grad_tile, d, lane);
            accumulate_tile(grad_k[r], grad_score, q_tile, d, lane);  // q_tile holds q * scale
        }
    }

#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        const int key = place.first_row + warp * ROWS_PER_WARP + r;
        if (key >= tk) continue;
#pragma unroll
        for (int c = 0; c < DIMS_PER_LANE; ++c) {
            const int dim = lane + c * WARP_SIZE;
            if (dim < d) {
                dk[(long long)key * d + dim] = grad_k[r][c];
                dv[(long long)key * d + dim] = grad_v[r][c];
            }
        }
    }
}

// ------------------------------------------------------------------ the names Python looks up
extern "C" __global__ void attention_forward_f32(const float* q, const float* k, const float* v,
                                                 const unsigned char* padding, int causal, float scale, int n_heads,
                                                 int tq, int tk, int d, float* out, float* lse) {
    attention_forward<float>(q, k, v, padding, causal, scale, n_heads, tq, tk, d, out, lse);
}
extern "C" __global__ void attention_forward_f64(const double* q, const double* k, const double* v,
                                                 const unsigned char* padding, int causal, double scale, int n_heads,
                                                 int tq, int tk, int d, double* out, double* lse) {
    attention_forward<double>(q, k, v, padding, causal, scale, n_heads, tq, tk, d, out, lse);
}
extern "C" __global__ void attention_backward_delta_f32(const float* out, const float* grad_out, long long n_rows,
                                                        int d, float* delta) {
    attention_backward_delta<float>(out, grad_out, n_rows, d, delta);
}
extern "C" __global__ void attention_backward_delta_f64(const double* out, const double* grad_out, long long n_rows,
                                                        int d, double* delta) {
    attention_backward_delta<double>(out, grad_out, n_rows, d, delta);
}
extern "C" __global__ void attention_backward_dq_f32(const float* q, const float* k, const float* v,
                                                     const float* grad_out, const float* lse, const float* delta,
                                                     const unsigned char* padding, int causal, float scale,
                                                     int n_heads, int tq, int tk, int d, float* dq) {
    attention_backward_dq<float>(q, k, v, grad_out, lse, delta, padding, causal, scale, n_heads, tq, tk, d, dq);
}
extern "C" __global__ void attention_backward_dq_f64(const double* q, const double* k, const double* v,
                                                     const double* grad_out, const double* lse, const double* delta,
                                                     const unsigned char* padding, int causal, double scale,
                                                     int n_heads, int tq, int tk, int d, double* dq) {
    attention_backward_dq<double>(q, k, v, grad_out, lse, delta, padding, causal, scale, n_heads, tq, tk, d, dq);
}
extern "C" __global__ void attention_backward_dkdv_f32(const float* q, const float* k, const float* v,
                                                       const float* grad_out, const float* lse, const float* delta,
                                                       const unsigned char* padding, int causal, float scale,
                                                       int n_heads, int tq, int tk, int d, float* dk, float* dv) {
    attention_backward_dkdv<float>(q, k, v, grad_out, lse, delta, padding, causal, scale, n_heads, tq, tk, d, dk,
                                   dv);
}
extern "C" __global__ void attention_backward_dkdv_f64(const double* q, const double* k, const double* v,
                                                       const double* grad_out, const double* lse, const double* delta,
                                                       const unsigned char* padding, int causal, double scale,
                                                       int n_heads, int tq, int tk, int d, double* dk, double* dv) {
    attention_backward_dkdv<double>(q, k, v, grad_out, lse, delta, padding, causal, scale, n_heads, tq, tk, d, dk,
                                    dv);
}
