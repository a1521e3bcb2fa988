"""Quantized checkpoints: the integers, scales and zero points as they are, in a compressed .npz.

    save_quantized(model, "gpt_int8.npz", tokenizer=tokenizer)      # after quantize(model, ...)
    model, tokenizer, metadata = load_quantized("gpt_int8.npz")

One file through tinygrad_llm/checkpoint.py (written to a temporary file and renamed, read with
allow_pickle=False), deflated with np.savez_compressed:
    arrays:   quantized.<layer>.values / .scales / .zero_points / .bias    each QuantizedLinear
              float.<parameter name>                                      everything that stayed float
    metadata: the format, the model's class and constructor arguments, the tokenizer, and for each quantized
              layer its name, bits, group size and shape.
Loading builds the float architecture from its config, swaps the listed Linear layers for QuantizedLinear
layers holding the stored integers, and loads the float arrays into the rest: nothing is quantized again,
so the loaded model computes exactly what the saved one did.
"""
from __future__ import annotations

import numpy as np

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..data import Tokenizer
from ..kernels.reference.quantized_matmul import check_quantized_operands
from ..training import load_trained_model, rebuild_model
from .quantization import QuantizedTensor
from .quantize_model import module_parents, replace_child
from .quantized_linear import QuantizedLinear

FORMAT = "tinygrad_llm.quantized/1"
PARTS = ("values", "scales", "zero_points", "bias")


def save_quantized(model, path, tokenizer=None, metadata: dict | None = None):
    """Write a model with QuantizedLinear layers (and its tokenizer) to `path`; returns the path."""
    layers = {name: module for name, module in model.named_modules() if isinstance(module, QuantizedLinear)}
    if not layers or not hasattr(model, "config"):
        raise ValueError(f"save_quantized: expected a quantized model with a `config` (its constructor arguments), got "
                         f"{type(model).__name__} with {len(layers)} QuantizedLinear layers; call quantize(model) "
                         "first, and save float models with the training checkpoint")
    arrays = {f"float.{name}": value for name, value in model.state_dict().items()}
    for name, layer in layers.items():
        for part in PARTS:
            value = getattr(layer, part)
            if value is not None:
                arrays[f"quantized.{name}.{part}"] = np.asarray(value)
    return save_checkpoint(path, arrays, {
        **(metadata or {}),
        "format": FORMAT,
        "model_class": type(model).__name__,
        "model_config": model.config,
        "tokenizer": None if tokenizer is None else tokenizer.to_dict(),
        "quantized_layers": [{"name": name, "bits": layer.bits, "group_size": layer.group_size,
                              "shape": [layer.out_features, layer.in_features]} for name, layer in layers.items()],
    }, compressed=True)


def load_quantized(path):
    """(model in eval mode, tokenizer or None, metadata) from a file written by save_quantized."""
    arrays, metadata = load_checkpoint(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"load_quantized: {path} is not a quantized checkpoint (format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r}); write one with "
                              "`python -m tinygrad_llm quantize`")
    return _rebuild(path, arrays, metadata)


def load_model(path):
    """(model, tokenizer, metadata) from a training checkpoint or a quantized one, whichever `path` holds."""
    arrays, metadata = load_checkpoint(path)
    return _rebuild(path, arrays, metadata) if metadata.get("format") == FORMAT else load_trained_model(path)


def _rebuild(path, arrays: dict, metadata: dict):
    model = rebuild_model(metadata["model_class"], metadata["model_config"])
    modules, parents = dict(model.named_modules()), module_parents(model)
    for spec in metadata["quantized_layers"]:
        name = spec["name"]
        parts = {part: arrays.get(f"quantized.{name}.{part}") for part in PARTS}
        weight = QuantizedTensor(parts["values"], parts["scales"], parts["zero_points"], spec["bits"],
                                 spec["group_size"], tuple(spec["shape"]))
        _check_layer(path, name, modules.get(name), weight)
        replace_child(parents[name], modules[name], QuantizedLinear(weight, parts["bias"]))
    model.load_state_dict({name[len("float."):]: value for name, value in arrays.items() if name.startswith("float.")})
    tokenizer = None if metadata["tokenizer"] is None else Tokenizer.from_dict(metadata["tokenizer"])
    return model.eval(), tokenizer, metadata


def _check_layer(path, name, module, weight: QuantizedTensor) -> None:
    """The stored arrays must follow the kernels' format and fit the layer the architecture has at `name`."""
    expected = None if module is None else (module.out_features, module.in_features)
    if expected != weight.shape or weight.values is None or weight.scales is None:
        raise CheckpointError(f"load_quantized: {path} stores a {weight.shape} quantized layer {name!r}, but the model "
                              f"has {expected if module is not None else 'no such layer'}; the file is inconsistent")
    try:
        check_quantized_operands(np.zeros((1, weight.shape[1]), np.float32), weight.values, weight.scales,
                                 weight.zero_points, weight.bits, weight.group_size)
    except ValueError as error:
        raise CheckpointError(f"load_quantized: {path}, layer {name!r}: {error}") from error
