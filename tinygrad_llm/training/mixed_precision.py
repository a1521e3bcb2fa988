"""Mixed-precision training: the model computes in half precision, the optimizer updates float32 weights.

    precision   the model's dtype   the optimizer's weights   loss scaling
    fp32        float32             the model's own           no
    fp16        float16             float32 master copies     yes (GradScaler: float16 gradients underflow)
    bf16        bfloat16            float32 master copies     no (bfloat16 has float32's exponent range)

Why two copies of the weights. An update is often far smaller than the weight it changes: Adam moves every
weight by about lr = 1e-3 or less, and near 1.0 float16 can only tell numbers 1e-3 apart (1 + 1e-4 == 1
in float16; bfloat16 is 8x coarser). Applied to half-precision weights, such updates round away and the
model stops learning. So the optimizer keeps a float32 "master" copy that collects the small updates,
and after every step the model gets that copy rounded to half:

    model (half) forward and backward -> half gradients -> float32 master gradients
    -> optimizer step on the master weights (float32) -> master weights rounded into the model (half)

The forward and backward passes, where nearly all the arithmetic is, run on the half-precision model.
Checkpoints store the master weights (see MasterWeights.state_dict), so resuming is bit-exact, and the
model's half weights are recovered from them by rounding.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..device import as_array_on, is_cuda_array, to_device
from ..dtypes import BFLOAT16, is_floating
from ..nn.parameter import Parameter
from ..optim import GradScaler

PRECISION_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16), "bf16": BFLOAT16}


def cast_model_(model, dtype) -> None:
    """Every parameter, and every floating array a layer keeps (a sinusoid table), in `dtype`, in place:
    a constant left in float32 would turn every half-precision sum it joins back into float32."""
    for parameter in model.parameters():
        parameter.data, parameter.grad = parameter.data.astype(dtype), None
    for module in model.modules():
        for name, value in vars(module).items():
            if (isinstance(value, np.ndarray) or is_cuda_array(value)) and is_floating(value.dtype):
                setattr(module, name, value.astype(dtype))


def _float32_copy(parameter: Parameter) -> Parameter:
    """A new float32 Parameter with `parameter`'s values, on its device."""
    master = Parameter(as_array_on(parameter.data, "cpu").astype(np.float32))
    master.data = to_device(master.data, parameter.device)
    return master


class MasterWeights:
    """The weights the optimizer updates, for a model that computes in `dtype`.

    With float32_master (the default) and a half-precision dtype, the model is cast to `dtype` and the
    optimizer gets float32 copies of its parameters; otherwise (float32 training, or the "pure half
    precision" contrast with float32_master=False) the model's own parameters are the master weights and
    the two copy methods do nothing. Give the optimizer `master_weights.named_parameters()` (or the object
    itself, wherever a model's named_parameters() is read).
    """

    def __init__(self, model, dtype=np.float32, float32_master: bool = True):
        self.model, self.dtype = model, np.dtype(dtype)
        self.model_parameters = OrderedDict(model.named_parameters())
        self.has_copies = float32_master and self.dtype != np.float32
        self.master = (OrderedDict((name, _float32_copy(p)) for name, p in self.model_parameters.items())
                       if self.has_copies else self.model_parameters)
        if self.dtype != np.float32:  # copied first: the model starts as the rounding of its float32 initialisation
            cast_model_(model, self.dtype)

    def named_parameters(self):
        return list(self.master.items())

    def parameters(self) -> list:
        return list(self.master.values())

    def zero_grad(self) -> None:
        for parameter in (*self.model_parameters.values(), *self.master.values()):
            parameter.grad = None

    def copy_grads_to_master(self) -> None:
        """master.grad = the model's half-precision gradient, in float32 (an inf stays inf: the scaler sees it)."""
        if self.has_copies:
            for name, parameter in self.model_parameters.items():
                self.master[name].grad = None if parameter.grad is None else parameter.grad.astype(np.float32)

    def copy_master_to_model(self) -> None:
        """Round the master weights into the model's parameters (in place: the model's arrays stay its own)."""
        if self.has_copies:
            for name, parameter in self.model_parameters.items():
                parameter.data[...] = self.master[name].data.astype(self.dtype)

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Host copies of the master weights by parameter name: the float32 truth, which a float32 model
        (`sample`, evaluation) loads as it is and a half-precision one rounds."""
        return OrderedDict((name, np.array(to_device(p.data, "cpu"))) for name, p in self.master.items())

    def load_state_dict(self, state_dict) -> None:
        """Load weights saved by state_dict() (the model's own checks name any missing or misshapen one)."""
        self.model.load_state_dict(state_dict)
        if self.has_copies:
            for name, master in self.master.items():
                master.data[...] = as_array_on(np.asarray(state_dict[name], dtype=np.float32), master.device)
            self.copy_master_to_model()


def mixed_precision_for(model, precision: str) -> tuple[MasterWeights, GradScaler]:
    """(master weights, loss scaler) for a TrainConfig precision; the scaler is on for fp16 only."""
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"mixed_precision_for: precision must be one of {sorted(PRECISION_DTYPES)}, got {precision!r}")
    return MasterWeights(model, PRECISION_DTYPES[precision]), GradScaler(enabled=precision == "fp16")
