"""Reading and rewriting a model's activations by layer name, built on forward hooks (Q32).

Every layer of a model has a dotted name from `model.named_modules()`: in a GPT, "token_embedding",
"blocks.0" (a whole Transformer block: its output is the residual stream after it), "blocks.0.attn",
"blocks.0.mlp_down", "final_norm", "lm_head". Two things an interpretability experiment needs:

    with capture_activations(model, ["blocks.0", "blocks.1"]) as acts:   read: what did layer X output?
        model(ids)
    acts["blocks.1"].data                                                 (B, T, d)

    with replace_activation(model, "blocks.0.attn", np.zeros(shape)):    write: what happens downstream
        patched_logits = model(ids)                                       if layer X had output this instead?

Nothing about the model changes: the hooks are removed when the `with` block ends, even on an error.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..nn.module import HookHandle, Module
from ..tensor import Tensor


def find_module(model: Module, name: str) -> Module:
    """The sub-module called `name` ("" is the model itself); a KeyError lists the names there are."""
    modules = dict(model.named_modules())
    if name not in modules:
        names = [n for n in modules if n]
        raise KeyError(f"find_module: {type(model).__name__} has no module {name!r}; its modules are {names}")
    return modules[name]


@contextmanager
def capture_activations(model: Module, module_names):
    """Inside the block, every forward of the named layers stores its output (the Tensor itself, `.data`
    for the array) in the yielded dict under the layer's name. A layer called twice keeps its last output."""
    if isinstance(module_names, str):
        raise TypeError(f"capture_activations: module_names must be a list of names, got the string "
                        f"{module_names!r}; write [{module_names!r}]")
    layers = {name: find_module(model, name) for name in module_names}
    captured = {}

    def recorder(name):
        def record(module, args, output):
            captured[name] = output
        return record

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def replace_activation(model: Module, name: str, replacement) -> HookHandle:
    """Make layer `name` output `replacement` instead of what it computed (activation patching).

    replacement: an array or Tensor of the output's shape (e.g. the same layer's activation captured on
        another input), or a function output Tensor -> new output (array or Tensor), e.g. scaling it.
    Returns the hook's handle: `.remove()` it, or use it as a context manager.
    """
    layer = find_module(model, name)

    def patch(module, args, output):
        if not isinstance(output, Tensor):
            raise TypeError(f"replace_activation: {name!r} outputs a {type(output).__name__}, not a Tensor; "
                            f"patch one of its sub-layers instead")
        new = replacement(output) if callable(replacement) else replacement
        if not isinstance(new, Tensor):
            new = Tensor(np.asarray(new, dtype=output.dtype))
        if new.shape != output.shape:
            raise ValueError(f"replace_activation: the replacement for {name!r} has shape {new.shape}, "
                             f"but the layer outputs {output.shape}; it must be the same shape")
        return new

    return layer.register_forward_hook(patch)
