"""Module: the base class of every layer and model.

A Module finds its parameters by looking at its own attributes: a `Parameter`, a sub-`Module`, or a
list/tuple of Modules. So `self.fc = Linear(4, 8)` is all it takes to register `fc.weight` and
`fc.bias`, in the order they were assigned.
"""
from __future__ import annotations

from collections import OrderedDict
from itertools import count

import numpy as np

from ..device import as_array_on, check_device, is_cuda_array, to_device
from .parameter import Parameter


_hook_keys = count()  # a unique key per registered hook, so one function can be registered twice


class HookHandle:
    """What register_forward_hook returns: `.remove()` takes the hook off again; as a context manager
    (`with layer.register_forward_hook(fn):`) it is removed when the block ends, even on an error."""

    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


class Module:
    training: bool = True
    # Class-level defaults: a module without hooks pays two empty-dict checks per call. Registering a hook
    # gives the instance its own dicts (insertion-ordered: hooks run in the order they were added).
    _forward_pre_hooks: dict = {}
    _forward_hooks: dict = {}

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        """Run forward, with any hooks around it. Models call their layers as `layer(x)`, never
        `layer.forward(x)`, so a hook on any layer sees every call."""
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):  # a copy: a hook may remove itself
                replacement = hook(self, args)
                if replacement is not None:
                    args = replacement if isinstance(replacement, tuple) else (replacement,)
        output = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                replacement = hook(self, args, output)
                if replacement is not None:
                    output = replacement
        return output

    # ------------------------------------------------------------ hooks
    def register_forward_hook(self, hook) -> HookHandle:
        """hook(module, args, output) runs after every forward; if it returns something other than None,
        that replaces the output (what the next layer receives). Reading activations and patching them
        both go through this. args are the positional inputs (keyword arguments are not passed)."""
        return self._add_hook("_forward_hooks", hook)

    def register_forward_pre_hook(self, hook) -> HookHandle:
        """hook(module, args) runs before every forward; returning a tuple (or one value) replaces the
        positional inputs, None keeps them."""
        return self._add_hook("_forward_pre_hooks", hook)

    def _add_hook(self, kind: str, hook) -> HookHandle:
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}: a hook must be a function (module, args[, output]), got {hook!r}")
        if kind not in vars(self):
            setattr(self, kind, {})
        key = next(_hook_keys)
        getattr(self, kind)[key] = hook
        return HookHandle(getattr(self, kind), key)

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
