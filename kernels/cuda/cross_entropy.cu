// Cross-entropy fused with log-softmax, from logits (N, C) and class ids (N,): the contract of
// kernels/reference/cross_entropy.py (class weights w, ignore_index, label smoothing eps).
//
// A row's target weights are q_c = eps / C * w_c + (c == t) * (1 - eps) * w_t (all zero when
// t == ignore_index), with total s = (1 - eps) * w_t + eps / C * sum(w). The kernels never build q:
//     forward:  lse = logsumexp(x),  loss = s * lse - (1 - eps) * w_t * x_t - eps / C * sum_c w_c x_c
//     backward: dx_c = grad_row * (s * exp(x_c - lse) - q_c)
// The forward returns lse, so the backward rebuilds softmax(x) = exp(x - lse) with no reduction at all.
//
// Thread/block mapping: ONE BLOCK PER ROW (gridDim.x = N), blockDim.x threads (a multiple of 32, from C,
// at most 1024) striding over the classes, so a warp reads 32 neighbouring logits per load (coalesced).
//   forward:  each thread keeps an online (max, sum exp) pair over its classes (plus sum w_c x_c when
//             eps > 0); block_reduce merges them (shuffles inside warps, 32 shared slots across warps);
//             thread 0 writes the row's two numbers.
//   backward: no reduction: every thread computes the row's scalars (s, w_t: a few cached loads) and
//             writes its classes of dx.
//
// Memory traffic, float32, per logit: forward 4 bytes read (plus 4 for w_c when eps > 0, which stays in
// L2: it is C numbers shared by every row) and 8 bytes written PER ROW, not per logit; backward 4 read +
// 4 written. With a 50k-word vocabulary the logits of a batch are the largest array of the model, and
// this fusion reads them once per pass: no softmax, log-softmax or one-hot array of the same size is
// ever written. Shared memory: block_reduce's 32 slots.
//
// Targets: the library's cross_entropy validates class ids before calling the kernels; a class id
// outside [0, C) that is not ignore_index still never reads out of bounds here: its loss and gradient
// are NaN, so the mistake shows instead of corrupting memory.
#include "common.cuh"

// s = sum_c q_c, and the target's own extra weight (1 - eps) * w_t. Valid t only.
template <typename T> struct TargetWeights {
    T total;
    T on_target;
};

template <typename T>
__device__ inline TargetWeights<T> target_weights(const T* w, const T* sum_w, long long t, T eps, int n_classes) {
    const T on_target = (T(1) - eps) * w[t];
    const T total = on_target + (eps == T(0) ? T(0) : eps / T(n_classes) * sum_w[0]);
    return {total, on_target};
}

template <typename T>
__device__ void cross_entropy_forward(const T* __restrict__ logits, const long long* __restrict__ targets,
                                      const T* __restrict__ w, const T* __restrict__ sum_w, long long ignore_index,
                                      T eps, int n_classes, T* __restrict__ losses, T* __restrict__ lse_out) {
    const long long row = blockIdx.x;
    const T* x = logits + row * n_classes;

    LogSumExp<T> state = lse_empty<T>();
    T weighted = T(0);  // sum_c w_c x_c, needed only with label smoothing
    for (int c = threadIdx.x; c < n_classes; c += blockDim.x) {
        state = lse_add(state, x[c]);
        if (eps != T(0)) weighted += w[c] * x[c];
    }
    state = block_logsumexp(state);
    if (eps != T(0)) weighted = block_sum(weighted);  // eps is the same for the whole block: no divergence

    if (threadIdx.x == 0) {
        const T lse = state.max + log_(state.sum);
        const long long t = targets[row];
        T loss;
        if (t == ignore_index) {
            loss = T(0);
        } else if (t < 0 || t >= n_classes) {
            loss = quiet_nan<T>();
        } else {
            const TargetWeights<T> q = target_weights(w, sum_w, t, eps, n_classes);
            loss = q.total * lse - q.on_target * x[t];
            if (eps != T(0)) loss -= eps / T(n_classes) * weighted;
        }
        losses[row] = loss;
        lse_out[row] = lse;
    }
}

template <typename T>
__device__ void cross_entropy_backward(const T* __restrict__ logits, const T* __restrict__ lse,
                                       const long long* __restrict__ targets, const T* __restrict__ w,
                                       const T* __restrict__ sum_w, const T* __restrict__ grad_rows,
                                       long long ignore_index, T eps, int n_classes, T* __restrict__ dx) {
    const long long row = blockIdx.x;
    const T* x = logits + row * n_classes;
    T* dx_row = dx + row * n_classes;
    const long long t = targets[row];

    if (t == ignore_index || t < 0 || t >= n_classes) {  // padding: exactly 0; a bad class id: NaN
        const T fill = (t == ignore_index) ? T(0) : quiet_nan<T>();
        for (int c = threadIdx.x; c < n_classes; c += blockDim.x) dx_row[c] = fill;
        return;
    }
    const TargetWeights<T> q = target_weights(w, sum_w, t, eps, n_classes);
    const T g = grad_rows[row];
    const T row_lse = lse[row];
    const T spread = eps / T(n_classes);  // q_c = spread * w_c off the target
    for (int c = threadIdx.x; c < n_classes; c += blockDim.x) {
        T q_c = (eps == T(0)) ? T(0) : spread * w[c];
        if (c == t) q_c += q.on_target;
        dx_row[c] = g * (q.total * exp_(x[c] - row_lse) - q_c);
    }
}

extern "C" __global__ void cross_entropy_forward_f32(const float* logits, const long long* targets, const float* w,
                                                     const float* sum_w, long long ignore_index, float eps,
                                                     int n_classes, float* losses, float* lse) {
    cross_entropy_forward<float>(logits, targets, w, sum_w, ignore_index, eps, n_classes, losses, lse);
}
extern "C" __global__ void cross_entropy_forward_f64(const double* logits, const long long* targets, const double* w,
                                                     const double* sum_w, long long ignore_index, double eps,
                                                     int n_classes, double* losses, double* lse) {
    cross_entropy_forward<double>(logits, targets, w, sum_w, ignore_index, eps, n_classes, losses, lse);
}
extern "C" __global__ void cross_entropy_backward_f32(const float* logits, const float* lse, const long long* targets,
                                                      const float* w, const float* sum_w, const float* grad_rows,
                                                      long long ignore_index, float eps, int n_classes, float* dx) {
    cross_entropy_backward<float>(logits, lse, targets, w, sum_w, grad_rows, ignore_index, eps, n_classes, dx);
}
extern "C" __global__ void cross_entropy_backward_f64(const double* logits, const double* lse, const long long* targets,
                                                      const double* w, const double* sum_w, const double* grad_rows,
                                                      long long ignore_index, double eps, int n_classes, double* dx) {
    cross_entropy_backward<double>(logits, lse, targets, w, sum_w, grad_rows, ignore_index, eps, n_classes, dx);
}
