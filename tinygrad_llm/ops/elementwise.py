"""Elementwise functions: exp log sqrt abs tanh sigmoid relu gelu clamp, and dtype casts.

The derivative of most of these is cheapest written in terms of the *output* (exp' = exp,
tanh' = 1 - tanh^2, sigmoid' = s(1 - s)), which is why their forward saves the output.
"""
import math

import numpy as np

from ..autograd import Function

_erf = np.vectorize(math.erf, otypes=[np.float64])


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

    The derivative is Phi(x) + x * phi(x) (phi the normal density): not ReLU's step function.
    """

    def forward(self, a, approximate="none"):
        self.a, self.approximate = a, approximate
        if approximate == "tanh":
            # a * a * a, not a**3: NumPy's power with a float exponent is ~20x slower than two multiplies
            self.tanh_inner = np.tanh(math.sqrt(2 / math.pi) * a * (1 + 0.044715 * (a * a)))
            return (0.5 * a * (1 + self.tanh_inner)).astype(a.dtype, copy=False)
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.cdf = (0.5 * (1 + _erf(a / math.sqrt(2)))).astype(a.dtype, copy=False)
        return a * self.cdf

    def backward(self, g):
        a = self.a
        if self.approximate == "tanh":
            t = self.tanh_inner
            d_inner = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * (a * a))
            return g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner)
        pdf = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
        return g * (self.cdf + a * pdf)


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
