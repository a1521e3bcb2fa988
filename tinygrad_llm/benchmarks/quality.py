"""The quality band: nanoGPT's CPU configuration trained here and in PyTorch on the same batches.

nanoGPT's character-level Shakespeare run on a CPU (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000
iterations, lr 1e-3 with 100 warmup steps and cosine decay to 1e-4, AdamW betas (0.9, 0.99), weight decay
0.1, clip 1.0, no dropout) reports a val loss of about 1.88. This benchmark trains the library's GPT with
exactly that configuration (TrainConfig's defaults), and, when torch is installed, its PyTorch twin
starting from the same initial weights and fed the same batches in the same order. Both are evaluated on
the same validation windows. Two numbers come out of one run:

- the val loss each reaches, and their difference: the whole library (autograd, kernels, AdamW, the
  schedule, clipping) against PyTorch, end to end;
- training tokens per second of each side (their steps alternate, so machine load hits both alike).

`--device cuda --config gpu` runs nanoGPT's GPU configuration for character-level Shakespeare instead (6
layers, 6 heads, 384 wide, context 256, batch 64, dropout 0.2, 5000 iterations, the same optimiser settings)
with both sides on the GPU: the library through CuPy and its CUDA kernels, the twin in PyTorch CUDA eager.
"""
from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import asdict

import numpy as np

from ..data import random_windows
from ..device import check_device
from ..random import manual_seed
from ..training import TrainConfig, build_model, build_optimizer, prepare_text_data
from ..training.loop import language_model_loss, optimizer_step
from ..training.mixed_precision import mixed_precision_for
from .torch_twins import torch_loss, torch_optimizer, torch_training_step, torch_twin


def _validation_windows(ids, config: TrainConfig, batches: int, seed: int):
    rng = np.random.default_rng(seed)
    return [random_windows(ids, config.context_size, config.batch_size, rng) for _ in range(batches)]


# nanoGPT's two character-level Shakespeare configurations (TrainConfig's defaults are the CPU one).
CONFIGS = {
    "cpu": {},
    "gpu": dict(num_layers=6, num_heads=6, embed_dim=384, context_size=256, batch_size=64, dropout=0.2),
}


def run_quality_benchmark(corpus: str, steps: int = 2000, eval_every: int = 250, eval_batches: int = 20,
                          final_eval_batches: int = 200, use_torch: bool = True, out="bench_quality.json",
                          max_chars: int = 0, seed: int = 0, torch_threads: int | None = None,
                          verbose: bool = True, config_name: str = "cpu", device: str = "cpu") -> dict:
    say = print if verbose else (lambda *a, **k: None)
    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            say("torch is not installed: training the library's GPT only")
    if torch is not None and torch_threads:
        torch.set_num_threads(torch_threads)
    if config_name not in CONFIGS:
        raise ValueError(f"bench quality: config must be one of {sorted(CONFIGS)}, got {config_name!r}")
    config = TrainConfig(model="gpt", corpus=corpus, steps=steps, eval_every=eval_every, eval_batches=eval_batches,
                         max_chars=max_chars, seed=seed, warmup_steps=min(TrainConfig.warmup_steps, steps // 2),
                         device=check_device(device), **CONFIGS[config_name])
    if torch is not None and device == "cuda" and not torch.cuda.is_available():
        say("torch cannot use CUDA here: training the library's GPT only")
        torch = None
    data = prepare_text_data(config)
    manual_seed(config.seed)
    model = build_model(config, data.tokenizer.vocab_size)
    twin = torch_twin(torch, model, device) if torch is not None else None  # copied BEFORE training: same weights
    model.to(device)
    master_weights, scaler = mixed_precision_for(model, config.precision)
    optimizer, scheduler = build_optimizer(master_weights, config)
    torch_step = torch_training_step(torch, twin, *torch_optimizer(torch, twin, config), config, device) if twin else None
    say(f"Quality band: {corpus} ({len(data.train_ids):,} train / {len(data.val_ids):,} val tokens, vocab "
        f"{data.tokenizer.vocab_size}), GPT with {model.num_parameters():,} parameters, {steps} steps")

    # Two generators with one seed: both sides draw the same batches in the same order.
    library_rng, torch_rng = np.random.default_rng(config.seed), np.random.default_rng(config.seed)
    seconds = {"library": 0.0, "torch": 0.0}
    history = []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        library_train_loss, _ = optimizer_step(model, master_weights, scaler, optimizer, scheduler, data.train_ids,
                                               config, library_rng)
        seconds["library"] += time.perf_counter() - start
        if torch_step is not None:
            inputs, targets = random_windows(data.train_ids, config.context_size, config.batch_size, torch_rng)
            start = time.perf_counter()
            torch_train_loss = torch_step(inputs, targets)
            seconds["torch"] += time.perf_counter() - start
        if step % eval_every == 0 or step == steps:
            batches = final_eval_batches if step == steps else eval_batches
            windows = _validation_windows(data.val_ids, config, batches, seed=10_000 + step)
            record = {"step": step, "library_train_batch_loss": library_train_loss,
                      "library_val_loss": _mean_loss(lambda x, y: _library_loss(model, x, y), windows)}
            if twin is not None:
                record["torch_train_batch_loss"] = torch_train_loss
                record["torch_val_loss"] = _mean_loss(lambda x, y: torch_loss(torch, twin, x, y, device), windows)
            history.append(record)
            say("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))

    tokens = steps * config.tokens_per_step
    final = history[-1]
    report = {
        "meta": {"command": "python -m tinygrad_llm bench quality", "corpus": corpus, "config": config_name,
                 "device": device,
                 "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
                 "load_average_1_5_15_at_end": list(os.getloadavg()),
                 "val_loss_definition": f"mean cross-entropy over {final_eval_batches} random validation windows "
                                        "(the same windows for both sides)"},
        "config": asdict(config),
        "parameters": model.num_parameters(),
        "history": history,
        "library": {"val_loss": final["library_val_loss"], "tokens_per_s": tokens / seconds["library"]},
    }
    if twin is not None:
        report["torch"] = {"val_loss": final["torch_val_loss"], "tokens_per_s": tokens / seconds["torch"],
                           "num_threads": torch.get_num_threads()}
        report["val_loss_difference"] = final["library_val_loss"] - final["torch_val_loss"]
        report["speed_ratio_library_over_torch"] = report["library"]["tokens_per_s"] / report["torch"]["tokens_per_s"]
    say(_describe(report))
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1)
        say(f"Wrote {out}")
    return report


def _library_loss(model, inputs, targets) -> float:
    from ..autograd import no_grad

    model.eval()
    with no_grad():
        loss = language_model_loss(model, inputs, targets).item()
    model.train()
    return loss


def _mean_loss(loss_fn, windows) -> float:
    return float(np.mean([loss_fn(x, y) for x, y in windows]))


def _describe(report: dict) -> str:
    lines = [f"\nFinal val loss: library {report['library']['val_loss']:.4f}"]
    if "torch" in report:
        lines[0] += (f", PyTorch twin {report['torch']['val_loss']:.4f} (difference "
                     f"{report['val_loss_difference']:+.4f}; same initial weights, same batches)")
        lines.append(f"Training tokens/s: library {report['library']['tokens_per_s']:,.0f}, PyTorch "
                     f"{report['torch']['tokens_per_s']:,.0f} ({report['torch']['num_threads']} threads): ratio "
                     f"{report['speed_ratio_library_over_torch']:.2f}x")
    else:
        lines.append(f"Training tokens/s: library {report['library']['tokens_per_s']:,.0f}")
    return "\n".join(lines)
