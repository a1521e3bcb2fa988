"""Adam and AdamW: per-coordinate adaptive steps from running gradient moments.

    m = beta1 * m + (1 - beta1) * g          first moment: a running mean of gradients (momentum)
    v = beta2 * v + (1 - beta2) * g^2        second moment: a running mean of squared gradients
    m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)     bias correction (m, v start at 0)
    w = w - lr * m_hat / (sqrt(v_hat) + eps)

Adam is not plain gradient descent: dividing by sqrt(v_hat) gives every coordinate its own step size,
about lr no matter how large or small its gradients are. On the first step m_hat/sqrt(v_hat) = g/|g|, so
every coordinate with a nonzero gradient moves by almost exactly lr. Without bias correction the first
steps would be tiny, because m and v start at zero and take ~1/(1-beta) steps to warm up.

The two classes differ only in how they apply weight decay (`apply_weight_decay`):
- Adam adds the L2 penalty's gradient wd*w to g, so the decay also goes through m_hat/sqrt(v_hat): it is
  divided by the root-mean-square gradient. Weights with large or noisy gradients are barely decayed, and
  weights with tiny gradients are decayed hard; the regularisation strength depends on the gradient scale.
- AdamW ("decoupled weight decay", Loshchilov & Hutter) shrinks w by lr*wd*w directly, outside the adaptive
  step, so every weight decays at the same rate whatever its gradients. This is what Transformers use.
"""
import math

import numpy as np

from .optimizer import Optimizer


class Adam(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        betas = group["betas"]
        self._require(group, "betas", len(betas) == 2 and all(0 <= b < 1 for b in betas),
                      "betas must be two numbers in [0, 1), e.g. (0.9, 0.999)")
        self._require(group, "eps", group["eps"] >= 0, "eps must be >= 0 (it guards the division by sqrt(v))")

    def init_state(self, param, group):
        return {"exp_avg": np.zeros_like(param.data), "exp_avg_sq": np.zeros_like(param.data)}

    def apply_weight_decay(self, param, grad, group):
        """Adam's weight decay is classic L2: wd*w joins the gradient (and is then rescaled by 1/sqrt(v))."""
        return self.add_l2_penalty(grad, param, group)

    def update(self, param, grad, group, state):
        grad = self.apply_weight_decay(param, grad, group)
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        bias_correction1 = 1 - beta1 ** state["step"]
        bias_correction2 = 1 - beta2 ** state["step"]
        denominator = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + group["eps"]
        param.data -= (group["lr"] / bias_correction1) * exp_avg / denominator


class AdamW(Adam):
    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def apply_weight_decay(self, param, grad, group):
        """Decoupled decay: w *= 1 - lr*wd, independent of the gradients; the gradient goes on unchanged."""
        param.data *= 1 - group["lr"] * group["weight_decay"]
        return grad
