"""The kernels on an NVIDIA GPU, through CuPy: the same contracts as kernels/reference/, on cupy arrays.

Matrix products go to cuBLAS (cupy.matmul). Everything else runs the library's OWN CUDA kernels, kept
as readable sources in kernels/cuda/ (one .cu file per kernel family; read each file's header for its
thread/block mapping and memory traffic). Each source is compiled once per process by NVRTC, CuPy's
run-time compiler, into a cupy.RawModule holding a float32 and a float64 version of every kernel
(NAME_f32, NAME_f64); CuPy also caches the binary on disk, so a later process skips the compile.

Importing this module without CuPy, without a working NVIDIA driver, or without a visible GPU raises
ImportError with the reason, so asking for the 'cupy' kernel set fails with a message, never a crash.

Arrays are made C-contiguous before a launch (the kernels index rows as row * n_cols + col). Scalars
are passed as NumPy scalars of the exact C type of the kernel's parameter: CuPy sends a plain Python
float as a double, which a `float` parameter would misread.
"""
import functools
import math
from pathlib import Path

import numpy as np

from .cuda_launch import (ATTENTION, DEFAULT_SHARED_LIMIT, ELEMENTWISE_THREADS, attention_delta_launch, attention_launch,
                          elementwise_blocks, layer_norm_params_launch, row_launch)
from .reference import quantized_matmul as _quantized
from .reference.gelu import _check as _check_gelu_curve

try:
    import cupy
except ImportError as error:
    raise ImportError(
        "the 'cupy' kernel set needs CuPy, which is not installed: on a machine with an NVIDIA GPU run "
        "`pip install -e '.[gpu]'`; without a GPU use set_kernels('numba') or set_kernels('reference')"
    ) from error

try:
    _DEVICE_COUNT = cupy.cuda.runtime.getDeviceCount()
except RuntimeError as error:  # cupy's CUDARuntimeError: no driver, or a driver too old for CuPy's CUDA
    raise ImportError(
        f"the 'cupy' kernel set found CuPy but could not start CUDA ({error}): check that an NVIDIA driver "
        "is installed (`nvidia-smi`) and is new enough for the CUDA version of the installed cupy-cuda* wheel"
    ) from error
if _DEVICE_COUNT == 0:
    raise ImportError("the 'cupy' kernel set found CuPy and a driver but no GPU: check `nvidia-smi` and "
                      "CUDA_VISIBLE_DEVICES")

CUDA_DIR = Path(__file__).resolve().parent / "cuda"

# Every kernel this module launches, by source file. Each exists as NAME_f32 and NAME_f64
# (tests/test_cuda_sources.py checks every name against the sources, without a GPU).
KERNELS = {
    "softmax.cu": ("softmax_forward", "softmax_backward"),
    "cross_entropy.cu": ("cross_entropy_forward", "cross_entropy_backward"),
    "layer_norm.cu": ("layer_norm_forward", "layer_norm_backward_input", "layer_norm_backward_params"),
    "attention.cu": ("attention_forward", "attention_backward_delta", "attention_backward_dq",
                     "attention_backward_dkdv"),
    "gelu.cu": ("gelu_forward", "gelu_backward"),
}
SUFFIXES = {"float32": "f32", "float64": "f64"}

_SOURCE_OF = {name: source for source, names in KERNELS.items() for name in names}
_NULL = np.uintp(0)  # an 8-byte zero: a kernel's pointer parameter receives it as nullptr


# ------------------------------------------------------------------ compiling and launching
def _source_text(source: str) -> str:
    """The .cu text with common.cuh pasted in place of its #include. NVRTC could find the header with -I,
    but CuPy's on-disk cache is keyed by the source text: an edit to the header alone would be missed."""
    header = (CUDA_DIR / "common.cuh").read_text(encoding="utf-8")
    return (CUDA_DIR / source).read_text(encoding="utf-8").replace('#include "common.cuh"', header)


@functools.lru_cache(maxsize=None)
def _module(source: str):
    return cupy.RawModule(code=_source_text(source), options=("-std=c++17",))


@functools.lru_cache(maxsize=None)
def _kernel(name: str, dtype: np.dtype):
    """The compiled kernel NAME_f32 or NAME_f64 (its module compiles on first use)."""
    return _module(_SOURCE_OF[name]).get_function(f"{name}_{SUFFIXES[dtype.name]}")


@functools.lru_cache(maxsize=None)
def _device_attribute(name: str) -> int:
    return cupy.cuda.Device().attributes[name]


def _float_dtype(op: str, array) -> np.dtype:
    if array.dtype.name not in SUFFIXES:
        raise TypeError(f"{op} (cupy kernels): expected float32 or float64, got {array.dtype}; cast with .float()")
    return array.dtype


def _rows(op: str, a, dtype=None):
    """a as a C-contiguous 2-D cupy array of rows."""
    a = cupy.ascontiguousarray(a, dtype=dtype)
    if a.ndim != 2:
        raise ValueError(f"{op} kernel: expected a 2-D array of rows, got shape {a.shape}")
    _float_dtype(op, a)
    return a


# ------------------------------------------------------------------ matmul: cuBLAS
def matmul(a, b):
    """(M, K) @ (K, N), or a batch (Bt, M, K) @ (Bt, K, N): cuBLAS GEMM (strided-batched for 3-D).
    float32 stays true float32 (CuPy uses TF32 tensor cores only when CUPY_TF32=1 is set)."""
    return cupy.matmul(a, b)


# ------------------------------------------------------------------ embedding
def embedding_backward(ids, grad_out, num_rows: int):
    """(num_rows, D): each row of grad_out added into the table row its id picks, repeats summed
    (kernels/reference/embedding.py). cupy.add.at does the scatter-add with atomic adds, one per element."""
    rows = cupy.ascontiguousarray(grad_out).reshape(-1, grad_out.shape[-1])
    grad = cupy.zeros((num_rows, rows.shape[1]), dtype=rows.dtype)
    cupy.add.at(grad, cupy.asarray(ids).reshape(-1), rows)
    return grad


# ------------------------------------------------------------------ softmax
def softmax_forward(x):
    x = _rows("softmax", x)
    y = cupy.empty_like(x)
    n_rows, n_cols = x.shape
    if n_rows and n_cols:
        _kernel("softmax_forward", x.dtype)(*row_launch(n_rows, n_cols), (x, y, np.int32(n_cols)))
    return y


def softmax_backward(y, g):
    y = _rows("softmax", y)
    g = _rows("softmax", g, y.dtype)
    if g.shape != y.shape:
        raise ValueError(f"softmax kernel: gradient shape {g.shape} differs from output shape {y.shape}")
    dx = cupy.empty_like(y)
    n_rows, n_cols = y.shape
    if n_rows and n_cols:
        _kernel("softmax_backward", y.dtype)(*row_launch(n_rows, n_cols), (y, g, dx, np.int32(n_cols)))
    return dx


# ------------------------------------------------------------------ cross-entropy
def _class_targets(logits, targets, class_weight):
    """(targets int64 (N,), class weights (C,), their sum as a 1-element array: kept on the GPU, no sync)."""
    n_rows, n_classes = logits.shape
    if n_classes == 0:
        raise ValueError(f"cross_entropy kernel: logits {logits.shape} have no classes")
    targets = cupy.ascontiguousarray(targets, dtype=cupy.int64)
    if targets.shape != (n_rows,):
        raise ValueError(f"cross_entropy kernel: targets must have shape ({n_rows},) for logits {logits.shape}, "
                         f"got {targets.shape}")
    if class_weight is None:
        weight = cupy.ones(n_classes, dtype=logits.dtype)
    else:
        weight = cupy.ascontiguousarray(class_weight, dtype=logits.dtype)
        if weight.shape != (n_classes,):
            raise ValueError(f"cross_entropy kernel: class_weight must have shape ({n_classes},), got {weight.shape}")
    weight_sum = weight.sum(dtype=cupy.float64).astype(logits.dtype).reshape(1)
    return targets, weight, weight_sum


def cross_entropy_forward(logits, targets, class_weight, ignore_index=-100, label_smoothing=0.0):
    """(per-row losses (N,), per-row logsumexp (N,)); ignored rows have loss 0."""
    logits = _rows("cross_entropy", logits)
    targets, weight, weight_sum = _class_targets(logits, targets, class_weight)
    n_rows, n_classes = logits.shape
    losses = cupy.empty(n_rows, dtype=logits.dtype)
    lse = cupy.empty(n_rows, dtype=logits.dtype)
    if n_rows:
        _kernel("cross_entropy_forward", logits.dtype)(
            *row_launch(n_rows, n_classes),
            (logits, targets, weight, weight_sum, np.int64(ignore_index), logits.dtype.type(label_smoothing),
             np.int32(n_classes), losses, lse),
        )
    return losses, lse


def cross_entropy_backward(logits, lse, targets, class_weight, grad_rows, ignore_index=-100, label_smoothing=0.0):
    """d(sum_i grad_rows[i] * loss_i) / d logits, shape (N, C)."""
    logits = _rows("cross_entropy", logits)
    targets, weight, weight_sum = _class_targets(logits, targets, class_weight)
    n_rows, n_classes = logits.shape
    lse = cupy.ascontiguousarray(lse, dtype=logits.dtype)
    grad_rows = cupy.ascontiguousarray(cupy.broadcast_to(cupy.asarray(grad_rows, dtype=logits.dtype), (n_rows,)))
    dx = cupy.empty_like(logits)
    if n_rows:
        _kernel("cross_entropy_backward", logits.dtype)(
            *row_launch(n_rows, n_classes),
            (logits, lse, targets, weight, weight_sum, grad_rows, np.int64(ignore_index),
             logits.dtype.type(label_smoothing), np.int32(n_classes), dx),
        )
    return dx


# ------------------------------------------------------------------ layer norm
def _per_column(a, n_cols: int, dtype):
    return cupy.ascontiguousarray(cupy.broadcast_to(cupy.asarray(a, dtype=dtype), (n_cols,)))


def layer_norm_forward(x, weight, bias, eps=1e-5):
    """(y, mean (N,), rstd (N,))."""
    x = _rows("layer_norm", x)
    n_rows, n_cols = x.shape
    weight = _per_column(weight, n_cols, x.dtype)
    bias = _per_column(bias, n_cols, x.dtype)
    y = cupy.empty_like(x)
    mean = cupy.empty(n_rows, dtype=x.dtype)
    rstd = cupy.empty(n_rows, dtype=x.dtype)
    if n_rows and n_cols:
        _kernel("layer_norm_forward", x.dtype)(
            *row_launch(n_rows, n_cols),
            (x, weight, bias, x.dtype.type(eps), np.int32(n_cols), y, mean, rstd),
        )
    elif n_rows:  # no features: mean and rstd of an empty row, as NumPy gives them
        mean.fill(np.nan)
        rstd.fill(np.nan)
    return y, mean, rstd


def layer_norm_backward(g, x, weight, mean, rstd):
    """(dx, dweight, dbias): dx by one block per row; dweight and dbias as per-chunk column sums
    (layer_norm_backward_params), added here in a fixed order."""
    x = _rows("layer_norm", x)
    n_rows, n_cols = x.shape
    g = cupy.ascontiguousarray(g, dtype=x.dtype).reshape(n_rows, n_cols)
    weight = _per_column(weight, n_cols, x.dtype)
    mean = cupy.ascontiguousarray(mean, dtype=x.dtype)
    rstd = cupy.ascontiguousarray(rstd, dtype=x.dtype)
    dx = cupy.empty_like(x)
    if not (n_rows and n_cols):
        return dx, cupy.zeros(n_cols, dtype=x.dtype), cupy.zeros(n_cols, dtype=x.dtype)
    _kernel("layer_norm_backward_input", x.dtype)(
        *row_launch(n_rows, n_cols), (g, x, weight, mean, rstd, np.int32(n_cols), dx),
    )
    grid, block, rows_per_chunk, chunks = layer_norm_params_launch(n_rows, n_cols)
    dw_partial = cupy.empty((chunks, n_cols), dtype=x.dtype)
    db_partial = cupy.empty((chunks, n_cols), dtype=x.dtype)
    _kernel("layer_norm_backward_params", x.dtype)(
        grid, block,
        (g, x, mean, rstd, np.int32(n_rows), np.int32(n_cols), np.int32(rows_per_chunk), dw_partial, db_partial),
    )
    return dx, dw_partial.sum(axis=0), db_partial.sum(axis=0)


# ------------------------------------------------------------------ attention
def _attention_inputs(q, k, v, padding_mask, scale):
    q, k, v = (cupy.ascontiguousarray(a) for a in (q, k, v))
    dtype = _float_dtype("attention", q)
    if k.dtype != dtype or v.dtype != dtype:
        raise TypeError(f"attention (cupy kernels): q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention kernel: q (B, H, Tq, D) and k, v (B, H, Tk, D) expected, got {q.shape}, "
                         f"{k.shape}, {v.shape}")
    head_dim = q.shape[3]
    if head_dim > ATTENTION["MAX_HEAD_DIM"]:
        raise ValueError(f"attention (cupy kernels): head dim {head_dim} exceeds {ATTENTION['MAX_HEAD_DIM']} "
                         "(each lane holds MAX_HEAD_DIM / 32 accumulator registers); use more heads of a smaller "
                         "dim, or the numba/reference kernels")
    if padding_mask is None:
        padding = _NULL
    else:
        padding = cupy.ascontiguousarray(padding_mask, dtype=cupy.bool_)
        if padding.shape != (q.shape[0], k.shape[2]):
            raise ValueError(f"attention kernel: padding_mask must be (B, Tk) = {(q.shape[0], k.shape[2])}, "
                             f"got {padding.shape}")
    scale = 1 / math.sqrt(head_dim) if scale is None else scale
    return q, k, v, padding, dtype.type(scale)


def _launch_attention(name: str, dtype: np.dtype, n_rows: int, n_heads_total: int, head_dim: int, args):
    """One block per BLOCK_ROWS rows of every (batch, head), a flat grid; dynamic shared memory sized as
    in attention.cu's header, opting in above the default 48 KiB (float64 with a large head dim)."""
    kernel = _kernel(name, dtype)
    grid, block, shared = attention_launch(n_rows, n_heads_total, head_dim, dtype.itemsize)
    if shared > DEFAULT_SHARED_LIMIT:
        limit = _device_attribute("MaxSharedMemoryPerBlockOptin")
        if shared > limit:
            raise ValueError(f"attention (cupy kernels): head dim {head_dim} in {dtype} needs {shared} bytes of shared "
                             f"memory per block, this GPU allows {limit}; use float32 or a smaller head dim")
        kernel.max_dynamic_shared_size_bytes = shared
    kernel(grid, block, args, shared_mem=shared)


def attention_forward(q, k, v, causal=False, padding_mask=None, scale=None):
    """(output (B, H, Tq, D), lse (B, H, Tq)); lse is -inf for a query that sees no key."""
    q, k, v, padding, scale = _attention_inputs(q, k, v, padding_mask, scale)
    batch, heads, tq, head_dim = q.shape
    tk = k.shape[2]
    out = cupy.empty_like(q)
    lse = cupy.empty((batch, heads, tq), dtype=q.dtype)
    if lse.size:
        _launch_attention("attention_forward", q.dtype, tq, batch * heads, head_dim,
                          (q, k, v, padding, np.int32(bool(causal)), scale, np.int32(heads), np.int32(tq),
                           np.int32(tk), np.int32(head_dim), out, lse))
    return out, lse


def attention_backward(q, k, v, out, lse, grad_out, causal=False, padding_mask=None, scale=None):
    """(dq, dk, dv): delta_i = rowsum(dO_i * O_i) first, then dq (query blocks stream key tiles) and dk, dv
    (key blocks stream query tiles), each recomputing the probabilities from the saved lse."""
    q, k, v, padding, scale = _attention_inputs(q, k, v, padding_mask, scale)
    batch, heads, tq, head_dim = q.shape
    tk = k.shape[2]
    out = cupy.ascontiguousarray(out, dtype=q.dtype)
    grad_out = cupy.ascontiguousarray(grad_out, dtype=q.dtype)
    lse = cupy.ascontiguousarray(lse, dtype=q.dtype)
    dq, dk, dv = cupy.empty_like(q), cupy.empty_like(k), cupy.empty_like(v)
    options = (padding, np.int32(bool(causal)), scale, np.int32(heads), np.int32(tq), np.int32(tk),
               np.int32(head_dim))
    delta = cupy.empty((batch, heads, tq), dtype=q.dtype)
    rows = batch * heads * tq
    if rows:
        _kernel("attention_backward_delta", q.dtype)(
            *attention_delta_launch(rows), (out, grad_out, np.int64(rows), np.int32(head_dim), delta),
        )
        _launch_attention("attention_backward_dq", q.dtype, tq, batch * heads, head_dim,
                          (q, k, v, grad_out, lse, delta) + options + (dq,))
    if batch * heads * tk:
        _launch_attention("attention_backward_dkdv", q.dtype, tk, batch * heads, head_dim,
                          (q, k, v, grad_out, lse, delta) + options + (dk, dv))
    return dq, dk, dv


# ------------------------------------------------------------------ GELU
def _gelu_blocks(n: int) -> int:
    return elementwise_blocks(n, _device_attribute("MultiProcessorCount"))


def gelu_forward(x, approximate: str = "none"):
    _check_gelu_curve(approximate)
    flat = cupy.ascontiguousarray(x).reshape(-1)
    dtype = _float_dtype("gelu", flat)
    out = cupy.empty_like(flat)
    if flat.size:
        _kernel("gelu_forward", dtype)(
            (_gelu_blocks(flat.size),), (ELEMENTWISE_THREADS,),
            (flat, np.int64(flat.size), np.int32(approximate == "tanh"), out),
        )
    return out.reshape(x.shape)


def gelu_backward(x, grad_out, approximate: str = "none"):
    _check_gelu_curve(approximate)
    flat = cupy.ascontiguousarray(x).reshape(-1)
    dtype = _float_dtype("gelu", flat)
    grad = cupy.ascontiguousarray(grad_out, dtype=dtype).reshape(-1)
    grad_in = cupy.empty_like(flat)
    if flat.size:
        _kernel("gelu_backward", dtype)(
            (_gelu_blocks(flat.size),), (ELEMENTWISE_THREADS,),
            (flat, grad, np.int64(flat.size), np.int32(approximate == "tanh"), grad_in),
        )
    return grad_in.reshape(x.shape)


# ------------------------------------------------------------------ quantized weights: the reference, on the GPU
def int8_matmul(a, b):
    """int8 (M, K) x int8 (N, K) -> int32 (M, N) = a @ b.T, exactly: the reference's widen-to-int32-then-multiply,
    run by CuPy on the cupy arrays (cupy.matmul of int32 matrices; integer sums have no rounding to differ in)."""
    return _quantized.int8_matmul(a, b)


def quantized_matmul(x, values, scales, zero_points, bits: int, group_size: int, activations: str = "float32"):
    """x @ W.T for a quantized W (kernels/reference/quantized_matmul.py): W is dequantized on the GPU into a
    float32 matrix, then one cuBLAS sgemm. The simple version, not the fused one: it writes and reads back the
    4-byte W that the Numba kernel never builds. activations="int16" runs the reference's integer sums on the
    GPU (CuPy's integer matmul, not cuBLAS): the same numbers as the CPU kernels, not a faster path."""
    return _quantized.quantized_matmul(x, values, scales, zero_points, bits, group_size, activations)


__all__ = [
    "matmul", "softmax_forward", "softmax_backward", "cross_entropy_forward", "cross_entropy_backward",
    "layer_norm_forward", "layer_norm_backward", "attention_forward", "attention_backward", "gelu_forward",
    "gelu_backward", "int8_matmul", "quantized_matmul",
]
