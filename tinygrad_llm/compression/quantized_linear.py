"""QuantizedLinear: a Linear layer whose weight is stored as int8 or int4 (inference only).

    y = x @ dequant(W).T + b        W: a QuantizedTensor (integers + scales), b: float32, left as it was

The forward pass hands the integers, scales and zero points to the active kernel set's quantized_matmul,
which (in the Numba set) turns each integer back into a float as it multiplies, so the float32 weight
matrix is never built: at decode time the cost is reading the weights, and these are 4x (int8) or 8x
(int4) fewer bytes. The parameter count is unchanged (M35): every weight is still there, in fewer bits.

`activations` says how x meets the integers. "int16" (the default, W8A16 or W4A16): each row of x is
rounded to int16 with its own scale and the kernel multiplies integers, which on a CPU is about twice as
fast as converting every weight to a float; the rounding adds at most max|x| / 65534 per activation, about
1/258 of the error the int8 weights already carry. "float32": x is used as it is and each weight is
converted to a float (the exact dequantized product, within float32 rounding).

The layer has no Parameters: rounding has no useful gradient, so it cannot be trained. Quantize after
training, and run it under tgl.no_grad() (generate and evaluate_language_model do).
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..kernels.reference.quantized_matmul import ACTIVATIONS
from ..autograd import is_grad_enabled
from ..nn.module import Module
from ..tensor import Tensor
from .quantization import QuantizedTensor, quantize_tensor


class QuantizedLinear(Module):
    def __init__(self, weight: QuantizedTensor, bias: np.ndarray | None = None, activations: str = "int16"):
        if activations not in ACTIVATIONS:
            raise ValueError(f"QuantizedLinear: activations must be one of {ACTIVATIONS} ('int16' rounds each row of "
                             f"x to int16 and multiplies integers, 'float32' converts the weights), got {activations!r}")
        self.activations = activations
        self.out_features, self.in_features = weight.shape
        # Plain arrays, not a dataclass, so that Module.to("cuda") moves them like any array a layer keeps.
        self.values, self.scales, self.zero_points = weight.values, weight.scales, weight.zero_points
        self.bits, self.group_size = weight.bits, weight.group_size
        if bias is not None and np.shape(bias) != (self.out_features,):
            raise ValueError(f"QuantizedLinear: bias must have shape ({self.out_features},) (one per output), got "
                             f"{np.shape(bias)}")
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32)

    @classmethod
    def from_linear(cls, linear, bits: int = 8, symmetric: bool = True, granularity: str = "channel",
                    group_size: int | None = None, activations: str = "int16") -> "QuantizedLinear":
        """Quantize a trained Linear's weight; its bias is copied as float32."""
        bias = None if linear.bias is None else np.array(linear.bias.numpy(), dtype=np.float32)
        return cls(quantize_tensor(linear.weight.numpy(), bits, symmetric, granularity, group_size), bias, activations)

    @property
    def weight(self) -> QuantizedTensor:
        return QuantizedTensor(self.values, self.scales, self.zero_points, self.bits, self.group_size,
                               (self.out_features, self.in_features))

    def forward(self, x):
        if is_grad_enabled() and getattr(x, "requires_grad", False):
            raise RuntimeError(
                "QuantizedLinear: called while gradients are recorded, on an input that requires grad; a quantized "
                "layer is for inference only (rounding has no useful gradient). Run it under `with tgl.no_grad():`, "
                "or fine-tune the float model and quantize it afterwards")
        array = x.data if isinstance(x, Tensor) else x
        if array.shape[-1:] != (self.in_features,) or array.dtype != np.float32:
            raise ValueError(f"QuantizedLinear: expected float32 input (..., {self.in_features}), got {array.dtype} of "
                             f"shape {array.shape}; the layer computes in float32 (call model.float() on the rest)")
        rows = array.reshape(-1, self.in_features)  # (M, K): every leading dimension is a row of the product
        y = kernels.active(rows).quantized_matmul(rows, self.values, self.scales, self.zero_points, self.bits,
                                                  self.group_size, activations=self.activations)
        if self.bias is not None:
            y += self.bias
        return Tensor(y.reshape(*array.shape[:-1], self.out_features))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.weight.describe()}, "
                f"bias={self.bias is not None}, activations={self.activations}")
