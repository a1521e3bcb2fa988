"""LoRA: adapt a pretrained model by learning a small low-rank correction to its weights (Q27).

Full fine-tuning changes every number of every weight W (out x in). LoRA freezes W and learns its change as
a product of two thin matrices, A (r x in) and B (out x r), with the rank r much smaller than in and out:

    y = x W^T + b  +  (alpha / r) * (x A^T) B^T          i.e.  W_effective = W + (alpha / r) * B A

- **Few trainable numbers.** r (in + out) per layer instead of in * out: for a 768 x 768 projection and r = 8,
  12,288 instead of 589,824. AdamW keeps two moment arrays per trainable number, so its state shrinks as much;
  the frozen weights get no gradient and no optimizer state (`optimizer_state_bytes` reads the real state).
- **B starts at zero, A random.** B A = 0, so the adapted model is bit-for-bit the pretrained one at step 0.
  A must not be zero too: the gradient of B is scale * (x A^T)^T dy, so with A = 0 B could never move, and
  the gradient of A is scale * B^T dy^T x, zero while B is zero. With A random, B learns first and A follows.
- **alpha / r.** The update's size is set by alpha, not by r: A's entries are ~1/sqrt(in) whatever r, and
  B A sums r terms, so without the division a larger rank would mean a larger effective learning rate and
  every change of r would need a new learning-rate sweep.
- **Merge for inference.** W + (alpha / r) B A is an ordinary weight: merged, the layer costs exactly what the
  pretrained one did. `unmerge` puts the original W back from a saved copy, not by subtracting: in floating
  point (W + D) - D is not always W (the sum rounds to W's precision), so subtraction drifts a little at each
  merge/unmerge cycle, while the copy is exact.
- **Adapters are small files.** One base model serves many tasks: each task stores only its A and B matrices
  (`save_adapters`), and `load_adapters` puts them onto a fresh copy of the base model.

    names = apply_lora(model, rank=4, alpha=8, targets=("q_proj", "v_proj"))   # in place; freezes the rest
    optimizer = AdamW(trainable_parameters(model), lr=1e-3)
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import numpy as np

from ..checkpoint import load_checkpoint, save_checkpoint
from ..compression.quantize_model import parameter_owners
from ..compression.quantize_model import module_parents, replace_child
from ..device import as_array_on
from ..nn import functional as F
from ..nn import init
from ..nn.layers import Linear
from ..nn.module import Module
from ..nn.parameter import Parameter

DEFAULT_TARGETS = ("q_proj", "v_proj")  # the LoRA paper's choice: attention's query and value projections
ADAPTER_FORMAT = "lora_adapters"


class LoRALinear(Module):
    """A frozen Linear plus a trainable low-rank update: y = base(x) + (alpha / rank) x A^T B^T.

    The base layer's weight and bias become frozen (requires_grad False): backward gives them no gradient, and
    `trainable_parameters` leaves them out of the optimizer. Only lora_A (rank, in) and lora_B (out, rank) learn.
    """

    def __init__(self, base: Linear, rank: int, alpha: float):
        if not isinstance(base, Linear):
            raise TypeError(f"LoRALinear: base must be a Linear layer, got a {type(base).__name__}")
        in_features, out_features = base.in_features, base.out_features
        if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(in_features, out_features):
            raise ValueError(
                f"LoRALinear: rank must be an integer in 1..{min(in_features, out_features)} for a {out_features} x "
                f"{in_features} weight, got {rank!r}; a product B A of that shape has rank at most min(in, out), so a "
                "larger rank adds parameters and nothing else (fine-tune the whole layer instead)"
            )
        if not (isinstance(alpha, (int, float, np.number)) and alpha > 0):
            raise ValueError(f"LoRALinear: alpha must be a positive number (the update is scaled by alpha / rank), "
                             f"got {alpha!r}; alpha = rank gives a scale of 1")
        self.base, self.rank, self.alpha = base, int(rank), float(alpha)
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        dtype = base.weight.dtype
        self.lora_A = init.kaiming_uniform_(Parameter(np.empty((rank, in_features), dtype=dtype)),
                                            gain=1 / math.sqrt(3))  # +-1/sqrt(in), like Linear's own weights
        self.lora_B = Parameter(np.zeros((out_features, rank), dtype=dtype))
        if base.device != "cpu":
            self.to(base.device)
        self._weight_before_merge = None

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def merged(self) -> bool:
        return self._weight_before_merge is not None

    def delta_weight(self):
        """The update the adapter adds to the base weight, (alpha / rank) B A, as an (out, in) array."""
        return self.scale * (self.lora_B.data @ self.lora_A.data)

    def forward(self, x):
        if self.merged:  # the update already lives in base.weight
            return self.base(x)
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    def merge(self) -> None:
        """Fold the update into the base weight (W += scale B A), keeping a copy of W so unmerge is exact."""
        if self.merged:
            raise RuntimeError("LoRALinear.merge: the adapter is already merged; unmerge() first to merge it again")
        weight = self.base.weight.data
        self._weight_before_merge = weight.copy()
        weight[...] = weight + self.delta_weight().astype(weight.dtype)  # in place: the Parameter keeps its array

    def unmerge(self) -> None:
        """Put the original base weight back, bit for bit (from the copy, not by subtracting the update)."""
        if not self.merged:
            raise RuntimeError("LoRALinear.unmerge: the adapter is not merged; there is nothing to take out")
        self.base.weight.data[...] = self._weight_before_merge
        self._weight_before_merge = None

    def extra_repr(self):
        return (f"in_features={self.base.in_features}, out_features={self.base.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}, scale={self.scale:g}, merged={self.merged}")


# ------------------------------------------------------------------ adapting a whole model
def _matcher(targets):
    """targets as a predicate on (dotted name, module): a callable is used as is; a string or a tuple of strings
    matches every name that contains one of them."""
    if callable(targets):
        return targets
    patterns = (targets,) if isinstance(targets, str) else tuple(targets)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"apply_lora: targets must be non-empty name patterns such as ('q_proj', 'v_proj') or a "
                         f"function (name, module) -> bool, got {targets!r}")
    return lambda name, module: any(pattern in name for pattern in patterns)


def lora_layers(model: Module) -> dict:
    """Dotted name -> LoRALinear, for every adapter in `model`, in named_modules order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def apply_lora(model: Module, rank: int = 4, alpha: float = 8.0, targets=DEFAULT_TARGETS) -> list[str]:
    """Replace the chosen Linear layers of `model` (any Module tree) by LoRALinear layers, in place, and freeze
    every parameter the model had: only the adapters train. Returns the adapted layers' dotted names.

    targets: name patterns (a layer is adapted when its name contains one) or a function (name, module) -> bool.
    A Linear whose weight is shared with another layer (a tied LM head, whose weight is the token embedding) is
    skipped with a warning: merging an update into that shared array would change the embedding as well, so the
    merged model would no longer compute what the adapter model does. To train a new head alongside the adapters,
    call requires_grad_(True) on its parameters afterwards.
    """
    if isinstance(model, Linear):
        raise ValueError("apply_lora: the model is one Linear layer, which cannot replace itself in place; use "
                         "LoRALinear(layer, rank, alpha)")
    if lora_layers(model):
        raise ValueError(f"apply_lora: the model already has LoRA adapters ({', '.join(lora_layers(model))}); "
                         "apply them once, to the base model")
    matches, owners = _matcher(targets), parameter_owners(model)
    linears = {name: module for name, module in model.named_modules() if isinstance(module, Linear)}
    chosen = [name for name, module in linears.items() if matches(name, module)]
    if not chosen:
        raise ValueError(f"apply_lora: no Linear layer matches targets={targets!r}; this model's Linear layers are "
                         f"{list(linears)}")
    adapted = {}
    for name in chosen:
        shared_with = [owner for owner in owners[id(linears[name].weight)] if owner != f"{name}.weight"]
        if shared_with:
            warnings.warn(f"apply_lora: skipped {name}: its weight is also {', '.join(shared_with)} (tied), and "
                          "merging an update into a shared array would change that layer too", stacklevel=2)
            continue
        adapted[name] = (rank, alpha)
    if not adapted:
        raise ValueError(f"apply_lora: every Linear layer matching targets={targets!r} shares its weight with another "
                         "layer (see the warnings), so nothing was adapted; choose other targets")
    _freeze_and_wrap(model, adapted)
    return list(adapted)


def _freeze_and_wrap(model: Module, rank_and_alpha: dict) -> None:
    """Freeze every parameter of `model`, then put a LoRALinear in place of each named Linear.
    rank_and_alpha: dotted name -> (rank, alpha). Every adapter is built before any layer is replaced, so a bad
    rank leaves the model's structure as it was."""
    modules = dict(model.named_modules())
    adapters = {name: LoRALinear(modules[name], rank, alpha) for name, (rank, alpha) in rank_and_alpha.items()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parents = module_parents(model)
    for name, adapter in adapters.items():
        replace_child(parents[name], modules[name], adapter)


def trainable_parameters(model: Module) -> list:
    """The parameters an optimizer should update: those that require a gradient (after apply_lora, the adapters)."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_counts(model: Module) -> dict:
    """{'trainable': numbers that learn, 'total': all numbers (a tied weight once), 'trainable_fraction'}."""
    total = model.num_parameters()
    trainable = sum(p.numel() for p in trainable_parameters(model))
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / total if total else 0.0}


def merge_lora(model: Module) -> list[str]:
    """Merge every adapter into its base weight (inference at the base model's cost); returns the merged names."""
    layers = lora_layers(model)
    for layer in layers.values():
        layer.merge()
    return list(layers)


def unmerge_lora(model: Module) -> list[str]:
    """Undo merge_lora: every base weight is restored bit for bit; returns the unmerged names."""
    layers = lora_layers(model)
    for layer in layers.values():
        layer.unmerge()
    return list(layers)


# ------------------------------------------------------------------ adapters on their own
def lora_state_dict(model: Module) -> "OrderedDict[str, np.ndarray]":
    """Host copies of the adapter matrices only ('<layer>.lora_A', '<layer>.lora_B'): what a task adds to the base."""
    state = OrderedDict()
    for name, layer in lora_layers(model).items():
        for attribute in ("lora_A", "lora_B"):
            state[f"{name}.{attribute}"] = np.array(as_array_on(getattr(layer, attribute).data, "cpu"))
    return state


def save_adapters(model: Module, path):
    """Write the adapters (A and B of every LoRALinear) and each layer's rank and alpha to an .npz file, atomically.
    The base model's weights are not in it: a few kilobytes per task instead of a copy of the model."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("save_adapters: the model has no LoRA adapters; call apply_lora(model, ...) first")
    metadata = {"format": ADAPTER_FORMAT,
                "layers": {name: {"rank": layer.rank, "alpha": layer.alpha} for name, layer in layers.items()}}
    return save_checkpoint(path, lora_state_dict(model), metadata)


def load_adapters(model: Module, path) -> list[str]:
    """Load adapters saved by save_adapters into `model`; returns the adapted layer names.

    A model without adapters (a fresh copy of the base model) gets them first, on the layers named in the file
    with the saved rank and alpha. A model with other layers, other shapes, or other ranks or alphas is an error
    that lists every difference, and the model is left as it was.
    """
    arrays, metadata = load_checkpoint(path)
    if metadata.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"load_adapters: {path} is not an adapter file (its metadata format is "
                         f"{metadata.get('format')!r}); write one with save_adapters(model, path)")
    saved, layers = metadata["layers"], lora_layers(model)
    if layers:
        found = {name: (layer.base, layer.rank, layer.alpha, layer.merged) for name, layer in layers.items()}
    else:  # a fresh base model: the file says which of its Linear layers to adapt
        found = {name: (module, saved[name]["rank"], saved[name]["alpha"], False)
                 for name, module in model.named_modules() if isinstance(module, Linear) and name in saved}
    problems = _adapter_mismatches(saved, arrays, found)
    if problems:
        raise ValueError(f"load_adapters: {path} does not fit this model (adapters belong to the base model they "
                         "were trained on); nothing was loaded: " + "; ".join(problems))
    if not layers:
        _freeze_and_wrap(model, {name: (rank, alpha) for name, (_, rank, alpha, _) in found.items()})
    for name, layer in lora_layers(model).items():
        for attribute in ("lora_A", "lora_B"):
            parameter = getattr(layer, attribute)
            parameter.data[...] = as_array_on(arrays[f"{name}.{attribute}"].astype(parameter.dtype), parameter.device)
    return list(found)


def _adapter_mismatches(saved: dict, arrays: dict, found: dict) -> list[str]:
    """Every difference between an adapter file and the model's layers, as text (empty when they fit).
    found: dotted name -> (base Linear, rank, alpha, merged) of each layer the model would load into."""
    problems = [f"{name}: in the file, not a Linear/adapted layer of the model" for name in saved if name not in found]
    problems += [f"{name}: adapted in the model, not in the file" for name in found if name not in saved]
    for name in [name for name in found if name in saved]:
        base, rank, alpha, merged = found[name]
        if (saved[name]["rank"], saved[name]["alpha"]) != (rank, alpha):
            problems.append(f"{name}: file rank {saved[name]['rank']}, alpha {saved[name]['alpha']:g} vs model rank "
                            f"{rank}, alpha {alpha:g}")
        expected = {"lora_A": (rank, base.in_features), "lora_B": (base.out_features, rank)}
        for attribute, shape in expected.items():
            if arrays[f"{name}.{attribute}"].shape != shape:
                problems.append(f"{name}.{attribute}: file {arrays[f'{name}.{attribute}'].shape} vs model {shape}")
        if merged:
            problems.append(f"{name}: merged; unmerge_lora(model) before loading other adapters")
    return problems


# ------------------------------------------------------------------ what parameter efficiency saves
def optimizer_state_bytes(optimizer) -> int:
    """Bytes of the arrays `optimizer` keeps between steps, read from its state (Adam/AdamW: exp_avg and
    exp_avg_sq, one of each per trainable parameter). State is created at a parameter's first update, so read
    it after a step; the step counters are Python ints and hold no array."""
    return sum(value.nbytes for state in optimizer.state.values() for value in state.values()
               if hasattr(value, "nbytes"))


def adamw_state_bytes(parameters) -> int:
    """What AdamW's state will take for `parameters`: two arrays (first and second moments) of each one's size."""
    return 2 * sum(p.data.nbytes for p in parameters)
