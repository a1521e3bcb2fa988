"""Chapter 9 experiments: pruning a trained GPT (Q20 experiment B, M35, M45).

`sparsity_sweep` prunes the chapter's trained GPT (experiments/inference.py's model, or the main job's
checkpoint) by magnitude at sparsities from 0 to 95%, per layer and globally, and measures the validation
perplexity right after pruning and after a short fine-tune that keeps the pruned weights at 0. The dense
model gets the same fine-tune (sparsity 0), so the comparison is not flattered by the extra steps.

`structured_speedup` removes a fraction of every block's MLP neurons and attention heads and times the
smaller dense model's forward pass over a window and its decoding with the KV cache, against the ideal
speedup (the ratio of matrix-product FLOPs). `unstructured_zeros_speed` times a model whose weights are 90%
zeros, stored densely, against the dense model: the forward pass and a whole training step cost the same
(M35, M45), and so does one matrix product with 90% zeros.

Timings depend on the machine and on what else runs on it: each is a ratio measured within one call, the
contestants taking turns (benchmarks/timing.py's time_interleaved), and no test asserts on time.
Every function returns plain numbers and lists; `fast=True` is the CI size.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..autograd import no_grad
from ..benchmarks.timing import time_interleaved
from ..compression.pruning import SCOPES, masked_training_step, prune_magnitude
from ..compression.structured_pruning import matmul_flops_per_token, prune_structured
from ..data import random_windows
from ..generation import generate
from ..metrics import evaluate_language_model
from ..nn import GPT
from ..random import manual_seed
from ..training import TrainConfig, build_optimizer, load_trained_model, prepare_text_data
from ..training.loop import language_model_loss
from .inference import train_model

SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
FAST_SPARSITIES = (0.0, 0.5, 0.8, 0.95)
STRUCTURED_FRACTIONS = (0.0, 0.25, 0.5, 0.75)


def trained_gpt(fast: bool = True, seed: int = 0, checkpoint=None) -> dict:
    """{"model", "config", "train_ids", "val_ids"}: the main job's GPT read from `checkpoint` (e.g.
    runs/gpt/checkpoint.npz) with its own data split, or else the chapter's GPT trained now."""
    if checkpoint is not None:
        model, tokenizer, metadata = load_trained_model(Path(checkpoint))
        config = TrainConfig(**metadata["train_config"])
        data = prepare_text_data(config, tokenizer)
        return {"model": model, "config": config, "train_ids": data.train_ids, "val_ids": data.val_ids}
    run = train_model(fast, seed)
    return {"model": run.model.eval(), "config": run.config, "train_ids": run.train_ids, "val_ids": run.val_ids}


def validation_perplexity(model, ids: np.ndarray, context_size: int) -> float:
    return evaluate_language_model(model, ids, block_size=context_size)["perplexity"]


def masked_fine_tune(model, masks, train_ids: np.ndarray, config: TrainConfig, steps: int, lr: float,
                     seed: int = 0) -> None:
    """`steps` AdamW steps on random training windows (the training loop's optimizer, a cosine decay from lr to
    lr / 10), every one through masked_training_step so the pruned weights stay exactly 0."""
    fine_tune = replace(config, steps=steps, warmup_steps=0, lr=lr, min_lr=lr / 10)
    optimizer, scheduler = build_optimizer(model, fine_tune)
    rng = np.random.default_rng([seed, 5])
    model.train()
    for _ in range(steps):
        inputs, targets = random_windows(train_ids, config.context_size, config.batch_size, rng)
        masked_training_step(lambda: language_model_loss(model, inputs, targets), optimizer, masks, config.clip_norm)
        scheduler.step()
    model.eval()


def sparsity_sweep(fast: bool = True, seed: int = 0, trained: dict | None = None, checkpoint=None,
                   fine_tune_steps: int | None = None, fine_tune_lr: float = 3e-4) -> dict:
    """Validation perplexity against sparsity, per layer and global, before and after a masked fine-tune.

    Returns the sparsities, the dense perplexity, and for each scope: the perplexities right after pruning
    and after `fine_tune_steps` masked steps (full 200, fast 30), and the fraction of the prunable weights
    that are exactly 0 after the fine-tune (at least the sparsity: the masks held). Also global pruning's
    per-layer sparsity at 80% (which layers one threshold hits hardest) and the weights left unpruned.
    """
    trained = trained or trained_gpt(fast, seed, checkpoint)
    model, config, val_ids = trained["model"], trained["config"], trained["val_ids"]
    sparsities = FAST_SPARSITIES if fast else SPARSITIES
    steps = fine_tune_steps if fine_tune_steps is not None else (30 if fast else 200)
    perplexity = {scope: [] for scope in SCOPES}
    fine_tuned = {scope: [] for scope in SCOPES}
    zeros_after_fine_tune = {scope: [] for scope in SCOPES}
    for scope in SCOPES:
        for sparsity in sparsities:
            pruned = copy.deepcopy(model)
            masks = prune_magnitude(pruned, sparsity, scope)
            perplexity[scope].append(validation_perplexity(pruned, val_ids, config.context_size))
            masked_fine_tune(pruned, masks, trained["train_ids"], config, steps, fine_tune_lr, seed)
            fine_tuned[scope].append(validation_perplexity(pruned, val_ids, config.context_size))
            weights = [p.data for p in masks.parameters.values()]
            zeros_after_fine_tune[scope].append(sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights))
    global_at_80 = prune_magnitude(copy.deepcopy(model), 0.8, "global")
    return {"sparsities": list(sparsities), "fine_tune_steps": steps, "fine_tune_lr": fine_tune_lr,
            "dense_perplexity": validation_perplexity(model, val_ids, config.context_size),
            "perplexity": perplexity, "fine_tuned_perplexity": fine_tuned,
            "zero_fraction_after_fine_tune": zeros_after_fine_tune,
            "global_80_layer_sparsity": {row["layer"]: row["mask_sparsity"] for row in global_at_80.report()},
            "skipped": global_at_80.skipped}


def timing_gpt(fast: bool, seed: int, vocab_size: int = 96) -> GPT:
    """A randomly initialised GPT to time: time depends on the shapes, not on the weights' values. Fast: width
    256, 4 heads, 2 layers; full: width 512, 8 heads, 4 layers. The wider, the more the matrix products weigh
    against the fixed per-op costs (Python, LayerNorm, softmax) that pruning does not shrink."""
    manual_seed(seed)
    shape = dict(embed_dim=256, num_heads=4, num_layers=2) if fast else dict(embed_dim=512, num_heads=8, num_layers=4)
    return GPT(vocab_size, context_size=128, **shape).eval()


def forward_pass(model, ids: np.ndarray):
    """A call with no arguments that runs model(ids) without building a graph: what time_interleaved times."""
    def run():
        with no_grad():
            model(ids)
    return run


def structured_speedup(fast: bool = True, seed: int = 0, fractions=STRUCTURED_FRACTIONS) -> dict:
    """Remove the fraction f of every block's MLP neurons AND attention heads, for each f in `fractions`, and
    time: the forward pass over a batch of 8 windows of 64 tokens, and greedy decoding of 32 tokens (fast 16)
    with the KV cache from an 8-token prompt. Measured speedup = dense time / pruned time (medians), ideal =
    dense / pruned matrix-product FLOPs per token. Also the parameter counts."""
    dense = timing_gpt(fast, seed)
    window = np.random.default_rng([seed, 3]).integers(0, dense.vocab_size, (8, 64))
    prompt, new_tokens = window[0, :8], 16 if fast else 32
    models = {f: prune_structured(dense, f, f)[0] if f else dense for f in fractions}

    def decode(model):
        return lambda: generate(model, prompt, new_tokens, temperature=0.0, use_cache=True)

    forward_s = time_interleaved({f: forward_pass(m, window) for f, m in models.items()}, repeats=5)
    decode_s = time_interleaved({f: decode(m) for f, m in models.items()}, repeats=5, target_run_s=0.0)
    dense_flops = matmul_flops_per_token(dense, window.shape[1])
    return {"fractions": list(fractions),
            "parameters": [models[f].num_parameters() for f in fractions],
            "ideal_speedup": [dense_flops / matmul_flops_per_token(models[f], window.shape[1]) for f in fractions],
            "forward_ms": [1e3 * forward_s[f].median_s for f in fractions],
            "forward_speedup": [forward_s[fractions[0]].median_s / forward_s[f].median_s for f in fractions],
            "decode_ms_per_token": [1e3 * decode_s[f].median_s / new_tokens for f in fractions],
            "decode_speedup": [decode_s[fractions[0]].median_s / decode_s[f].median_s for f in fractions],
            "shape": dense.config, "window": list(window.shape), "new_tokens": new_tokens}


def unstructured_zeros_speed(fast: bool = True, seed: int = 0, sparsity: float = 0.9) -> dict:
    """A GPT with `sparsity` of its Linear weights pruned to 0 (dense storage) against the dense model: the
    forward pass over a batch of windows, one masked training step against one plain step (M45), and one
    (512 x 2048) x (2048 x 512) matrix product (fast: 256 x 1024 x 256) with and without 90% zeros.
    Ratios near 1 mean the zeros bought no time."""
    dense = timing_gpt(fast, seed)
    sparse = copy.deepcopy(dense)
    masks = prune_magnitude(sparse, sparsity, "layer")
    config = TrainConfig(context_size=64, batch_size=8, steps=10, warmup_steps=0)
    rng = np.random.default_rng([seed, 4])
    inputs, targets = rng.integers(0, dense.vocab_size, (2, config.batch_size, config.context_size))
    dense_optimizer, _ = build_optimizer(dense, config)
    sparse_optimizer, _ = build_optimizer(sparse, config)

    def dense_step():
        dense_optimizer.zero_grad()
        language_model_loss(dense, inputs, targets).backward()
        dense_optimizer.step()

    def sparse_step():
        masked_training_step(lambda: language_model_loss(sparse, inputs, targets), sparse_optimizer, masks, 0.0)

    rows, inner = (256, 1024) if fast else (512, 2048)
    a = rng.standard_normal((rows, inner)).astype(np.float32)
    b = rng.standard_normal((inner, rows)).astype(np.float32)
    b_sparse = np.where(rng.random(b.shape) < sparsity, np.float32(0), b)
    forward_s = time_interleaved({"dense": forward_pass(dense, inputs), "sparse": forward_pass(sparse, inputs)},
                                 repeats=5)
    step_s = time_interleaved({"dense": dense_step, "sparse": sparse_step}, repeats=5, target_run_s=0.0)
    matmul_s = time_interleaved({"dense": lambda: a @ b, "sparse": lambda: a @ b_sparse}, repeats=5)
    times = {"forward": forward_s, "training_step": step_s, "matmul": matmul_s}
    return {"sparsity": masks.overall_sparsity(), "matmul_zero_fraction": float(np.mean(b_sparse == 0)),
            "ms": {name: {kind: 1e3 * t.median_s for kind, t in timing.items()} for name, timing in times.items()},
            "sparse_over_dense": {name: timing["sparse"].median_s / timing["dense"].median_s
                                  for name, timing in times.items()},
            "shape": dense.config, "matmul_shape": [rows, inner, rows]}
