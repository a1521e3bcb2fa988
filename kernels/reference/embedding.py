"""The embedding lookup's backward: scatter-add the output gradient rows into the table's rows.

    forward:   out[n] = weight[ids[n]]                      a gather, one row per token
    backward:  grad_weight[v] = sum of grad_out[n] over the n with ids[n] == v

A token that appears twice in a batch gets BOTH contributions; `grad[ids] = grad_out` would keep only the
last one, and `grad[ids] += grad_out` does the same (NumPy's buffered fancy assignment). `np.add.at` is
the unbuffered scatter-add that gets it right, and it is slow (about 1 ms for 4,000 rows of 24 features,
a quarter of a small model's training step), which is why the Numba set compiles this loop.

ids: integer array of any shape; grad_out: ids.shape + (D,); returns (num_rows, D), on grad_out's device.
"""
import numpy as np

from tinygrad_llm.device import array_module, as_array_on, device_of


def embedding_backward(ids: np.ndarray, grad_out: np.ndarray, num_rows: int) -> np.ndarray:
    xp = array_module(grad_out)
    grad = xp.zeros((num_rows, grad_out.shape[-1]), dtype=grad_out.dtype)
    xp.add.at(grad, as_array_on(ids, device_of(grad_out)).reshape(-1), grad_out.reshape(-1, grad_out.shape[-1]))
    return grad
