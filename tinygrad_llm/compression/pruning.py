"""Unstructured magnitude pruning (Q20, M35, M45): set the smallest weights of every Linear layer to zero.

    keep = ceil((1 - s) * n) weights of largest |w|, zero the other n - keep       s: the sparsity

A weight close to 0 contributes little to x W^T, so removing the smallest ones is the cheapest guess at
which ones matter least. Two scopes:
- "layer": every layer loses the same fraction s of its own weights;
- "global": one threshold over all the layers together, so a layer with many small weights loses more
  than s and a layer with large ones less (the total is still s).

The zeros stay in the dense arrays: the model has the same shape and every matrix product costs exactly
what it did (M35). Only a sparse storage format with a sparse kernel, or structured pruning
(structured_pruning.py), turns zeros into speed; and training a model with zeros costs the same as training
the dense one (M45): pruning is a compression step after training, not a way to train faster.

Fine-tuning after pruning recovers some of the lost quality, and it must keep the pruned weights at exactly
0. Masking the gradients alone is not enough: AdamW's momentum, built up before pruning, keeps moving a
weight whose gradient is now 0. So `masked_training_step` masks the gradients (the clipping norm and the
moments then ignore pruned weights) AND re-applies the masks after the optimizer step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..nn.layers import Linear
from ..nn.module import Module
from ..optim import clip_grad_norm_

SCOPES = ("layer", "global")


def kept_count(size: int, sparsity: float) -> int:
    """ceil((1 - sparsity) * size): how many weights a mask keeps. The product is rounded to 9 decimals first,
    so that 0.7 * 10 = 7.000000000000001 in floating point counts as 7 kept, not 8."""
    return math.ceil(round((1 - sparsity) * size, 9))


def check_sparsity(function: str, sparsity) -> float:
    """sparsity as a float, or a clear error naming `function` when it is not a fraction in [0, 1]."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating)) or not 0 <= sparsity <= 1:
        raise ValueError(f"{function}: sparsity is the fraction of weights to remove and must be in [0, 1], got "
                         f"{sparsity!r} (e.g. 0.9 removes 90% and keeps 10%)")
    return float(sparsity)


def magnitude_mask(weight, sparsity: float) -> np.ndarray:
    """A boolean mask of weight's shape, True at the ceil((1 - sparsity) * n) entries of largest |w|.

    Ties are broken by position: among equal magnitudes the entry that comes first in row-major (C) order is
    kept. A stable sort of -|w| gives exactly that order, so the mask is deterministic and the count exact
    even when many weights are equal (all zero, say).
    """
    sparsity = check_sparsity("magnitude_mask", sparsity)
    weight = np.asarray(getattr(weight, "data", weight))
    magnitudes = np.abs(weight).ravel()
    largest_first = np.argsort(-magnitudes, kind="stable")
    keep = np.zeros(magnitudes.size, dtype=bool)
    keep[largest_first[:kept_count(magnitudes.size, sparsity)]] = True
    return keep.reshape(weight.shape)


def prunable_weights(model: Module) -> tuple[dict, dict]:
    """({name: Parameter} of every Linear weight that pruning touches, {name: why} for the matrices it skips).

    Skipped: a Linear weight that is also an embedding table (the LM head tied to the token embedding), since
    zeroing it would delete parts of token vectors in the lookup as well; the embeddings themselves, which are
    lookups (a zero saves no multiply). Vectors are never pruned and not listed: every bias and LayerNorm
    parameter is O(d) numbers that scales or shifts a whole feature, a tiny share of the model.
    """
    lookup_tables = {id(p) for module in model.modules() if not isinstance(module, Linear)
                     for p in vars(module).values() if getattr(p, "ndim", 0) == 2}
    prunable, skipped = {}, {}
    for module_name, module in model.named_modules():
        if isinstance(module, Linear):
            name = f"{module_name}.weight" if module_name else "weight"
            if id(module.weight) in lookup_tables:
                skipped[name] = "tied to an embedding table: pruning it would also prune the token lookup"
            else:
                prunable[name] = module.weight
    for name, parameter in model.named_parameters():
        if id(parameter) in lookup_tables and name not in skipped:
            skipped[name] = "an embedding table (a lookup: its zeros would save no compute)"
    return prunable, skipped


@dataclass
class PruningMasks:
    """The keep-masks of a pruned model's Linear weights: re-applies itself and reports what was pruned."""
    parameters: dict                      # name -> the Parameter the mask belongs to
    masks: dict                           # name -> bool array, True = kept
    scope: str
    sparsity: float
    skipped: dict = field(default_factory=dict)  # name -> why it is not pruned

    def apply(self) -> None:
        """Zero every pruned weight in place (after pruning, and after every optimizer step)."""
        for name, parameter in self.parameters.items():
            parameter.data[~self.masks[name]] = 0

    def mask_gradients(self) -> None:
        """Zero the pruned weights' gradients (after backward, before clipping and the optimizer step)."""
        for name, parameter in self.parameters.items():
            if parameter.grad is not None:
                parameter.grad[~self.masks[name]] = 0

    def report(self) -> list[dict]:
        """One row per pruned layer: its shape, weights, kept count, the sparsity the mask asks for and the
        fraction of its weights that are exactly 0 now (at least the mask's: a kept weight may be 0 too)."""
        rows = []
        for name, parameter in self.parameters.items():
            size, kept = int(parameter.data.size), int(self.masks[name].sum())
            rows.append({"layer": name, "shape": tuple(parameter.shape), "weights": size, "kept": kept,
                         "mask_sparsity": (size - kept) / size,
                         "zero_fraction": int(np.count_nonzero(parameter.data == 0)) / size})
        return rows

    def overall_sparsity(self) -> float:
        """The fraction of all the prunable weights that the masks remove."""
        total = sum(mask.size for mask in self.masks.values())
        return 1 - sum(int(mask.sum()) for mask in self.masks.values()) / total


def prune_magnitude(model: Module, sparsity: float, scope: str = "layer") -> PruningMasks:
    """Zero the smallest-magnitude Linear weights of `model` in place and return their masks.

    scope="layer": each weight matrix keeps ceil((1 - sparsity) * its size) of its own largest |w|.
    scope="global": all prunable matrices are ranked together and ceil((1 - sparsity) * total) are kept;
    ties are broken by position in the model's parameter order, then row-major within a matrix.
    Which weights are left alone, and why: see prunable_weights (the result's `skipped`).
    """
    sparsity = check_sparsity("prune_magnitude", sparsity)
    if scope not in SCOPES:
        raise ValueError(f"prune_magnitude: scope must be one of {SCOPES}, got {scope!r}: 'layer' prunes each "
                         "matrix by the same fraction, 'global' ranks all matrices together")
    parameters, skipped = prunable_weights(model)
    if not parameters:
        raise ValueError(f"prune_magnitude: {type(model).__name__} has no prunable Linear weight (skipped: "
                         f"{skipped})")
    if scope == "layer":
        masks = {name: magnitude_mask(parameter.data, sparsity) for name, parameter in parameters.items()}
    else:
        flat = magnitude_mask(np.concatenate([parameter.data.ravel() for parameter in parameters.values()]), sparsity)
        ends = np.cumsum([parameter.data.size for parameter in parameters.values()])
        masks = {name: piece.reshape(parameter.shape)
                 for (name, parameter), piece in zip(parameters.items(), np.split(flat, ends[:-1]))}
    pruned = PruningMasks(parameters, masks, scope, sparsity, skipped)
    pruned.apply()
    return pruned


def masked_training_step(loss_fn, optimizer, masks: PruningMasks, clip_norm: float = 1.0) -> float:
    """One fine-tuning step that keeps the pruned weights at exactly 0; returns the loss.

    zero_grad -> loss_fn() -> backward -> mask the gradients -> clip -> optimizer step -> re-apply the masks.
    The last line is what keeps pruned weights dead: the optimizer's momentum (and anything else it adds)
    could otherwise move them even with a zero gradient.
    """
    optimizer.zero_grad()
    loss = loss_fn()
    loss.backward()
    masks.mask_gradients()
    if clip_norm > 0:
        clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip_norm)
    optimizer.step()
    masks.apply()
    return loss.item()
