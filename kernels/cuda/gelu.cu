// GELU and its derivative, elementwise: the contract of kernels/reference/gelu.py.
//
//     exact: gelu(x) = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2,  gelu'(x) = Phi(x) + x * phi(x)
//     tanh:  gelu(x) ~ x * (1 + tanh u) / 2,  u = sqrt(2 / pi) * (x + 0.044715 x^3)   (GPT-2's curve)
//            gelu'(x) = (1 + tanh u) / 2 + x * (1 - tanh^2 u) / 2 * sqrt(2 / pi) * (1 + 3 * 0.044715 x^2)
//
// Thread/block mapping: a flat GRID-STRIDE loop. The launch uses enough 256-thread blocks to fill the GPU
// (cuda_launch.py caps the grid); thread t handles elements t, t + total_threads, ... Neighbouring threads
// touch neighbouring elements, so every warp access is coalesced, and any n works with any grid.
// No shared memory. The backward recomputes u from x instead of reading a saved tanh(u): an extra tanh
// is cheaper than another array's round trip through memory.
//
// Memory traffic, float32: forward 4 bytes read + 4 written per element, backward 8 read + 4 written.
// A few dozen flops per element: still bandwidth-bound on any recent GPU, so this runs at memory speed;
// the fused form's win over the NumPy reference is not writing its 6-8 temporary arrays.
#include "common.cuh"

template <typename T> struct GeluConstants {
    static constexpr T sqrt_2_over_pi = T(0.79788456080286535588);       // sqrt(2 / pi)
    static constexpr T inverse_sqrt_2 = T(0.70710678118654752440);       // 1 / sqrt(2)
    static constexpr T inverse_sqrt_2_pi = T(0.39894228040143267794);    // 1 / sqrt(2 pi)
    static constexpr T cubic = T(0.044715);
};

template <typename T> __device__ inline T tanh_curve_argument(T x) {
    return GeluConstants<T>::sqrt_2_over_pi * x * (T(1) + GeluConstants<T>::cubic * x * x);
}

template <typename T> __device__ inline T gelu(T x, int tanh_curve) {
    if (tanh_curve) return T(0.5) * x * (T(1) + tanh_(tanh_curve_argument(x)));
    return x * T(0.5) * (T(1) + erf_(x * GeluConstants<T>::inverse_sqrt_2));
}

template <typename T> __device__ inline T gelu_derivative(T x, int tanh_curve) {
    if (tanh_curve) {
        const T t = tanh_(tanh_curve_argument(x));
        const T du_dx = GeluConstants<T>::sqrt_2_over_pi * (T(1) + T(3) * GeluConstants<T>::cubic * x * x);
        return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du_dx;
    }
    const T cdf = T(0.5) * (T(1) + erf_(x * GeluConstants<T>::inverse_sqrt_2));
    const T pdf = exp_(T(-0.5) * x * x) * GeluConstants<T>::inverse_sqrt_2_pi;
    return cdf + x * pdf;
}

template <typename T>
__device__ void gelu_forward(const T* __restrict__ x, long long n, int tanh_curve, T* __restrict__ y) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = gelu(x[i], tanh_curve);
}

template <typename T>
__device__ void gelu_backward(const T* __restrict__ x, const T* __restrict__ grad_out, long long n, int tanh_curve,
                              T* __restrict__ grad_in) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        grad_in[i] = grad_out[i] * gelu_derivative(x[i], tanh_curve);
    }
}

extern "C" __global__ void gelu_forward_f32(const float* x, long long n, int tanh_curve, float* y) {
    gelu_forward<float>(x, n, tanh_curve, y);
}
extern "C" __global__ void gelu_forward_f64(const double* x, long long n, int tanh_curve, double* y) {
    gelu_forward<double>(x, n, tanh_curve, y);
}
extern "C" __global__ void gelu_backward_f32(const float* x, const float* grad_out, long long n, int tanh_curve,
                                             float* grad_in) {
    gelu_backward<float>(x, grad_out, n, tanh_curve, grad_in);
}
extern "C" __global__ void gelu_backward_f64(const double* x, const double* grad_out, long long n, int tanh_curve,
                                             double* grad_in) {
    gelu_backward<double>(x, grad_out, n, tanh_curve, grad_in);
}
