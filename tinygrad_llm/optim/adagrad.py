"""Adagrad: divide each coordinate's step by the root of the sum of all its past squared gradients.

    s = s + g^2                     (s starts at initial_accumulator_value)
    w = w - lr * g / (sqrt(s) + eps)

Rarely-updated coordinates (rare words' embeddings) keep large steps; frequently-updated ones get small
steps. Because s only grows, the effective step size shrinks forever, which is why RMSprop and Adam replace
the sum with a running average.
"""
import numpy as np

from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0):
        defaults = dict(lr=lr, eps=eps, weight_decay=weight_decay, initial_accumulator_value=initial_accumulator_value)
        super().__init__(params, defaults)

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        self._require(group, "eps", group["eps"] >= 0, "eps must be >= 0 (it guards the division by sqrt(s))")
        self._require(group, "initial_accumulator_value", group["initial_accumulator_value"] >= 0,
                      "the accumulator is a sum of squares, so its initial value must be >= 0")

    def init_state(self, param, group):
        return {"sum": np.full_like(param.data, group["initial_accumulator_value"])}

    def update(self, param, grad, group, state):
        grad = self.add_l2_penalty(grad, param, group)
        squared_sum = state["sum"]
        squared_sum += grad * grad
        param.data -= group["lr"] * grad / (np.sqrt(squared_sum) + group["eps"])
