"""The Tensor: a NumPy array, its gradient, and the op that produced it.

Arithmetic on tensors builds a graph as it goes (each result remembers its `Function` and that
function remembers its inputs). `loss.backward()` walks that graph in reverse and leaves dloss/dx in
`x.grad` for every leaf `x` created with `requires_grad=True`.

Defaults follow PyTorch, which most learners half know: Python floats become float32, integers int64,
NumPy arrays keep their dtype (so float64 arrays give float64 tensors, which gradient checks need).
"""
from __future__ import annotations

import numpy as np

from . import autograd
from .device import array_module, as_array_on, check_device, device_of, is_cuda_array, to_device
from .dtypes import is_floating
from .ops import arithmetic, elementwise, indexing, matmul, movement, reductions

DEFAULT_FLOAT = np.float32


def _to_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if is_cuda_array(data):  # a CuPy array stays on its GPU (np.array would try to copy it to the host)
        return data.astype(data.dtype if dtype is None else dtype, copy=True)
    if dtype is not None:
        return np.array(data, dtype=dtype)
    array = np.array(data)
    if not isinstance(data, (np.ndarray, np.generic)) and array.dtype == np.float64:  # a NumPy scalar keeps its dtype
        array = array.astype(DEFAULT_FLOAT)
    return array


class Tensor:
    __array_priority__ = 1000  # so `ndarray + Tensor` calls Tensor.__radd__ instead of NumPy broadcasting over it

    def __init__(self, data, dtype=None, requires_grad: bool = False, _owned: bool = False):
        self.data = data if _owned else _to_array(data, dtype)
        if requires_grad and not is_floating(self.data.dtype):
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}; "
                "create it with dtype=np.float32 or call .float()"
            )
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._ctx: autograd.Function | None = None
        self._retains_grad = False

    @classmethod
    def _from_op(cls, data, requires_grad: bool) -> "Tensor":
        """An op's result. A fresh array that owns its memory is kept as is (copying ~200 outputs per
        training step cost real time); a view of another array, or a NumPy scalar, becomes its own array,
        so updating a parameter in place never changes a result computed from it."""
        if isinstance(data, np.generic) or not hasattr(data, "base"):  # a NumPy scalar or a Python number
            data = np.array(data)
        elif data.base is not None:  # a view: its own copy, in the view's memory order (as np.array copies)
            data = data.copy(order="K")
        return cls(data, requires_grad=requires_grad, _owned=True)

    # ---------------------------------------------------------------- basics
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    is_leaf = property(lambda self: self._ctx is None, doc="Created by the user, not by an op: .grad is kept here.")

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied to the host for a tensor on the GPU)."""
        return to_device(self.data, "cpu")

    @property
    def device(self) -> str:
        """'cpu' or 'cuda': where the values live (the type of the array, see device.py)."""
        return device_of(self.data)

    def to(self, device: str) -> "Tensor":
        """This tensor on `device`: itself when it is there already, else a copy there that stays in the graph
        (its gradient is copied back). A clear DeviceUnavailableError when the device cannot be used here."""
        device = check_device(device)
        return self if device == self.device else movement.ToDevice.apply(self, device=device)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def detach(self) -> "Tensor":
        """The same values, cut from the graph: nothing flows back through it."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and not is_floating(self.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = flag
        return self

    def retain_grad(self) -> "Tensor":
        """Also keep .grad on this intermediate (non-leaf) tensor, to inspect gradients inside a network."""
        self._retains_grad = True
        return self

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(", precision=4)
        extras = [f"dtype={self.dtype}"] if self.dtype not in (DEFAULT_FLOAT, np.int64, np.bool_) else []
        if self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    __hash__ = object.__hash__  # __eq__ is elementwise, so identity hashing must be asked for explicitly

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.data)

    # ---------------------------------------------------------------- autograd
    def backward(self, gradient=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's .grad (summing with what is already there).

        A scalar output needs no argument. A non-scalar one needs `gradient`, the upstream dL/d(self),
        because "the gradient of a vector" is a Jacobian and backward computes a vector-Jacobian product.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the computation had "
                "requires_grad=True, or it was computed inside tgl.no_grad(). Inference needs no backward; for "
                "training, create parameters with requires_grad=True (nn.Parameter does)."
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs an explicit gradient of the same "
                    "shape (dL/d this tensor); reduce to a scalar loss first, e.g. loss.mean().backward()"
                )
            gradient = np.ones_like(self.data)
        gradient = _to_array(gradient, self.dtype)
        if gradient.shape != self.shape:
            raise ValueError(f"backward(): gradient has shape {gradient.shape} but the tensor has shape {self.shape}")
        autograd.backward(self, gradient)

    def _store_grad(self, grad: np.ndarray) -> None:
        """Leaves accumulate like PyTorch: a second backward() adds to .grad until it is zeroed."""
        grad = grad.astype(self.dtype, copy=False)
        self.grad = grad.copy() if self.grad is None else self.grad + grad

    # ---------------------------------------------------------------- arithmetic
    def _operand(self, other) -> "Tensor":
        """Wrap a Python number with this tensor's dtype, so `x * 0.5` stays float32, on this tensor's device."""
        if isinstance(other, Tensor):
            return other
        xp = array_module(self.data)
        if isinstance(other, (int, float, bool)) and is_floating(self.dtype):
            return Tensor(xp.asarray(other, dtype=self.dtype))
        return Tensor(xp.asarray(other))

    def _binary(self, op, other, name, reverse=False):
        other = self._operand(other)
        a, b = (other, self) if reverse else (self, other)
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{name}: shapes {a.shape} and {b.shape} do not broadcast. Aligned from the right, each pair of "
                "dimensions must be equal or one of them 1; reshape or unsqueeze one operand"
            ) from None
        return op.apply(a, b)

    def __add__(self, other):
        return self._binary(arithmetic.Add, other, "add")

    def __radd__(self, other):
        return self._binary(arithmetic.Add, other, "add", reverse=True)

    def __sub__(self, other):
        return self._binary(arithmetic.Sub, other, "sub")

    def __rsub__(self, other):
        return self._binary(arithmetic.Sub, other, "sub", reverse=True)

    def __mul__(self, other):
        return self._binary(arithmetic.Mul, other, "mul")

    def __rmul__(self, other):
        return self._binary(arithmetic.Mul, other, "mul", reverse=True)

    def __truediv__(self, other):
        return self._binary(arithmetic.Div, other, "div")

    def __rtruediv__(self, other):
        return self._binary(arithmetic.Div, other, "div", reverse=True)

    def __pow__(self, other):
        return self._binary(arithmetic.Pow, other, "pow")

    def __rpow__(self, other):
        return self._binary(arithmetic.Pow, other, "pow", reverse=True)

    def __neg__(self):
        return arithmetic.Neg.apply(self)

    def __matmul__(self, other):
        return matmul.MatMul.apply(self, self._operand(other))

    def __rmatmul__(self, other):
        return matmul.MatMul.apply(self._operand(other), self)

    # Comparisons give boolean tensors with no gradient (a step function has derivative 0 almost everywhere).
    def _compare(self, fn, other):
        return Tensor(fn(self.data, self._operand(other).data))

    def __lt__(self, other):
        return self._compare(np.less, other)

    def __le__(self, other):
        return self._compare(np.less_equal, other)

    def __gt__(self, other):
        return self._compare(np.greater, other)

    def __ge__(self, other):
        return self._compare(np.greater_equal, other)

    def __eq__(self, other):
        return self._compare(np.equal, other)

    def __ne__(self, other):
        return self._compare(np.not_equal, other)

    # ---------------------------------------------------------------- elementwise
    def exp(self):
        return elementwise.Exp.apply(self)

    def log(self):
        return elementwise.Log.apply(self)

    def sqrt(self):
        return elementwise.Sqrt.apply(self)

    def abs(self):
        return elementwise.Abs.apply(self)

    def tanh(self):
        return elementwise.Tanh.apply(self)

    def sigmoid(self):
        return elementwise.Sigmoid.apply(self)

    def relu(self):
        return elementwise.ReLU.apply(self)

    def gelu(self, approximate: str = "none"):
        return elementwise.GELU.apply(self, approximate=approximate)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: give at least one of min and max")
        return elementwise.Clamp.apply(self, low=min, high=max)

    def astype(self, dtype):
        return self if np.dtype(dtype) == self.dtype else elementwise.Cast.apply(self, dtype=np.dtype(dtype))

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    # ---------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims=False):
        return reductions.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        axes = reductions.normalize_axes(axis, self.ndim)
        return self.sum(axis=axes, keepdims=keepdims) / _count(self.shape, axes)

    def var(self, axis=None, keepdims=False, correction: int = 1):
        """Variance; `correction=1` (PyTorch's default) divides by n - 1, `correction=0` by n (NumPy's default)."""
        axes = reductions.normalize_axes(axis, self.ndim)
        centered = self - self.mean(axis=axes, keepdims=True)
        return (centered * centered).sum(axis=axes, keepdims=keepdims) / (_count(self.shape, axes) - correction)

    def max(self, axis=None, keepdims=False):
        return reductions.Max.apply(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return -((-self).max(axis=axis, keepdims=keepdims))

    def logsumexp(self, axis=None, keepdims=False):
        return reductions.LogSumExp.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return Tensor(self.data.argmax(axis=axis))

    def softmax(self, axis=-1):
        from .nn import functional

        return functional.softmax(self, axis=axis)

    def log_softmax(self, axis=-1):
        from .nn import functional

        return functional.log_softmax(self, axis=axis)

    # ---------------------------------------------------------------- shape
    def reshape(self, *shape):
        new_shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return movement.Reshape.apply(self, shape=tuple(int(n) for n in new_shape))

    view = reshape

    def flatten(self, start_axis=0, end_axis=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = start_axis % self.ndim, end_axis % self.ndim
        merged = int(np.prod(self.shape[start:end + 1]))  # not -1: that is ambiguous when a dimension is 0
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1:])

    def unsqueeze(self, axis):
        axis = axis if axis >= 0 else axis + self.ndim + 1
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, axis=None):
        axes = [i for i, n in enumerate(self.shape) if n == 1] if axis is None else reductions.normalize_axes(axis, self.ndim)
        for a in axes:
            if self.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of shape {self.shape} has size {self.shape[a]}, not 1")
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes))

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return movement.Permute.apply(self, axes=tuple(a + self.ndim if a < 0 else a for a in axes))

    def transpose(self, axis0, axis1):
        axes = list(range(self.ndim))
        axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
        return self.permute(axes)

    @property
    def T(self):
        """All axes reversed (NumPy's meaning); for the last two only, use .transpose(-2, -1)."""
        return self.permute(tuple(reversed(range(self.ndim))))

    def expand(self, *shape):
        """Broadcast to `shape` without copying; -1 keeps a dimension's size."""
        new_shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        offset = len(new_shape) - self.ndim
        if -1 in new_shape[:offset]:
            raise ValueError(f"expand: -1 (keep the size) is not allowed in a new leading dimension: {self.shape} -> {tuple(new_shape)}")
        new_shape = tuple(self.shape[i - offset] if n == -1 else n for i, n in enumerate(new_shape))
        return movement.Expand.apply(self, shape=new_shape)

    def split(self, split_size_or_sections, axis=0):
        return split(self, split_size_or_sections, axis)

    def masked_fill(self, mask, value):
        """Put `value` where `mask` is true (e.g. -inf above the diagonal for causal attention)."""
        return where(mask, Tensor(array_module(self.data).asarray(value, dtype=self.dtype)), self)

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, index):
        return indexing.Index.apply(self, index=_raw_index(index))

    def __setitem__(self, index, value):
        if self.requires_grad or self._ctx is not None:
            raise RuntimeError(
                "in-place assignment into a tensor that is part of the autograd graph would silently corrupt its "
                "gradients; build the new tensor with where()/masked_fill()/cat(), or assign under .data"
            )
        self.data[_raw_index(index)] = value.data if isinstance(value, Tensor) else value


def _count(shape, axes) -> int:
    return int(np.prod([shape[a] for a in axes]))


def _raw_index(index):
    """Tensors inside an index (token ids, boolean masks) become their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


# -------------------------------------------------------------------- functions over several tensors
def cat(tensors, axis=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    return movement.Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    return cat([t.unsqueeze(axis) for t in tensors], axis=axis)


def split(tensor: Tensor, split_size_or_sections, axis=0) -> tuple:
    """Split along `axis` into chunks of one size (the last may be smaller) or of the listed sizes."""
    length = tensor.shape[axis]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split: chunk size must be positive, got {split_size_or_sections}")
        sizes = [min(split_size_or_sections, length - s) for s in range(0, length, split_size_or_sections)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != length:
            raise ValueError(f"split: sections {sizes} add up to {sum(sizes)}, but axis {axis} has length {length}")
    starts = np.cumsum([0] + sizes[:-1])
    prefix = (slice(None),) * (axis % tensor.ndim)
    return tuple(tensor[prefix + (slice(int(s), int(s) + n),)] for s, n in zip(starts, sizes))


def where(condition, a, b) -> Tensor:
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else Tensor(np.asarray(a, dtype=DEFAULT_FLOAT))
    condition = condition if isinstance(condition, Tensor) else Tensor(as_array_on(condition, like.device))
    a, b = like._operand(a), like._operand(b)
    try:
        np.broadcast_shapes(condition.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: condition {condition.shape}, a {a.shape} and b {b.shape} do not broadcast together"
        ) from None
    return indexing.Where.apply(condition, a, b)
