"""Launch geometry of the library's CUDA kernels (kernels/cuda/): grids, blocks and shared memory.

Plain Python with no CuPy in it, so the thread/block mapping can be read, printed and tested on any machine
(notebook 16 prints it for real shapes); kernels/cupy_gpu.py launches with exactly these numbers.

A CUDA launch names a grid of blocks and a block of threads. Threads of one block run on one streaming
multiprocessor (SM), share its fast on-chip shared memory, and synchronise with each other; blocks are
independent. Threads run in warps of 32 that execute together: a warp reading 32 neighbouring floats
makes one 128-byte memory transaction (a coalesced load), and its lanes can exchange registers with
shuffles. Hence the rules below: whole warps per block, neighbouring threads on neighbouring columns.
"""
from __future__ import annotations

# Launch constants that the .cu sources define too (constexpr there; tests/test_cuda_sources.py checks that
# both agree).
CUDA_CONSTANTS = {
    "attention.cu": {"ATTENTION_WARPS": 4, "BLOCK_ROWS": 8, "TILE": 32, "MAX_HEAD_DIM": 128},
    "layer_norm.cu": {"PARAMS_COLS": 32, "PARAMS_ROW_LANES": 8},
}

WARP = 32
COLUMNS_PER_THREAD = 4       # row kernels: a few independent loads in flight per thread hide memory latency
MAX_THREADS = 1024           # the CUDA limit per block
ELEMENTWISE_THREADS = 256
PARAMS_ROW_CHUNKS = 64       # layer norm dw/db: row chunks summed separately, then added (deterministic)
DEFAULT_SHARED_LIMIT = 48 * 1024  # dynamic shared memory a kernel may use without opting in

ATTENTION = CUDA_CONSTANTS["attention.cu"]
ATTENTION_THREADS = ATTENTION["ATTENTION_WARPS"] * WARP
LAYER_NORM = CUDA_CONSTANTS["layer_norm.cu"]


def row_threads(n_cols: int) -> int:
    """Threads of a one-block-per-row kernel: about COLUMNS_PER_THREAD columns each, a whole number of
    warps (every shuffle needs all 32 lanes), between 1 warp and 1024 threads."""
    warps = -(-n_cols // (COLUMNS_PER_THREAD * WARP))
    return min(MAX_THREADS, max(1, warps) * WARP)


def row_launch(n_rows: int, n_cols: int) -> tuple:
    """(grid, block) of softmax, cross-entropy and layer norm (dx): ONE BLOCK PER ROW."""
    return (n_rows,), (row_threads(n_cols),)


def attention_shared_bytes(head_dim: int, itemsize: int) -> int:
    """Dynamic shared memory of an attention block, as attention.cu's header sizes it: at most two row
    arrays [BLOCK_ROWS][D], two tile arrays [TILE][D + 1] (one padding column against bank conflicts) and
    two tile vectors [TILE], carved out of one buffer."""
    tile, block_rows = ATTENTION["TILE"], ATTENTION["BLOCK_ROWS"]
    return (2 * block_rows * head_dim + 2 * tile * (head_dim + 1) + 2 * tile) * itemsize


def attention_launch(n_rows: int, n_heads_total: int, head_dim: int, itemsize: int) -> tuple:
    """(grid, block, shared bytes) of the attention forward, dq and dkdv kernels: one block per BLOCK_ROWS
    rows (queries, or keys for dkdv) of every (batch, head), a flat grid."""
    blocks = -(-n_rows // ATTENTION["BLOCK_ROWS"]) * n_heads_total
    return (blocks,), (ATTENTION_THREADS,), attention_shared_bytes(head_dim, itemsize)


def attention_delta_launch(n_rows_total: int) -> tuple:
    """(grid, block) of attention_backward_delta: one warp per query row."""
    return (-(-n_rows_total // ATTENTION["ATTENTION_WARPS"]),), (ATTENTION_THREADS,)


def layer_norm_params_launch(n_rows: int, n_cols: int) -> tuple:
    """(grid, block, rows per chunk, chunks) of layer_norm_backward_params: blocks of PARAMS_COLS columns x
    PARAMS_ROW_LANES row lanes, one grid row per chunk of rows; the chunks' partial sums are added after."""
    rows_per_chunk = -(-n_rows // min(n_rows, PARAMS_ROW_CHUNKS))
    chunks = -(-n_rows // rows_per_chunk)
    grid = (-(-n_cols // LAYER_NORM["PARAMS_COLS"]), chunks)
    return grid, (LAYER_NORM["PARAMS_COLS"], LAYER_NORM["PARAMS_ROW_LANES"]), rows_per_chunk, chunks


def elementwise_blocks(n: int, multiprocessors: int) -> int:
    """Enough 256-thread blocks to fill every SM several times over; the kernels' grid-stride loops
    cover any n with any grid."""
    return max(1, min(-(-n // ELEMENTWISE_THREADS), 32 * multiprocessors))
