"""Gradient clipping by global norm: one bad batch must not throw the weights far away.

All gradients are treated as ONE long vector. If its norm exceeds max_norm, every gradient is multiplied by
the same factor max_norm / (norm + 1e-6), so the update keeps its direction and only gets shorter. Clipping
each tensor separately would change the direction. The norm before clipping is returned, because logging
it is how you spot loss spikes and pick max_norm (about 1.0 is common for Transformers).

In the loop it goes between backward and step: zero_grad -> forward -> loss -> backward -> clip -> step.
"""
import math

import numpy as np

from ..tensor import Tensor


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so their joint `norm_type`-norm is at most `max_norm`.

    Parameters without a gradient are ignored. `norm_type` may be `float("inf")` (the largest |g|).
    Returns the total norm before clipping. With `error_if_nonfinite=True`, a NaN/inf total norm raises an
    error instead of silently spreading NaN into every gradient.
    """
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be > 0, got {max_norm}; 1.0 is a common choice")
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 (2.0, 1.0 or float('inf')), got {norm_type}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    # The norm of the per-tensor norms equals the norm of all gradients concatenated (for every p-norm).
    per_tensor = [np.linalg.norm(g.ravel().astype(np.float64), ord=norm_type) for g in grads]
    total_norm = float(np.linalg.norm(per_tensor, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(
            f"clip_grad_norm_: the total gradient norm is {total_norm}; some gradient contains NaN or inf. "
            "Check the loss for overflow (e.g. log(0)) or lower the learning rate"
        )
    if total_norm > max_norm:
        scale = max_norm / (total_norm + 1e-6)
        for grad in grads:
            grad *= scale
    return total_norm
