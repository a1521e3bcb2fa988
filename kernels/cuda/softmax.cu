// Softmax over the rows of an (n_rows, n_cols) row-major array, forward and backward: the contract of
// kernels/reference/softmax.py.
//
//     forward:  y = exp(x - m) / sum(exp(x - m)),  m = max(x)
//     backward: dx = y * (g - sum(g * y))
//
// Thread/block mapping: ONE BLOCK PER ROW (gridDim.x = n_rows), blockDim.x threads (a multiple of 32,
// chosen in cuda_launch.py from n_cols, at most 1024). Thread t handles columns t, t + blockDim.x, ...: at
// each step the 32 threads of a warp read 32 neighbouring elements, so every load is one coalesced
// 128-byte transaction (float32). A row's reductions go warp by warp through shuffles and then across
// warps through 32 slots of shared memory (block_reduce in common.cuh): no atomics, and the same
// order of additions on every run.
//
// Forward, two passes over the row:
//   1. every thread keeps an online (max, sum of exp) pair over its columns, and the pairs are merged
//      across the block: max and normaliser in ONE read of the row (the online softmax, common.cuh);
//   2. every thread writes y = exp(x - max) / sum for its columns.
// Backward, two passes: block-reduce sum(g * y), then write dx.
//
// Memory traffic, float32: the forward reads x twice and writes y once, but a row (4 KiB at 1024
// columns) is still in L1/L2 for the second read, so DRAM sees about 4 bytes read + 4 written per
// element: the minimum for any softmax. The backward moves 8 read + 4 written per element. Softmax does
// a handful of flops per element, far below what the GPU can do per byte: it is bandwidth-bound, and
// the fusion (no temporaries, each element loaded from DRAM once) is the whole optimisation.
//
// Shared memory: only the 32-slot scratch of block_reduce. A row with fewer columns than threads
// leaves the extra threads idle (their identity values do not change the reductions); rows of 32 or
// fewer columns would be better served by one warp per row, which this readable version does not do.
#include "common.cuh"

template <typename T>
__device__ void softmax_forward(const T* __restrict__ x, T* __restrict__ y, int n_cols) {
    const long long row_start = (long long)blockIdx.x * n_cols;
    const T* x_row = x + row_start;
    T* y_row = y + row_start;

    LogSumExp<T> state = lse_empty<T>();
    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) state = lse_add(state, x_row[col]);
    state = block_logsumexp(state);

    const T inverse_sum = T(1) / state.sum;
    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) {
        y_row[col] = exp_(x_row[col] - state.max) * inverse_sum;
    }
}

template <typename T>
__device__ void softmax_backward(const T* __restrict__ y, const T* __restrict__ g, T* __restrict__ dx, int n_cols) {
    const long long row_start = (long long)blockIdx.x * n_cols;
    const T* y_row = y + row_start;
    const T* g_row = g + row_start;
    T* dx_row = dx + row_start;

    T partial = T(0);
    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) partial += g_row[col] * y_row[col];
    const T g_dot_y = block_sum(partial);

    for (int col = threadIdx.x; col < n_cols; col += blockDim.x) {
        dx_row[col] = y_row[col] * (g_row[col] - g_dot_y);
    }
}

extern "C" __global__ void softmax_forward_f32(const float* x, float* y, int n_cols) {
    softmax_forward<float>(x, y, n_cols);
}
extern "C" __global__ void softmax_forward_f64(const double* x, double* y, int n_cols) {
    softmax_forward<double>(x, y, n_cols);
}
extern "C" __global__ void softmax_backward_f32(const float* y, const float* g, float* dx, int n_cols) {
    softmax_backward<float>(y, g, dx, n_cols);
}
extern "C" __global__ void softmax_backward_f64(const double* y, const double* g, double* dx, int n_cols) {
    softmax_backward<double>(y, g, dx, n_cols);
}
