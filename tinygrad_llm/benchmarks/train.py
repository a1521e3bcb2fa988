"""End-to-end training throughput: the same model and training step with each kernel set, and in PyTorch.

What one timed step does, on every side (as tinygrad_llm/char_lm_training.py does it): sample a batch of
(context, next char) pairs from the embedded corpus -> forward -> cross-entropy -> backward -> clip the
global gradient norm to 1 -> AdamW step (weight decay on matrices only) -> warmup + cosine schedule.
Throughput is tokens per second; for the character MLP LM each example predicts one token, so
tokens/s = examples/s = batch_size * steps / seconds.

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

import numpy as np

from .. import kernels as kernel_dispatch
from .. import optim
from ..char_lm_training import CharLMConfig
from ..data import CharVocabulary, load_text, next_token_batch, train_val_split
from ..nn import MLPLanguageModel
from ..nn import functional as F
from ..random import manual_seed
from .timing import OtherLoad

# Kernel functions the character MLP LM's training step calls (Linear -> matmul; loss -> cross-entropy).
CHAR_MLP_KERNELS = ("matmul", "cross_entropy_forward", "cross_entropy_backward")

MODES = {  # (timed steps per window, windows, warm-up steps)
    "full": (300, 5, 20),
    "fast": (50, 3, 5),
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


def _corpus(config: CharLMConfig):
    text = load_text(config.corpus)
    if config.max_chars:
        text = text[: config.max_chars]
    train_text, _ = train_val_split(text)
    vocab = CharVocabulary(text)
    return vocab, vocab.encode(train_text)


# ---------------------------------------------------------------------------------------------------------
# The character MLP language model (Bengio et al. 2003): library and PyTorch
# ---------------------------------------------------------------------------------------------------------
def char_mlp_library_step(config: CharLMConfig, total_steps: int):
    """A closure doing one training step of the library's MLPLanguageModel with the ACTIVE kernel set."""
    vocab, train_ids = _corpus(config)
    manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = MLPLanguageModel(vocab.size, config.block_size, config.embed_dim, config.hidden_dim)
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    optimizer = optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    schedule = optim.LinearWarmupCosine(optimizer, config.warmup_steps, max(total_steps, config.warmup_steps + 1),
                                        min_lr=config.min_lr)

    def step():
        contexts, targets = next_token_batch(train_ids, config.block_size, config.batch_size, rng)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(contexts), targets)
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        schedule.step()
        return loss

    return step, vocab.size


def char_mlp_torch_step(torch, config: CharLMConfig, total_steps: int):
    """The same model in PyTorch: Embedding -> concat -> Linear -> tanh -> Linear, AdamW, same sizes."""
    import math

    vocab, train_ids = _corpus(config)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    nn = torch.nn
    model = nn.Sequential(nn.Embedding(vocab.size, config.embed_dim), nn.Flatten(),
                          nn.Linear(config.block_size * config.embed_dim, config.hidden_dim), nn.Tanh(),
                          nn.Linear(config.hidden_dim, vocab.size))
    with torch.no_grad():
        model[-1].weight.mul_(0.1)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    warm, total = config.warmup_steps, max(total_steps, config.warmup_steps + 1)
    ratio = config.min_lr / config.lr

    def factor(step):  # the library's LinearWarmupCosine, as a multiplier of the base learning rate
        if step < warm:
            return (step + 1) / (warm + 1)
        if step > total:
            return ratio
        return ratio + (1 - ratio) * (1 + math.cos(math.pi * (step - warm) / (total - warm))) / 2

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def step():
        contexts, targets = next_token_batch(train_ids, config.block_size, config.batch_size, rng)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(contexts)), torch.from_numpy(targets))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        schedule.step()
        return loss

    return step, vocab.size


# The models this benchmark trains: name -> (library step builder, kernels it needs, torch step builder).
# The GPT joins here when the language-model issue lands (the library's GPT, an equivalent torch model,
# and its sequence batches: tokens/s = batch * block_size * steps / seconds). Until then it is absent,
# not faked.
MODELS = {
    "char_mlp": (char_mlp_library_step, CHAR_MLP_KERNELS, char_mlp_torch_step),
}


def run_train_benchmark(mode: str = "full", steps: int | None = None, repeats: int | None = None,
                        out="bench_train.json", sets=("reference", "numba"), use_torch: bool = True,
                        config: CharLMConfig | None = None, threads: int | None = None, verbose: bool = True) -> dict:
    if mode not in MODES:
        raise ValueError(f"bench train: mode must be one of {sorted(MODES)}, got {mode!r}")
    default_steps, default_repeats, warmup = MODES[mode]
    steps, repeats = steps or default_steps, repeats or default_repeats
    config = config or CharLMConfig(max_chars=50_000 if mode == "tiny" else None)
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
    models = {}
    try:
        for model_name, (library_step, needs, torch_step) in MODELS.items():
            results, sides = {}, {}
            for kernel_set in sets:
                module = kernel_dispatch.set_kernels(kernel_set)
                missing = [name for name in needs if not callable(getattr(module, name, None))]
                if missing:
                    results[kernel_set] = {"skipped": f"kernel set {kernel_set!r} lacks {', '.join(missing)}"}
                    continue
                step, vocab_size = library_step(config, total_steps)
                sides[kernel_set] = (lambda name=kernel_set: kernel_dispatch.set_kernels(name), step)
            if torch is not None:
                step, vocab_size = torch_step(torch, config, total_steps)
                sides["torch"] = (lambda: None, step)
            results.update(_measure(sides, steps, repeats, warmup, config.batch_size))
            if "torch" in results:
                results["torch"]["num_threads"] = torch.get_num_threads()
            results = {name: results[name] for name in [*sets, "torch"] if name in results}
            timed = [name for name, r in results.items() if "tokens_per_s" in r]
            for name in timed:
                results[name]["speedup"] = {other: results[name]["tokens_per_s"] / results[other]["tokens_per_s"]
                                            for other in timed if other != name}
            models[model_name] = {"results": results, "vocab_size": vocab_size,
                                  "config": {k: getattr(config, k) for k in ("block_size", "embed_dim", "hidden_dim",
                                                                             "batch_size", "lr", "weight_decay", "clip_norm")}}
    finally:
        kernel_dispatch.set_kernels(previous)

    report = {
        "meta": {"command": "python -m tinygrad_llm bench train", "mode": mode, "steps": steps, "repeats": repeats,
                 "warmup": warmup, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                 "tokens_per_s_definition": "batch_size * steps / seconds (one predicted token per example)",
                 "speedup_definition": "tokens/s of this side / tokens/s of the other (above 1: this side is faster)",
                 "not_yet": "GPT: added when the language-model issue lands",
                 "threads_set": thread_setting, "load_average_1_5_15_at_end": list(os.getloadavg()), "cpu_count": os.cpu_count()},
        "models": models,
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
    lines.append("(GPT: not benchmarked yet; it joins when the language-model issue lands)")
    lines.append(f"Load average (1, 5, 15 min) at end: {meta['load_average_1_5_15_at_end']} on {meta['cpu_count']} CPUs "
                 "(above the CPU count: other processes competed; rerun when quieter)")
    return "\n".join(lines)
