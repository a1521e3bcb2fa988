"""SGD: stochastic gradient descent, optionally with momentum, in PyTorch's exact convention.

    g = grad + weight_decay * w                      (classic L2 weight decay)
    v = g                          on the first step
    v = momentum * v + (1 - dampening) * g           afterwards
    g = g + momentum * v  if nesterov  else  v
    w = w - lr * g

Momentum keeps a running sum of past gradients, so directions that gradients agree on build up speed while
directions where they flip sign cancel out. Nesterov "looks ahead": it steps with the gradient plus the
momentum it is about to apply. Note PyTorch's convention puts lr outside the buffer (v accumulates raw
gradients), unlike the textbook v = mu*v - lr*g; the two agree only while lr is constant.
"""
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        self._require(group, "momentum", group["momentum"] >= 0, "momentum must be >= 0 (0.9 is typical, 0 is off)")
        self._require(group, "dampening", 0 <= group["dampening"] <= 1, "dampening must be in [0, 1]")
        if group["nesterov"]:
            self._require(group, "nesterov", group["momentum"] > 0 and group["dampening"] == 0,
                          "Nesterov momentum needs momentum > 0 and dampening = 0")

    def update(self, param, grad, group, state):
        grad = self.add_l2_penalty(grad, param, group)
        momentum = group["momentum"]
        if momentum != 0:
            velocity = state.get("momentum_buffer")
            if velocity is None:
                velocity = state["momentum_buffer"] = grad.copy()
            else:
                velocity *= momentum
                velocity += (1 - group["dampening"]) * grad
            grad = grad + momentum * velocity if group["nesterov"] else velocity
        param.data -= group["lr"] * grad
