"""Ops that move data without computing on it: reshape, permute, expand, concatenate, and copy to a device.

Their backward applies the inverse movement to the gradient: reshape back, permute with the inverse
permutation, sum over expanded axes, slice the concatenated gradient apart, copy back to the input's device.
"""
import numpy as np

from ..autograd import Function, unbroadcast
from ..device import device_of, to_device


class Reshape(Function):
    def forward(self, a, shape=None):
        self.input_shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view a tensor of shape {a.shape} ({a.size} elements) as shape {tuple(shape)}; "
                "the number of elements must stay the same (use -1 for one inferred dimension)"
            ) from None

    def backward(self, g):
        return g.reshape(self.input_shape)


class Permute(Function):
    def forward(self, a, axes=None):
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {tuple(axes)} is not a permutation of the {a.ndim} axes of shape {a.shape}")
        self.inverse = np.argsort(axes)
        return a.transpose(axes)

    def backward(self, g):
        return g.transpose(self.inverse)


class Expand(Function):
    """Broadcast to a bigger shape without copying; the gradient sums the copies (unbroadcast)."""

    def forward(self, a, shape=None):
        self.input_shape = a.shape
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(
                f"expand: cannot broadcast shape {a.shape} to {tuple(shape)}; only size-1 or missing leading "
                "dimensions can grow"
            ) from None

    def backward(self, g):
        return unbroadcast(g, self.input_shape)


class Concatenate(Function):
    def forward(self, *arrays, axis=0):
        shapes = [x.shape for x in arrays]
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"cat: all tensors need the same number of dimensions, got shapes {shapes}")
        ndim = len(shapes[0])
        if not -ndim <= axis < ndim:
            raise ValueError(f"cat: axis {axis} is out of range for tensors with {ndim} dimensions (shapes {shapes})")
        axis = axis % ndim
        others = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(others) != 1:
            raise ValueError(
                f"cat along axis {axis}: shapes {shapes} differ outside that axis; every other dimension must match"
            )
        self.axis = axis
        self.boundaries = [int(b) for b in np.cumsum([s[axis] for s in shapes])[:-1]]  # plain ints: any array module takes them
        return np.concatenate(arrays, axis=axis)

    def backward(self, g):
        return tuple(np.split(g, self.boundaries, axis=self.axis))


class ToDevice(Function):
    """A copy to another device (host <-> GPU); the gradient is copied back to where the input lives."""

    def forward(self, a, device=None):
        self.source = device_of(a)
        return to_device(a, device)

    def backward(self, g):
        return to_device(g, self.source)
