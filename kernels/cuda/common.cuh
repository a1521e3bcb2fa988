// Building blocks shared by every kernel in this folder: math in the input's precision, warp and block
// reductions, and the online log-sum-exp that softmax, cross-entropy and attention are built on.
//
// No #include: CuPy compiles these sources at run time with NVRTC, which has no C/C++ standard headers;
// everything used here (expf, __shfl_xor_sync, ...) is built into the CUDA compiler itself.
//
// The kernels are templates over the element type T (float or double), and each .cu file instantiates
// them under plain `extern "C"` names (softmax_forward_f32, softmax_forward_f64, ...) that Python looks up
// by string. float inputs are computed and accumulated in float, double inputs in double: the same
// precision as the NumPy reference computes them in.
//
// Each .cu file includes this header once; cupy_gpu.py pastes it in place of the #include before
// compiling (see _source_text there), so it has no include guard: it is never included twice.

constexpr int WARP_SIZE = 32;
constexpr unsigned FULL_WARP = 0xffffffffu;  // every lane takes part in a shuffle

// ------------------------------------------------------------------ math in T's own precision
// Explicit overloads, so a float kernel never silently calls the double function (which would be 2x-64x
// slower on a GPU, depending on the model: most have far fewer float64 units than float32 units).
__device__ inline float exp_(float x) { return expf(x); }
__device__ inline double exp_(double x) { return exp(x); }
__device__ inline float log_(float x) { return logf(x); }
__device__ inline double log_(double x) { return log(x); }
__device__ inline float sqrt_(float x) { return sqrtf(x); }
__device__ inline double sqrt_(double x) { return sqrt(x); }
__device__ inline float tanh_(float x) { return tanhf(x); }
__device__ inline double tanh_(double x) { return tanh(x); }
__device__ inline float erf_(float x) { return erff(x); }
__device__ inline double erf_(double x) { return erf(x); }
__device__ inline float max_(float a, float b) { return fmaxf(a, b); }
__device__ inline double max_(double a, double b) { return fmax(a, b); }

// -inf and NaN from their bit patterns (the INFINITY macro lives in a header NVRTC does not have).
template <typename T> __device__ inline T negative_infinity();
template <> __device__ inline float negative_infinity<float>() { return __int_as_float(0xff800000); }
template <> __device__ inline double negative_infinity<double>() { return __longlong_as_double(0xfff0000000000000LL); }
template <typename T> __device__ inline T quiet_nan();
template <> __device__ inline float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ inline double quiet_nan<double>() { return __longlong_as_double(0x7ff8000000000000LL); }

// ------------------------------------------------------------------ the online log-sum-exp
// (max, sum) stands for the number max + log(sum): sum = sum over the values seen of exp(value - max).
// Adding one value or merging two partial states never needs the other values again, which is what lets
// one pass (and any split of the work among threads) compute a numerically stable log-sum-exp:
//     merge((m1, s1), (m2, s2)) = (m, s1 * exp(m1 - m) + s2 * exp(m2 - m)),  m = max(m1, m2)
// The factor exp(m_old - m) <= 1 re-expresses a sum taken against an old max against the new one.
template <typename T> struct LogSumExp {
    T max;
    T sum;
};

template <typename T> __device__ inline LogSumExp<T> lse_empty() { return {negative_infinity<T>(), T(0)}; }

// One exp per value: exp(x - max) when the max stays, exp(old max - x) when x becomes the new max.
// -inf values add exactly 0; NaN propagates (as in the NumPy reference), never silently dropped.
template <typename T> __device__ inline LogSumExp<T> lse_add(LogSumExp<T> state, T x) {
    if (x > state.max) {
        state.sum = state.sum * exp_(state.max - x) + T(1);
        state.max = x;
    } else {
        state.sum += (x == negative_infinity<T>()) ? T(0) : exp_(x - state.max);
    }
    return state;
}

template <typename T> __device__ inline LogSumExp<T> lse_merge(LogSumExp<T> a, LogSumExp<T> b) {
    const T m = max_(a.max, b.max);
    if (m == negative_infinity<T>()) return lse_empty<T>();  // both empty: exp(-inf - -inf) would be NaN
    return {m, a.sum * exp_(a.max - m) + b.sum * exp_(b.max - m)};
}

// ------------------------------------------------------------------ reductions
// A warp reduces in 5 shuffle steps (offsets 16, 8, 4, 2, 1): after the step with offset o, every lane
// holds the combination of a group of 2o lanes, and after the last step every lane holds the result (the
// "butterfly": nothing goes through shared memory). A value of any type reduces if it can be shuffled.
__device__ inline float shuffle_xor(float v, int offset) { return __shfl_xor_sync(FULL_WARP, v, offset); }
__device__ inline double shuffle_xor(double v, int offset) { return __shfl_xor_sync(FULL_WARP, v, offset); }
template <typename T> __device__ inline LogSumExp<T> shuffle_xor(LogSumExp<T> v, int offset) {
    return {shuffle_xor(v.max, offset), shuffle_xor(v.sum, offset)};
}

struct Add {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    template <typename T> __device__ T operator()(T a, T b) const { return max_(a, b); }
};
struct MergeLogSumExp {
    template <typename T> __device__ LogSumExp<T> operator()(LogSumExp<T> a, LogSumExp<T> b) const {
        return lse_merge(a, b);
    }
};

template <typename V, typename Combine> __device__ inline V warp_reduce(V value, Combine combine) {
    for (int offset = WARP_SIZE / 2; offset > 0; offset /= 2) value = combine(value, shuffle_xor(value, offset));
    return value;
}

template <typename T> __device__ inline T warp_sum(T v) { return warp_reduce(v, Add()); }
template <typename T> __device__ inline T warp_max(T v) { return warp_reduce(v, Max()); }

// A whole block reduces in two levels: each warp reduces its 32 values with shuffles, lane 0 of each warp
// writes its warp's result to shared memory (at most 1024 / 32 = 32 slots), and warp 0 reduces those.
// Every thread gets the result. `identity` fills the slots of warps that do not exist (combine(identity, v)
// must be v). blockDim.x must be a multiple of 32: every shuffle names all 32 lanes (Python checks this).
// Three __syncthreads: the slots are written before warp 0 reads them, the result is written before
// everyone reads it, and everyone has read it before the next call may overwrite it.
template <typename V, typename Combine> __device__ V block_reduce(V value, Combine combine, V identity) {
    __shared__ V warp_results[WARP_SIZE];
    __shared__ V result;
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    value = warp_reduce(value, combine);
    if (lane == 0) warp_results[warp] = value;
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x / WARP_SIZE;
        value = warp_reduce(lane < warps ? warp_results[lane] : identity, combine);
        if (lane == 0) result = value;
    }
    __syncthreads();
    const V total = result;
    __syncthreads();
    return total;
}

template <typename T> __device__ inline T block_sum(T v) { return block_reduce(v, Add(), T(0)); }
template <typename T> __device__ inline LogSumExp<T> block_logsumexp(LogSumExp<T> v) {
    return block_reduce(v, MergeLogSumExp(), lse_empty<T>());
}
