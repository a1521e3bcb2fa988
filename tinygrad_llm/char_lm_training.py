"""Train a character-level MLP language model on a corpus: the library's main job for now.

One step: sample a batch of (context, next char) pairs -> logits -> cross-entropy -> backward -> clip
the global gradient norm -> AdamW step -> learning-rate schedule. The order matters: zero_grad before
backward, clip after it, schedule after the step.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from . import optim
from .autograd import no_grad
from .checkpoint import save_checkpoint
from .data import CharVocabulary, all_next_token_examples, load_text, next_token_batch, train_val_split
from .nn import MLPLanguageModel
from .nn import functional as F
from .random import manual_seed


@dataclass
class CharLMConfig:
    corpus: str = "embedded"
    block_size: int = 8
    embed_dim: int = 24
    hidden_dim: int = 256
    batch_size: int = 128
    steps: int = 4000
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    eval_every: int = 500
    max_chars: int | None = None  # truncate the corpus (fast mode for tests and notebooks)
    seed: int = 0


def evaluate_loss(model, ids: np.ndarray, block_size: int, max_examples: int = 50_000, chunk: int = 8192) -> float:
    """Mean next-character cross-entropy (nats) over up to `max_examples` evenly spaced positions."""
    contexts, targets = all_next_token_examples(ids, block_size)
    keep = np.linspace(0, len(targets) - 1, min(max_examples, len(targets))).astype(np.int64)
    contexts, targets = contexts[keep], targets[keep]
    total = 0.0
    with no_grad():
        for start in range(0, len(targets), chunk):
            logits = model(contexts[start:start + chunk])
            total += F.cross_entropy(logits, targets[start:start + chunk], reduction="sum").item()
    return total / len(targets)


def train_char_lm(config: CharLMConfig, checkpoint_path=None, progress: bool = True) -> dict:
    """Train and return {"model", "vocab", "history", "train_loss", "val_loss", "seconds", ...}."""
    rng = manual_seed(config.seed)
    text = load_text(config.corpus)
    if config.max_chars:
        text = text[: config.max_chars]
    train_text, val_text = train_val_split(text)
    vocab = CharVocabulary(text)
    train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)

    model = MLPLanguageModel(vocab.size, config.block_size, config.embed_dim, config.hidden_dim)
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    optimizer = optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    schedule = optim.LinearWarmupCosine(optimizer, config.warmup_steps, config.steps, min_lr=config.min_lr)

    history = []
    start = time.perf_counter()
    bar = tqdm(range(1, config.steps + 1), desc="train", disable=not progress, mininterval=0.5)
    for step in bar:
        contexts, targets = next_token_batch(train_ids, config.block_size, config.batch_size, rng)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(contexts), targets)
        loss.backward()
        grad_norm = optim.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        schedule.step()
        chars_per_s = step * config.batch_size / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{loss.item():.3f}", ex_per_s=f"{chars_per_s:,.0f}", refresh=False)
        if step % config.eval_every == 0 or step == config.steps:
            record = {
                "step": step,
                "train_loss": evaluate_loss(model, train_ids, config.block_size, max_examples=len(val_ids)),
                "val_loss": evaluate_loss(model, val_ids, config.block_size),
                "grad_norm": grad_norm,
                "lr": optimizer.param_groups[0]["lr"],
            }
            history.append(record)
            bar.write(f"step {step:5d}  train {record['train_loss']:.4f}  val {record['val_loss']:.4f}")
    seconds = time.perf_counter() - start

    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, model.state_dict(), {"config": asdict(config), "chars": vocab.chars})
    final = history[-1]
    return {
        "model": model,
        "vocab": vocab,
        "history": history,
        "train_loss": final["train_loss"],
        "val_loss": final["val_loss"],
        "uniform_loss": math.log(vocab.size),
        "val_ids": val_ids,
        "seconds": seconds,
    }
