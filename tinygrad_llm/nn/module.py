"""Module: the base class of every layer and model.

A Module finds its parameters by looking at its own attributes: a `Parameter`, a sub-`Module`, or a
list/tuple of Modules. So `self.fc = Linear(4, 8)` is all it takes to register `fc.weight` and
`fc.bias`, in the order they were assigned.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..device import as_array_on, check_device, is_cuda_array, to_device
from .parameter import Parameter


class Module:
    training: bool = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ the tree of modules
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, child in enumerate(value):
                    yield f"{name}.{i}", child

    def children(self):
        return [child for _, child in self.named_children()]

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix: str = ""):
        """(dotted name, parameter) pairs; a parameter shared by two layers (tied weights) appears once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True):
        """Training mode (dropout active). Returns self so `model.train()` can be chained."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        """Evaluation mode: dropout becomes the identity. Does not stop gradients; use tgl.no_grad() for that."""
        return self.train(False)

    def double(self):
        """Every parameter in float64, in place: what a gradient check of a whole layer needs."""
        return self._cast_parameters(np.float64)

    def float(self):
        """Every parameter in float32, in place (the training default)."""
        return self._cast_parameters(np.float32)

    def _cast_parameters(self, dtype):
        for p in self.parameters():
            p.data, p.grad = p.data.astype(dtype), None
        return self

    def to(self, device: str):
        """Move every parameter (and every array a layer keeps, such as a sinusoid table) to `device`, in
        place; returns self, so `model = Model(...).to("cuda")` reads naturally. Gradients move along.
        A clear DeviceUnavailableError when the device cannot be used here."""
        device = check_device(device)
        for p in self.parameters():
            p.data = to_device(p.data, device)
            p.grad = None if p.grad is None else to_device(p.grad, device)
        for module in self.modules():
            for name, value in vars(module).items():
                if isinstance(value, np.ndarray) or is_cuda_array(value):
                    setattr(module, name, to_device(value, device))
        return self

    @property
    def device(self) -> str:
        """Where the parameters live ('cpu' for a model without any)."""
        parameters = self.parameters()
        return parameters[0].device if parameters else "cpu"

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------ saving and loading
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter's array on the host (NumPy), by dotted name: what a checkpoint stores."""
        return OrderedDict((name, np.array(to_device(p.data, "cpu"))) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters. With strict=True, any missing key, unexpected key or shape
        mismatch is an error that lists all of them; with strict=False, only shape mismatches are."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [
            f"{k}: checkpoint {tuple(np.shape(state_dict[k]))} vs model {own[k].shape}"
            for k in own
            if k in state_dict and tuple(np.shape(state_dict[k])) != own[k].shape
        ]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if mismatched:
            problems.append(f"shape mismatches: {mismatched}")
        if problems:
            raise KeyError(f"load_state_dict into {type(self).__name__} failed; " + "; ".join(problems))
        for name, p in own.items():
            if name in state_dict:
                p.data[...] = as_array_on(np.asarray(state_dict[name], dtype=p.dtype), p.device)
        return self

    # ------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The layer's own settings, shown inside its parentheses in repr()."""
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_text}")
        return "\n".join(lines) + "\n)"
