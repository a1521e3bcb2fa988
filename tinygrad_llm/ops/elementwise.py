"""Elementwise functions: exp log sqrt abs tanh sigmoid relu gelu clamp, and dtype casts.

The derivative of most of these is cheapest written in terms of the *output* (exp' = exp,
tanh' = 1 - tanh^2, sigmoid' = s(1 - s)), which is why their forward saves the output.
"""
import numpy as np

from .. import kernels
from ..autograd import Function

class Exp(Function):
    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, g):
        return g / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = np.sqrt(a)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Abs(Function):
    """|a|; the subgradient at 0 is taken as 0 (what L1 penalties and PyTorch use)."""

    def forward(self, a):
        self.a = a
        return np.abs(a)

    def backward(self, g):
        return g * np.sign(self.a)


class Tanh(Function):
    def forward(self, a):
        self.out = np.tanh(a)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


class Sigmoid(Function):
    """1 / (1 + e^-a), computed without overflow for large |a| through tanh: s(a) = (1 + tanh(a/2)) / 2."""

    def forward(self, a):
        self.out = 0.5 * (1 + np.tanh(0.5 * a))
        return self.out

    def backward(self, g):
        return g * self.out * (1 - self.out)


class ReLU(Function):
    def forward(self, a):
        self.positive = a > 0
        return np.where(self.positive, a, 0).astype(a.dtype, copy=False)

    def backward(self, g):
        return g * self.positive


class GELU(Function):
    """x * Phi(x), Phi the standard normal CDF. `approximate="tanh"` is GPT-2's cheaper curve.

    The derivative is Phi(x) + x * phi(x) (phi the normal density): not ReLU's step function. Both
    directions run in the active kernel set (kernels/reference/gelu.py has the formulas).
    """

    def forward(self, a, approximate="none"):
        self.a, self.approximate = a, approximate
        return kernels.active(a).gelu_forward(a, approximate)

    def backward(self, g):
        return kernels.active(self.a).gelu_backward(self.a, g, self.approximate)


class Clamp(Function):
    """Clip into [low, high]; the gradient flows only where the input was inside (bounds included)."""

    def forward(self, a, low=None, high=None):
        self.inside = np.ones(a.shape, dtype=bool)
        if low is not None:
            self.inside &= a >= low
        if high is not None:
            self.inside &= a <= high
        return np.clip(a, low, high)

    def backward(self, g):
        return g * self.inside


class Cast(Function):
    """Change dtype; the gradient is cast back to the input's dtype."""

    def forward(self, a, dtype=None):
        self.input_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.input_dtype)
