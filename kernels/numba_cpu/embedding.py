"""The embedding backward (scatter-add of gradient rows by token id), compiled with Numba.

One serial pass: for each token, add its gradient row into its id's row. Running it over tokens in
parallel would race (two threads adding into the row of a repeated token; tests/broken_kernels_*.py show
what a race does), and splitting the work by feature columns instead leaves each thread only D / threads
numbers per row: for the small D of an embedding the launch costs more than it saves. Serially it took
21 us against np.add.at's 1,126 us for 4,096 rows of 24 features (16 us vs 1,038 us for 768 rows of 128). Same contract as kernels/reference/embedding.py.
"""
import numba
import numpy as np


@numba.njit(cache=True)
def _scatter_add_rows(ids, rows, grad):
    for n in range(ids.shape[0]):
        row = ids[n]
        for d in range(rows.shape[1]):
            grad[row, d] += rows[n, d]


def embedding_backward(ids: np.ndarray, grad_out: np.ndarray, num_rows: int) -> np.ndarray:
    grad = np.zeros((num_rows, grad_out.shape[-1]), dtype=grad_out.dtype)
    rows = np.ascontiguousarray(grad_out.reshape(-1, grad_out.shape[-1]))
    _scatter_add_rows(np.ascontiguousarray(ids.reshape(-1), dtype=np.int64), rows, grad)
    return grad
