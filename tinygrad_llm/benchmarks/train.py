"""End-to-end training throughput: the same model and training step with each kernel set, and in PyTorch.

What one timed step does, on every side (as tinygrad_llm/training/loop.py does it): draw a batch of
windows from the embedded corpus -> forward -> cross-entropy of every position against the next token ->
backward -> clip the global gradient norm to 1 -> AdamW step (weight decay on matrices only) -> warmup +
cosine schedule. Throughput is tokens per second = batch_size * context_size * steps / seconds (every
position of every window is a predicted token).

The models: the foundation's character MLP language model (Bengio et al.) and the GPT in nanoGPT's CPU
configuration. The PyTorch side is the twin in torch_twins.py: same architecture, same initial weights,
same batches.

Each side first runs `warmup` steps (the first one JIT-compiles or loads Numba's cache: reported on its
own as `first_step_s`), then `repeats` windows of `steps` steps; the median window is reported. The kernel
sets are switched with tgl.set_kernels in this one process, so the ratios compare like with like.
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from dataclasses import asdict, replace

import numpy as np

from .. import kernels as kernel_dispatch
from ..data import random_windows
from ..random import manual_seed
from ..training import TrainConfig, build_model, build_optimizer, prepare_text_data
from ..training.loop import optimizer_step
from ..training.mixed_precision import mixed_precision_for
from .timing import OtherLoad
from .torch_twins import torch_optimizer, torch_training_step, torch_twin

# Kernel functions a training step calls (Linear -> matmul; loss -> cross-entropy; GPT adds the rest).
MLP_KERNELS = ("matmul", "cross_entropy_forward", "cross_entropy_backward", "embedding_backward")
GPT_KERNELS = MLP_KERNELS + ("layer_norm_forward", "layer_norm_backward", "attention_forward", "attention_backward")

# name -> (configuration, kernel functions it needs)
MODELS = {
    "char_mlp": (TrainConfig(model="mlp", mlp_window=8, embed_dim=24, hidden_dim=256, context_size=32,
                             batch_size=16, lr=3e-3, min_lr=3e-4, weight_decay=0.01), MLP_KERNELS),
    "gpt": (TrainConfig(model="gpt"), GPT_KERNELS),  # nanoGPT's CPU configuration: 4 layers, 4 heads, d=128, T=64, B=12
}

MODES = {  # (timed steps per window, windows, warm-up steps)
    "full": (100, 5, 10),
    "fast": (20, 3, 3),
    "tiny": (3, 1, 1),
}


def _measure(sides: dict, steps: int, repeats: int, warmup: int, tokens_per_step: int) -> dict:
    """sides: {name: (prepare, step)}; prepare() selects the side's kernel set before each of its windows.

    The timed windows run in turns (reference, numba, torch, reference, ...), so a burst of load from other
    processes on a shared machine falls on every side alike."""
    first, windows, others = {}, {name: [] for name in sides}, {name: [] for name in sides}
    for name, (prepare, step) in sides.items():
        prepare()
        start = time.perf_counter()
        step()
        first[name] = time.perf_counter() - start
        for _ in range(warmup - 1):
            step()
    for _ in range(repeats):
        for name, (prepare, step) in sides.items():
            prepare()
            with OtherLoad() as load:
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                windows[name].append(time.perf_counter() - start)
            if load.fraction is not None:
                others[name].append(load.fraction)
    results = {}
    for name in sides:
        median = statistics.median(windows[name])
        results[name] = {"tokens_per_s": tokens_per_step * steps / median, "step_ms": median / steps * 1e3,
                         "first_step_s": first[name], "windows_s": windows[name], "steps": steps,
                         "repeats": repeats, "warmup": warmup,
                         "others_cpu_fraction": statistics.mean(others[name]) if others[name] else None}
    return results


def library_step(config: TrainConfig):
    """A closure doing one training step of the library's model with the ACTIVE kernel set."""
    data = prepare_text_data(config)
    manual_seed(config.seed)
    model = build_model(config, data.tokenizer.vocab_size)
    master_weights, scaler = mixed_precision_for(model, config.precision)
    optimizer, scheduler = build_optimizer(master_weights, config)
    rng = np.random.default_rng(config.seed)

    def step():
        return optimizer_step(model, master_weights, scaler, optimizer, scheduler, data.train_ids, config, rng)

    return step, data.tokenizer.vocab_size


def torch_step(torch, config: TrainConfig):
    """The same step on the PyTorch twin of the same freshly initialised model."""
    data = prepare_text_data(config)
    manual_seed(config.seed)
    twin = torch_twin(torch, build_model(config, data.tokenizer.vocab_size))
    optimizer, scheduler = torch_optimizer(torch, twin, config)
    train_step = torch_training_step(torch, twin, optimizer, scheduler, config)
    rng = np.random.default_rng(config.seed)

    def step():
        return train_step(*random_windows(data.train_ids, config.context_size, config.batch_size, rng))

    return step, data.tokenizer.vocab_size


def run_train_benchmark(mode: str = "full", steps: int | None = None, repeats: int | None = None,
                        out="bench_train.json", sets=("reference", "numba"), use_torch: bool = True,
                        models=tuple(MODELS), threads: int | None = None, verbose: bool = True) -> dict:
    if mode not in MODES:
        raise ValueError(f"bench train: mode must be one of {sorted(MODES)}, got {mode!r}")
    default_steps, default_repeats, warmup = MODES[mode]
    steps, repeats = steps or default_steps, repeats or default_repeats
    say = print if verbose else (lambda *a, **k: None)
    try:
        import torch
    except ImportError:
        torch = None
    torch = torch if use_torch else None

    from .kernels import set_threads

    thread_setting = set_threads(threads, torch) if threads else None
    total_steps = warmup + steps * repeats
    previous = kernel_dispatch.get_kernels()
    reports = {}
    try:
        for model_name in models:
            base, needs = MODELS[model_name]
            # the schedule spans every step taken; a tiny run uses a slice of the corpus and a smaller GPT
            config = replace(base, steps=max(total_steps, base.warmup_steps + 1),
                             max_chars=50_000 if mode == "tiny" else base.max_chars)
            results, sides = {}, {}
            for kernel_set in sets:
                module = kernel_dispatch.set_kernels(kernel_set)
                missing = [name for name in needs if not callable(getattr(module, name, None))]
                if missing:
                    results[kernel_set] = {"skipped": f"kernel set {kernel_set!r} lacks {', '.join(missing)}"}
                    continue
                step, vocab_size = library_step(config)
                sides[kernel_set] = (lambda name=kernel_set: kernel_dispatch.set_kernels(name), step)
            if torch is not None:
                step, vocab_size = torch_step(torch, config)
                sides["torch"] = (lambda: None, step)
            results.update(_measure(sides, steps, repeats, warmup, config.batch_size * config.context_size))
            if "torch" in results:
                results["torch"]["num_threads"] = torch.get_num_threads()
            results = {name: results[name] for name in [*sets, "torch"] if name in results}
            timed = [name for name, r in results.items() if "tokens_per_s" in r]
            for name in timed:
                results[name]["speedup"] = {other: results[name]["tokens_per_s"] / results[other]["tokens_per_s"]
                                            for other in timed if other != name}
            reports[model_name] = {"results": results, "vocab_size": vocab_size, "config": asdict(config)}
    finally:
        kernel_dispatch.set_kernels(previous)

    report = {
        "meta": {"command": "python -m tinygrad_llm bench train", "mode": mode, "steps": steps, "repeats": repeats,
                 "warmup": warmup, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "tokens_per_s_definition": "batch_size * context_size * steps / seconds (every position predicts)",
                 "speedup_definition": "tokens/s of this side / tokens/s of the other (above 1: this side is faster)",
                 "threads_set": thread_setting, "load_average_1_5_15_at_end": list(os.getloadavg()), "cpu_count": os.cpu_count()},
        "models": reports,
    }
    say(_describe(report))
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=1, default=str)
        say(f"\nWrote {out}")
    return report


def _describe(report: dict) -> str:
    meta = report["meta"]
    lines = [f"Training throughput ({meta['mode']}: {meta['repeats']} windows of {meta['steps']} steps after "
             f"{meta['warmup']} warm-up steps; median window)",
             f"{'model':<10} {'side':<10} {'tokens/s':>10} {'ms/step':>8} {'1st step s':>10}  speedups"]
    for model_name, model in report["models"].items():
        for side, r in model["results"].items():
            if "skipped" in r:
                lines.append(f"{model_name:<10} {side:<10} skipped: {r['skipped']}")
                continue
            speed = "  ".join(f"{v:.2f}x {k}" for k, v in r["speedup"].items())
            others = "" if r["others_cpu_fraction"] is None else f"  [others used {r['others_cpu_fraction']:.0%} of the CPUs]"
            lines.append(f"{model_name:<10} {side:<10} {r['tokens_per_s']:10,.0f} {r['step_ms']:8.2f} "
                         f"{r['first_step_s']:10.3f}  {speed}{others}")
    lines.append(f"Load average (1, 5, 15 min) at end: {meta['load_average_1_5_15_at_end']} on {meta['cpu_count']} CPUs "
                 "(above the CPU count: other processes competed; rerun when quieter)")
    return "\n".join(lines)
