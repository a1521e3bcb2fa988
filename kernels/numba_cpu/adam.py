"""One Adam / AdamW update fused into a single pass over memory, compiled with Numba.

Per element: read param, grad, m and v once, update them in registers, write param, m and v once. The
NumPy reference makes about ten passes with temporaries. The scalars are cast to the parameters' dtype
first: a float64 Python scalar in a float32 loop would promote every operation to float64 (a Numba trap
that costs the vectorisation; ../shared/PERFORMANCE_NOTES.md). Same contract as kernels/reference/adam.py.
"""
import math

import numba
import numpy as np

from ..reference.adam import adam_update as _reference_adam_update


@numba.njit(cache=True, fastmath=True)
def _fused_update(param, grad, exp_avg, exp_avg_sq, decay, beta1, beta2, step_size, inv_sqrt_bc2, eps):
    one = param.dtype.type(1)
    for i in range(param.size):
        g = grad[i]
        m = beta1 * exp_avg[i] + (one - beta1) * g
        v = beta2 * exp_avg_sq[i] + (one - beta2) * g * g
        exp_avg[i], exp_avg_sq[i] = m, v
        param[i] = param[i] * decay - step_size * m / (math.sqrt(v) * inv_sqrt_bc2 + eps)


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step, weight_decay=0.0):
    if not (param.flags.c_contiguous and exp_avg.flags.c_contiguous and exp_avg_sq.flags.c_contiguous):
        return _reference_adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step, weight_decay)
    cast = param.dtype.type
    _fused_update(param.reshape(-1), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1), exp_avg.reshape(-1),
                  exp_avg_sq.reshape(-1), cast(1 - lr * weight_decay), cast(beta1), cast(beta2),
                  cast(lr / (1 - beta1 ** step)), cast(1 / math.sqrt(1 - beta2 ** step)), cast(eps))
