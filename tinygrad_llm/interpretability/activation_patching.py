"""Activation patching and ablation on the attention-only model: which heads does copying run through? (Q32)

Attention maps suggest what a head does; patching tests whether the model's behaviour depends on it.

    clean run       the induction task (induction_task.py): the second copy is predictable
    corrupted run   the same sequences with the first copy replaced: nothing to copy from
    patched run     the clean run, except that ONE head outputs what it output on the corrupted run

If copying collapses in the patched run, the information copying needs flows through that head; if it
barely moves, the head does not matter for copying (whatever its attention map looks like). Ablation is the
blunter contrast: the head's output replaced by zeros, or by its mean over the batch (the mean keeps the
head's average contribution, so only the input-specific part is removed).

The two readings of attention patterns that find the induction circuit:
    previous-token score  the attention each position pays to the position just before it
    induction score       the attention a token pays to the token that FOLLOWED its previous occurrence,
                          i.e. to the token the induction rule will copy
"""
from __future__ import annotations

from contextlib import ExitStack

import numpy as np

from .activations import capture_activations, replace_activation
from .attention_only_model import AttentionOnlyTransformer
from .induction_task import previous_occurrence
from ..autograd import no_grad
from ..nn.functional import log_softmax
from ..tensor import Tensor


def head_outputs_name(layer: int) -> str:
    return f"blocks.{layer}.attn.head_outputs"


def pattern_name(layer: int) -> str:
    return f"blocks.{layer}.attn.pattern"


def residual_stream_names(model: AttentionOnlyTransformer) -> list[str]:
    """The layers whose outputs are the residual stream: the embeddings, then each block."""
    return ["embeddings"] + [f"blocks.{layer}" for layer in range(model.num_layers)]


def run_and_capture(model: AttentionOnlyTransformer, ids, names: list[str]) -> tuple[np.ndarray, dict]:
    """One forward pass: (logits (B, T, V), {name: that layer's output as an array})."""
    with no_grad(), capture_activations(model, names) as captured:
        logits = model(ids).numpy()
    return logits, {name: captured[name].numpy() for name in names}


def _stacked_outputs(model: AttentionOnlyTransformer, ids, names: list[str]) -> np.ndarray:
    captured = run_and_capture(model, ids, names)[1]
    return np.stack([captured[name] for name in names])


def head_outputs(model: AttentionOnlyTransformer, ids) -> np.ndarray:
    """(L, B, H, T, D): every head's output, before each layer's out_proj."""
    return _stacked_outputs(model, ids, [head_outputs_name(layer) for layer in range(model.num_layers)])


def attention_patterns(model: AttentionOnlyTransformer, ids) -> np.ndarray:
    """(L, B, H, T, T): pattern[l, b, h, q, k] is how much query position q of head h in layer l attends to key k."""
    return _stacked_outputs(model, ids, [pattern_name(layer) for layer in range(model.num_layers)])


def residual_streams(model: AttentionOnlyTransformer, ids) -> np.ndarray:
    """(L + 1, B, T, d): index 0 the embeddings, index l + 1 the stream after block l."""
    return _stacked_outputs(model, ids, residual_stream_names(model))


def run_patched(model: AttentionOnlyTransformer, ids, patches: dict) -> np.ndarray:
    """Logits (B, T, V) of a forward pass in which layer `name` outputs patches[name] instead: an array of
    its output's shape, or a function output Tensor -> new output (see activations.replace_activation)."""
    with no_grad(), ExitStack() as stack:
        for name, replacement in patches.items():
            stack.enter_context(replace_activation(model, name, replacement))
        return model(ids).numpy()


def _splice(source: np.ndarray, mask: np.ndarray):
    """A replacement function: the output where mask is False, `source` where it is True."""
    def splice(output: Tensor) -> np.ndarray:
        return np.where(mask, source, output.numpy())
    return splice


def patch_heads(model: AttentionOnlyTransformer, ids, heads, source: np.ndarray, positions=None) -> np.ndarray:
    """Logits of `ids` with each (layer, head) in `heads` outputting source[layer][:, head] instead, at every
    position or only at `positions` (an index into T). source: (L, B, H, T, D), e.g. head_outputs on the
    corrupted twin, zeros, or a batch mean (anything that broadcasts to (B, H, T, D) per layer)."""
    source = np.asarray(source)
    num_heads = model.num_heads
    time = np.asarray(ids).shape[1]
    masks = {}
    for layer, head in heads:
        if not (0 <= layer < model.num_layers and 0 <= head < num_heads):
            raise ValueError(f"patch_heads: head ({layer}, {head}) does not exist; the model has "
                             f"{model.num_layers} layers of {num_heads} heads")
        mask = masks.setdefault(layer, np.zeros((num_heads, time), dtype=bool))
        mask[head, slice(None) if positions is None else positions] = True
    return run_patched(model, ids, {head_outputs_name(layer): _splice(source[layer], mask[None, :, :, None])
                                    for layer, mask in masks.items()})


def patch_residual(model: AttentionOnlyTransformer, ids, source_streams: np.ndarray, index: int,
                   positions=None) -> np.ndarray:
    """Logits of `ids` with residual stream `index` (0: embeddings, l + 1: after block l) replaced by
    source_streams[index] (from residual_streams on another input), at all positions or at `positions`."""
    time = np.asarray(ids).shape[1]
    mask = np.zeros(time, dtype=bool)
    mask[slice(None) if positions is None else positions] = True
    return run_patched(model, ids, {residual_stream_names(model)[index]:
                                    _splice(source_streams[index], mask[None, :, None])})


# ---------------------------------------------------------------- metrics on the predictable positions
def _predicted_tokens(logits: np.ndarray, ids, predictable) -> tuple[np.ndarray, np.ndarray]:
    """The logits that predict the predictable tokens (logits at p - 1 predict token p), and those tokens."""
    ids, predictable = np.asarray(ids), np.asarray(predictable, dtype=bool)
    if logits.shape[:2] != ids.shape or predictable.shape != ids.shape:
        raise ValueError(f"copying metrics: logits {logits.shape[:2]} (B, T), ids {ids.shape} and predictable "
                         f"{predictable.shape} must agree")
    if predictable[:, 0].any():
        raise ValueError("copying metrics: position 0 cannot be predictable, nothing comes before it")
    return logits[:, :-1][predictable[:, 1:]], ids[:, 1:][predictable[:, 1:]]


def copying_accuracy(logits: np.ndarray, ids, predictable) -> float:
    """How often the most likely next token is the right one, over the predictable positions."""
    logits, targets = _predicted_tokens(logits, ids, predictable)
    return float(np.mean(logits.argmax(axis=-1) == targets))


def copying_log_probability(logits: np.ndarray, ids, predictable) -> float:
    """The mean log-probability of the right next token over the predictable positions: a smooth version of
    the accuracy, which also moves when a patch lowers the model's confidence without changing its guess."""
    logits, targets = _predicted_tokens(logits, ids, predictable)
    with no_grad():
        log_probabilities = log_softmax(Tensor(logits), axis=-1).numpy()
    return float(np.mean(log_probabilities[np.arange(len(targets)), targets]))


# ---------------------------------------------------------------- one head at a time
def patch_each_head(model: AttentionOnlyTransformer, clean_ids, corrupted_ids, predictable,
                    metric=copying_accuracy) -> np.ndarray:
    """(L, H): how much metric(clean run) falls when head (l, h) alone outputs what it did on the corrupted
    twin. Large: copying needs what that head reads from the first copy."""
    source = head_outputs(model, corrupted_ids)
    with no_grad():
        clean = metric(model(clean_ids).numpy(), clean_ids, predictable)
    return np.array([[clean - metric(patch_heads(model, clean_ids, [(layer, head)], source), clean_ids, predictable)
                      for head in range(model.num_heads)] for layer in range(model.num_layers)])


ABLATIONS = ("zero", "mean")


def ablation_source(model: AttentionOnlyTransformer, ids, method: str) -> np.ndarray:
    """What an ablated head outputs instead, (L, 1, H, T, D): zeros, or its mean over the batch at each position."""
    if method not in ABLATIONS:
        raise ValueError(f"ablation_source: method must be one of {ABLATIONS}, got {method!r}")
    outputs = head_outputs(model, ids)
    return np.zeros_like(outputs[:, :1]) if method == "zero" else outputs.mean(axis=1, keepdims=True)


def ablate_each_head(model: AttentionOnlyTransformer, ids, predictable, method: str = "mean",
                     metric=copying_accuracy) -> np.ndarray:
    """(L, H): how much the metric falls when head (l, h) alone is ablated ("zero" or "mean")."""
    source = ablation_source(model, ids, method)
    with no_grad():
        clean = metric(model(ids).numpy(), ids, predictable)
    return np.array([[clean - metric(patch_heads(model, ids, [(layer, head)], source), ids, predictable)
                      for head in range(model.num_heads)] for layer in range(model.num_layers)])


# ---------------------------------------------------------------- reading attention maps
def previous_token_scores(patterns: np.ndarray) -> np.ndarray:
    """(L, B, H, T, T) patterns -> (L, H): the mean attention from each position q >= 1 to q - 1."""
    time = patterns.shape[-1]
    return patterns[..., np.arange(1, time), np.arange(time - 1)].mean(axis=(1, 3))


def induction_scores(patterns: np.ndarray, ids) -> np.ndarray:
    """(L, B, H, T, T) patterns and their ids (B, T) -> (L, H): the mean attention from each token that
    occurred before to the position right after its previous occurrence (the token the induction rule
    copies), over every such token of the batch."""
    source = previous_occurrence(ids)
    rows, queries = np.nonzero(source >= 0)
    if not len(rows):
        raise ValueError("induction_scores: no token of ids occurs twice, so there is nothing to copy from")
    return patterns[:, rows, :, queries, source[rows, queries] + 1].mean(axis=0)
