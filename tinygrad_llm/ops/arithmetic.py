"""Broadcasting arithmetic: + - * / neg and pow.

Each backward applies the local derivative and then `unbroadcast`s, because an operand that NumPy
broadcast was used many times and its gradient is the sum over those uses.
"""
import numpy as np

from ..autograd import Function, unbroadcast


class Add(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(g, self.b_shape)


class Sub(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(-g, self.b_shape)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a.shape), unbroadcast(g * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        grad_a = g / self.b
        grad_b = -g * self.a / (self.b * self.b)
        return unbroadcast(grad_a, self.a.shape), unbroadcast(grad_b, self.b.shape)


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Pow(Function):
    """a ** b. d/da = b a^(b-1); d/db = a^b ln a, defined where a > 0 (0 elsewhere, as for integer powers)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, g):
        grad_a = g * self.b * self.a ** (self.b - 1)
        safe_log = np.log(np.where(self.a > 0, self.a, 1))
        grad_b = g * self.out * safe_log
        return unbroadcast(grad_a, self.a.shape), unbroadcast(grad_b, self.b.shape)
