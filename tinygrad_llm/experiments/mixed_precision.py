"""Chapter 10 experiments: mixed precision, measured on the main job's GPT (TrainConfig's defaults).

`flushed_gradients` asks how many gradient entries a float16 backward pass rounds to exactly zero, counted
against the float32 gradient at the same weights, without and with a loss scale. `precision_variants`
trains the same model from the same initialisation on the same batches five ways:

    fp32                  the baseline
    fp16 pure             the model, its gradients, the optimizer and its state all in float16, no scaling
    fp16 master           float32 master weights (and optimizer state), no loss scaling
    fp16 master+scaling   float32 master weights and a dynamic loss scale: what `--precision fp16` does
    bf16 master           bfloat16 with float32 master weights: what `--precision bf16` does (no scaling)

and reports each one's validation loss, skipped steps and step time. On this CPU the half-precision steps
are SLOWER than float32: every kernel converts its inputs to float32 and its outputs back
(kernels/half_precision.py), and NumPy's own float16 arithmetic converts element by element. On a GPU the
same recipe is faster, because tensor cores multiply half-precision inputs at several times the float32
rate and every tensor moved through memory is half the size.

Every function returns plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict

import numpy as np

from ..data import random_windows
from ..dtypes import BFLOAT16
from ..optim import GradScaler
from ..random import manual_seed
from ..training import TrainConfig, build_optimizer, estimate_loss, prepare_text_data
from ..training.loop import language_model_loss, optimizer_step
from ..training.mixed_precision import MasterWeights, cast_model_
from ..training.model_factory import build_model

# name -> (the model's dtype, float32 master weights?, loss scaling?)
VARIANTS = {
    "fp32": (np.float32, True, False),
    "fp16 pure": (np.float16, False, False),
    "fp16 master": (np.float16, True, False),
    "fp16 master+scaling": (np.float16, True, True),
    "bf16 master": (BFLOAT16, True, False),
}


def study_config(fast: bool) -> TrainConfig:
    """The main job's GPT (TrainConfig's defaults); fast: a narrower, shallower one for fewer steps on less text."""
    if fast:
        return TrainConfig(max_chars=30_000, embed_dim=32, num_layers=2, num_heads=2, context_size=32, batch_size=8,
                           steps=120, warmup_steps=10, eval_batches=4)
    return TrainConfig()


def gradients(model, inputs, targets, dtype, loss_scale: float = 1.0) -> list:
    """The gradient of every parameter, from a copy of `model` cast to `dtype` (same weights, rounded), with
    the loss multiplied by loss_scale before backward; returned in float32 and divided by loss_scale again."""
    twin = copy.deepcopy(model)
    cast_model_(twin, dtype)
    (language_model_loss(twin, inputs, targets) * loss_scale).backward()
    return [p.grad.astype(np.float32) / np.float32(loss_scale) for p in twin.parameters()]


def flushed_fraction(reference: list, half: list) -> float:
    """The fraction of entries nonzero in the float32 gradients that are exactly 0 in the half-precision ones."""
    nonzero = sum(int(np.count_nonzero(g)) for g in reference)
    flushed = sum(int(np.count_nonzero((g != 0) & (h == 0))) for g, h in zip(reference, half))
    return flushed / nonzero


def flushed_gradients(model, inputs, targets, loss_scale: float = 2.0**16) -> dict:
    """Flushed fractions of a float16 backward pass without and with `loss_scale` (a float32 model's weights);
    `overflowed` says whether the scaled gradients reached inf (the scaler would then skip and halve)."""
    reference = gradients(model, inputs, targets, np.float32)
    plain = gradients(model, inputs, targets, np.float16)
    scaled = gradients(model, inputs, targets, np.float16, loss_scale)
    return {"unscaled": flushed_fraction(reference, plain), "scaled": flushed_fraction(reference, scaled),
            "loss_scale": loss_scale, "overflowed": not all(np.isfinite(g).all() for g in scaled)}


def train_variant(config: TrainConfig, data, dtype, float32_master: bool, loss_scaling: bool) -> dict:
    """Train `config.steps` steps with the training loop's optimizer_step. Returns the final val loss, every
    step's training loss, skipped steps, the median step time, the step at which the weights became inf/NaN
    (None if never: training stops there, and the val loss is NaN) and the model."""
    manual_seed(config.seed)
    model = build_model(config, data.tokenizer.vocab_size)
    master_weights, scaler = MasterWeights(model, dtype, float32_master), GradScaler(enabled=loss_scaling)
    optimizer, scheduler = build_optimizer(master_weights, config)
    data_rng, step_seconds, train_losses, diverged_at = np.random.default_rng([config.seed, 1]), [], [], None
    for step in range(1, config.steps + 1):
        start = time.perf_counter()
        with np.errstate(all="ignore"):  # the pure fp16 variant overflows on purpose
            loss, _ = optimizer_step(model, master_weights, scaler, optimizer, scheduler, data.train_ids, config,
                                     data_rng)
        step_seconds.append(time.perf_counter() - start)
        train_losses.append(loss)
        if not all(np.isfinite(p.data).all() for p in master_weights.parameters()):
            diverged_at = step
            break
    val_loss = float("nan") if diverged_at else estimate_loss(model, data.val_ids, config,
                                                              np.random.default_rng([config.seed, 3, config.steps]))
    return {"val_loss": val_loss, "train_losses": train_losses, "skipped_steps": scaler.skipped_steps,
            "final_loss_scale": scaler.get_scale(), "diverged_at_step": diverged_at,
            "step_ms": 1e3 * statistics.median(step_seconds[1:] or step_seconds), "model": model}


def precision_variants(fast: bool = False, variants=tuple(VARIANTS)) -> dict:
    """Every variant's val loss, skipped steps and step time, the scaled-fp16 and bf16 losses relative to
    fp32, and the flushed gradient fractions at the initial and at the fp32-trained weights."""
    config = study_config(fast)
    data = prepare_text_data(config)
    inputs, targets = random_windows(data.train_ids, config.context_size, config.batch_size, np.random.default_rng(7))
    results = {}
    for name in variants:
        results[name] = train_variant(config, data, *VARIANTS[name])
    manual_seed(config.seed)
    initial = build_model(config, data.tokenizer.vocab_size)
    trained = results["fp32"]["model"] if "fp32" in results else initial
    flushed = {"initial_weights": flushed_gradients(initial, inputs, targets),
               "trained_weights": flushed_gradients(trained, inputs, targets)}
    for result in results.values():
        del result["model"]
    fp32_loss = results.get("fp32", {}).get("val_loss", float("nan"))
    relative = {name: result["val_loss"] / fp32_loss - 1 for name, result in results.items() if name != "fp32"}
    return {"config": asdict(config), "parameters": initial.num_parameters(),
            "variants": results, "val_loss_vs_fp32": relative, "flushed": flushed,
            "step_time_vs_fp32": {name: r["step_ms"] / results["fp32"]["step_ms"] for name, r in results.items()}
            if "fp32" in results else {}}
