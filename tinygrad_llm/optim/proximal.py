"""The proximal step for L1 regularisation: soft-thresholding, which produces exact zeros.

To minimise loss(w) + lam * ||w||_1, take the usual gradient step on the loss alone, then apply

    w = sign(w) * max(|w| - lam * lr, 0)

which is the exact minimiser of lam*||w||_1 + ||w - w_step||^2 / (2*lr) (proximal gradient descent, ISTA).
Every weight within lam*lr of zero lands exactly on 0; the others move lam*lr towards zero.

A subgradient step (adding lam * sign(w) to the gradient) never does this: it jumps over zero, to
w - lr*lam*sign(w), and then back, oscillating around 0 with weights of size ~lr*lam that are never exactly 0.
So with the subgradient you get small weights, with the proximal step you get a truly sparse model.
"""
import numpy as np

from ..tensor import Tensor


def l1_proximal_step_(params, lam: float, lr: float) -> None:
    """Soft-threshold every parameter in place: zero each w with |w| <= lam*lr, shrink the rest by lam*lr.

    Call it right after `optimizer.step()` (with the optimizer's lr), with no L1 term in the loss.
    """
    if not lam >= 0:
        raise ValueError(f"l1_proximal_step_: lam (the L1 strength) must be >= 0, got {lam}")
    if not lr >= 0:
        raise ValueError(f"l1_proximal_step_: lr must be >= 0 (the learning rate of the step just taken), got {lr}")
    params = [params] if isinstance(params, Tensor) else list(params)
    threshold = lam * lr
    for param in params:
        param.data[...] = np.sign(param.data) * np.maximum(np.abs(param.data) - threshold, 0)
