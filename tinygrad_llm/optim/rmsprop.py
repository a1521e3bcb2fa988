"""RMSprop: divide each coordinate's step by a running root-mean-square of its recent gradients.

    a = alpha * a + (1 - alpha) * g^2
    step = g / (sqrt(a) + eps)
    b = momentum * b + step,   w = w - lr * b      with momentum
    w = w - lr * step                              without

Adagrad with a forgetting factor: the running average (instead of a sum) lets the step size recover when
gradients shrink. Adam is RMSprop plus a running mean of gradients and bias correction.
"""
import numpy as np

from .optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        self._require(group, "alpha", 0 <= group["alpha"] <= 1, "alpha (the averaging factor) must be in [0, 1]")
        self._require(group, "eps", group["eps"] >= 0, "eps must be >= 0 (it guards the division by sqrt(a))")
        self._require(group, "momentum", group["momentum"] >= 0, "momentum must be >= 0 (0 turns it off)")

    def init_state(self, param, group):
        state = {"square_avg": np.zeros_like(param.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(param.data)
        return state

    def update(self, param, grad, group, state):
        grad = self.add_l2_penalty(grad, param, group)
        alpha = group["alpha"]
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        step = grad / (np.sqrt(square_avg) + group["eps"])
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += step
            step = buffer
        param.data -= group["lr"] * step
