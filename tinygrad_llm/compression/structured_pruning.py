"""Structured pruning (Q20, M35): remove whole MLP neurons and whole attention heads, so the matrices shrink.

Unstructured zeros leave every matrix its shape, and a dense kernel multiplies them like any other number.
Removing a STRUCTURE instead deletes rows and columns, and what is left is a smaller dense model that
the same kernels run faster, with no sparse format:

    MLP neuron j of a block      row j of mlp_up (and its bias), column j of mlp_down
                                 -> mlp_up (4d -> 4d - r rows), mlp_down (4d - r columns)
    attention head h             rows h*D .. h*D + D - 1 of q_proj, k_proj, v_proj (and their biases),
                                 the same columns of out_proj; the attention's num_heads drops by one

Removing a structure computes exactly what zeroing it computes: a neuron whose incoming row and bias are 0
has pre-activation 0 and GELU(0) = 0, so its column of mlp_down adds nothing; a head whose value rows are
0 outputs 0 whatever it attends to, and its out_proj columns add nothing. The tests hold the shrunk model
to the dense model with those weights zeroed.

Which structures go: the least important by an L2-norm score, per block (every block loses the same
fraction, at least one neuron and one head stay):
- neuron j: ||mlp_up.weight[j, :]|| * ||mlp_down.weight[:, j]||. What the neuron writes into the residual
  stream is mlp_down[:, j] * GELU(mlp_up[j] . x + b_j), whose size grows with both norms: a neuron with a
  tiny incoming OR outgoing vector contributes little;
- head h: ||v_proj rows of h|| * ||out_proj columns of h|| (Frobenius norms). The value and output
  projections carry what the head writes; q and k only decide where it looks, so they are left out.
A norm is a cheap proxy chosen without data; scores from activations or gradients on real text choose better,
and fine-tuning after pruning recovers some of the loss either way.

The speedup is real but below the ideal FLOP ratio: LayerNorm, softmax, the embeddings, the LM head and
Python's per-op overhead do not shrink (experiments/pruning.py measures it).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..nn.layers import Linear
from ..nn.parameter import Parameter
from .pruning import check_sparsity, kept_count


@dataclass
class StructuredPlan:
    """What survives, per block: sorted indices of the MLP neurons and of the attention heads kept."""
    neurons: list   # per block: np.ndarray of kept hidden-neuron indices (0 .. hidden width - 1)
    heads: list     # per block: np.ndarray of kept head indices (0 .. num_heads - 1)


def neuron_importance(block) -> np.ndarray:
    """(hidden width,) scores: ||incoming weights|| * ||outgoing weights|| of every MLP neuron."""
    return np.linalg.norm(block.mlp_up.weight.data, axis=1) * np.linalg.norm(block.mlp_down.weight.data, axis=0)


def head_features(heads, head_dim: int) -> np.ndarray:
    """The feature indices (rows of q/k/v_proj, columns of out_proj) that belong to `heads`, in order."""
    return (np.asarray(heads)[:, None] * head_dim + np.arange(head_dim)).ravel()


def head_importance(attention) -> np.ndarray:
    """(num_heads,) scores: ||value rows of head h|| * ||out_proj columns of head h||."""
    heads, head_dim = attention.num_heads, attention.head_dim
    values = attention.v_proj.weight.data.reshape(heads, head_dim, -1)
    outputs = attention.out_proj.weight.data.reshape(-1, heads, head_dim)
    return np.linalg.norm(values, axis=(1, 2)) * np.linalg.norm(outputs, axis=(0, 2))


def _most_important(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Sorted indices of the max(1, ceil((1 - sparsity) * n)) largest scores; ties keep the lower index."""
    keep = max(1, kept_count(scores.size, sparsity))
    return np.sort(np.argsort(-scores, kind="stable")[:keep])


def choose_structures(model, neuron_sparsity: float = 0.0, head_sparsity: float = 0.0) -> StructuredPlan:
    """The plan that removes the fraction neuron_sparsity of every block's MLP neurons and head_sparsity of
    its heads, the least important first (see the module docstring for the scores)."""
    neuron_sparsity = check_sparsity("choose_structures", neuron_sparsity)
    head_sparsity = check_sparsity("choose_structures", head_sparsity)
    blocks = getattr(model, "blocks", None)
    if not blocks:
        raise TypeError(f"choose_structures: expected a GPT (a model with .blocks of TransformerBlocks), got "
                        f"{type(model).__name__}")
    return StructuredPlan(neurons=[_most_important(neuron_importance(block), neuron_sparsity) for block in blocks],
                          heads=[_most_important(head_importance(block.attn), head_sparsity) for block in blocks])


def _keep_rows(linear: Linear, rows: np.ndarray) -> None:
    """Keep output features `rows` of a Linear (rows of its weight, entries of its bias)."""
    linear.weight = Parameter(linear.weight.data[rows])
    linear.bias = None if linear.bias is None else Parameter(linear.bias.data[rows])
    linear.out_features = len(rows)


def _keep_columns(linear: Linear, columns: np.ndarray) -> None:
    """Keep input features `columns` of a Linear (columns of its weight; the bias is per output, unchanged)."""
    linear.weight = Parameter(linear.weight.data[:, columns])
    linear.in_features = len(columns)


def _check_kept(block_index: int, what: str, kept: np.ndarray, count: int) -> None:
    """A block must keep at least one of its `count` neurons or heads, each named once, by a valid index."""
    kept = np.asarray(kept)
    if kept.size == 0 or np.unique(kept).size != kept.size or kept.min() < 0 or kept.max() >= count:
        raise ValueError(f"shrink: block {block_index} keeps {what} {kept.tolist()}; give at least one distinct "
                         f"index in 0..{count - 1}")


def shrink(model, plan: StructuredPlan):
    """A smaller copy of `model` that keeps only the plan's neurons and heads: dense matrices, still a GPT
    (it generates and runs with the KV cache). `model` itself is unchanged.

    The copy's `config` still describes the model it came from: rebuild it from the plan, not from config.
    """
    if len(plan.neurons) != len(model.blocks) or len(plan.heads) != len(model.blocks):
        raise ValueError(f"shrink: the plan covers {len(plan.neurons)} blocks of neurons and {len(plan.heads)} of "
                         f"heads, the model has {len(model.blocks)}; make the plan with choose_structures(model)")
    smaller = copy.deepcopy(model)
    for index, (block, neurons, heads) in enumerate(zip(smaller.blocks, plan.neurons, plan.heads)):
        attention = block.attn
        _check_kept(index, "neurons", neurons, block.mlp_up.out_features)
        _check_kept(index, "heads", heads, attention.num_heads)
        _keep_rows(block.mlp_up, neurons)
        _keep_columns(block.mlp_down, neurons)
        features = head_features(heads, attention.head_dim)
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
            _keep_rows(projection, features)
        _keep_columns(attention.out_proj, features)
        attention.num_heads = len(heads)
    return smaller


def prune_structured(model, neuron_sparsity: float = 0.0, head_sparsity: float = 0.0):
    """(smaller model, plan): choose_structures then shrink, in one call."""
    plan = choose_structures(model, neuron_sparsity, head_sparsity)
    return shrink(model, plan), plan


def matmul_flops_per_token(model, context_size: int) -> int:
    """Forward FLOPs per token of a full window, matrix products only, counted from the model's actual
    shapes: 2 per weight of every Linear (the LM head included), plus attention's q k^T and p v, 4 * T * H * D
    per layer. For a dense GPT it equals GPT.flops_per_token; the ratio dense / shrunk is the ideal speedup."""
    weights = sum(module.weight.data.size for module in model.modules() if isinstance(module, Linear))
    attention = sum(4 * context_size * block.attn.num_heads * block.attn.head_dim for block in model.blocks)
    return 2 * weights + attention
