// Layer normalisation over the rows of an (N, D) row-major array, with scale w and shift b (D,): the
// contract of kernels/reference/layer_norm.py (BIASED variance: divide by D).
//
//     forward:  mean, var = mean((x - mean)^2), rstd = 1 / sqrt(var + eps), y = (x - mean) * rstd * w + b
//     backward: gx = g * w, x_hat = (x - mean) * rstd
//               dx = rstd * (gx - mean(gx) - x_hat * mean(gx * x_hat))      (per row)
//               dw = sum over rows of g * x_hat,  db = sum over rows of g     (over ALL rows)
//
// Forward and dx: ONE BLOCK PER ROW (gridDim.x = N), blockDim.x threads (a multiple of 32, from D, at most
// 1024) striding over the row, so every warp load is 32 neighbouring elements (coalesced). The forward
// makes three passes over its row: sum -> mean, sum of squared deviations -> var (two passes, because the
// one-pass E[x^2] - mean^2 loses every digit when |mean| >> std), then y. dx makes two: the two sums
// (one block_sum each), then dx. Only the first pass of each reads DRAM; the row
// (3 KiB at D = 768, float32) is re-read from L1/L2.
//
// dw and db are sums DOWN the columns, over every row: the one place where rows are not independent.
// Having each row's block add into dw with atomics would make the result depend on the order the blocks
// happen to run in (floating-point addition is not associative), so a second kernel sums them instead:
//   layer_norm_backward_params: gridDim = (ceil(D / 32), chunks), blockDim = (32, 8). Block (cx, cy)
//   owns 32 columns and one chunk of consecutive rows. Thread (tx, ty) walks the chunk's rows ty, ty + 8,
//   ... for column 32 cx + tx: the 32 threads of a warp share ty, so each load is 32 neighbouring
//   elements of one row (coalesced). The 8 partial sums of a column meet in shared memory (2 x 8 x 32
//   values) and thread ty = 0 adds them in a fixed order; the block writes one row of the (chunks, D)
//   partial sums, which Python adds up (a small deterministic reduction).
// Results are bit-identical from run to run.
//
// Memory traffic, float32, per element: forward 4 bytes read + 4 written (w, b, mean, rstd are per
// column or per row: negligible); backward 8 read + 4 written for dx, and another 8 read for dw, db
// (the params kernel re-reads g and x: a fused single kernel would save those 8 bytes but needs either
// atomics or a per-row-block buffer of partials; the two-kernel split is the readable version).
#include "common.cuh"

template <typename T>
__device__ void layer_norm_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T eps,
                                   int n_cols, T* __restrict__ y, T* __restrict__ mean_out, T* __restrict__ rstd_out) {
    const long long row = blockIdx.x;
    const T* x_row = x + row * n_cols;
    T* y_row = y + row * n_cols;

    T partial = T(0);
    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) partial += x_row[col];
    const T mean = block_sum(partial) / T(n_cols);

    partial = T(0);
    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) {
        const T centred = x_row[col] - mean;
        partial += centred * centred;
    }
    const T rstd = T(1) / sqrt_(block_sum(partial) / T(n_cols) + eps);

    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) {
        y_row[col] = (x_row[col] - mean) * rstd * w[col] + b[col];
    }
    if (threadIdx.x == 0) {
        mean_out[row] = mean;
        rstd_out[row] = rstd;
    }
}

template <typename T>
__device__ void layer_norm_backward_input(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                                          const T* __restrict__ mean, const T* __restrict__ rstd, int n_cols,
                                          T* __restrict__ dx) {
    const long long row = blockIdx.x;
    const T* g_row = g + row * n_cols;
    const T* x_row = x + row * n_cols;
    T* dx_row = dx + row * n_cols;
    const T row_mean = mean[row];
    const T row_rstd = rstd[row];

    T partial_gx = T(0);
    T partial_gx_xhat = T(0);
    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) {
        const T gx = g_row[col] * w[col];
        partial_gx += gx;
        partial_gx_xhat += gx * (x_row[col] - row_mean) * row_rstd;
    }
    const T mean_gx = block_sum(partial_gx) / T(n_cols);
    const T mean_gx_xhat = block_sum(partial_gx_xhat) / T(n_cols);

    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) {
        const T x_hat = (x_row[col] - row_mean) * row_rstd;
        dx_row[col] = row_rstd * (g_row[col] * w[col] - mean_gx - x_hat * mean_gx_xhat);
    }
}

constexpr int PARAMS_COLS = WARP_SIZE;  // columns per block of the params kernel (blockDim.x)
constexpr int PARAMS_ROW_LANES = 8;     // threads walking the rows of one column (blockDim.y)

template <typename T>
__device__ void layer_norm_backward_params(const T* __restrict__ g, const T* __restrict__ x,
                                           const T* __restrict__ mean, const T* __restrict__ rstd, int n_rows,
                                           int n_cols, int rows_per_chunk, T* __restrict__ dw_partial,
                                           T* __restrict__ db_partial) {
    __shared__ T dw_lanes[PARAMS_ROW_LANES][PARAMS_COLS];
    __shared__ T db_lanes[PARAMS_ROW_LANES][PARAMS_COLS];
    const int col = blockIdx.x * PARAMS_COLS + threadIdx.x;
    const int chunk = blockIdx.y;
    const int row_begin = chunk * rows_per_chunk;
    const int row_end = min(n_rows, row_begin + rows_per_chunk);

    T dw = T(0);
    T db = T(0);
    if (col < n_cols) {
        for (int row = row_begin + threadIdx.y; row < row_end; row += PARAMS_ROW_LANES) {
            const long long at = (long long)row * n_cols + col;
            dw += g[at] * (x[at] - mean[row]) * rstd[row];
            db += g[at];
        }
    }
    dw_lanes[threadIdx.y][threadIdx.x] = dw;
    db_lanes[threadIdx.y][threadIdx.x] = db;
    __syncthreads();
    if (threadIdx.y == 0 && col < n_cols) {
        for (int lane = 1; lane < PARAMS_ROW_LANES; ++lane) {
            dw += dw_lanes[lane][threadIdx.x];
            db += db_lanes[lane][threadIdx.x];
        }
        dw_partial[(long long)chunk * n_cols + col] = dw;
        db_partial[(long long)chunk * n_cols + col] = db;
    }
}

extern "C" __global__ void layer_norm_forward_f32(const float* x, const float* w, const float* b, float eps,
                                                  int n_cols, float* y, float* mean, float* rstd) {
    layer_norm_forward<float>(x, w, b, eps, n_cols, y, mean, rstd);
}
extern "C" __global__ void layer_norm_forward_f64(const double* x, const double* w, const double* b, double eps,
                                                  int n_cols, double* y, double* mean, double* rstd) {
    layer_norm_forward<double>(x, w, b, eps, n_cols, y, mean, rstd);
}
extern "C" __global__ void layer_norm_backward_input_f32(const float* g, const float* x, const float* w,
                                                         const float* mean, const float* rstd, int n_cols,
                                                         float* dx) {
    layer_norm_backward_input<float>(g, x, w, mean, rstd, n_cols, dx);
}
extern "C" __global__ void layer_norm_backward_input_f64(const double* g, const double* x, const double* w,
                                                         const double* mean, const double* rstd, int n_cols,
                                                         double* dx) {
    layer_norm_backward_input<double>(g, x, w, mean, rstd, n_cols, dx);
}
extern "C" __global__ void layer_norm_backward_params_f32(const float* g, const float* x, const float* mean,
                                                          const float* rstd, int n_rows, int n_cols,
                                                          int rows_per_chunk, float* dw_partial,
                                                          float* db_partial) {
    layer_norm_backward_params<float>(g, x, mean, rstd, n_rows, n_cols, rows_per_chunk, dw_partial, db_partial);
}
extern "C" __global__ void layer_norm_backward_params_f64(const double* g, const double* x, const double* mean,
                                                          const double* rstd, int n_rows, int n_cols,
                                                          int rows_per_chunk, double* dw_partial,
                                                          double* db_partial) {
    layer_norm_backward_params<double>(g, x, mean, rstd, n_rows, n_cols, rows_per_chunk, dw_partial, db_partial);
}
