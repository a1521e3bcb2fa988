"""Training an encoder-decoder on a synthetic task, with teacher forcing (Q14-Q15).

Each step draws a FRESH batch of examples from the task (data is unlimited, so there is no epoch and no
memorising a fixed training set), never one of the held-out examples, and trains every target position
at once:

    logits = model(source, [BOS] + target)           (B, T, V), the decoder reads the gold prefix
    loss   = cross_entropy(logits, target + [EOS])   pads are ignore_index: no loss, no gradient

The optimizer, schedule and clipping are the language-model loop's (training/loop.py): AdamW with decay
on matrices only, linear warmup then cosine decay, global-norm clipping.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .. import optim
from ..data.seq2seq_tasks import IGNORE_INDEX, Seq2SeqTask, make_batch, sample_examples
from ..nn import functional as F
from ..random import manual_seed
from .loop import build_optimizer


@dataclass
class Seq2SeqTrainConfig:
    steps: int = 2000
    batch_size: int = 64
    min_length: int = 3          # the task's length knob, drawn uniformly per example
    max_length: int = 10
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    eval_every: int = 0          # 0: evaluate only at the end
    seed: int = 0


@dataclass
class Seq2SeqTrainingRun:
    config: Seq2SeqTrainConfig
    model: object
    history: list = field(default_factory=list)   # one record per evaluation (step, train_loss, and `evaluate`'s keys)
    seconds: float = 0.0                          # training time, evaluations left out
    examples_per_s: float = float("nan")


def seq2seq_loss(model, batch) -> object:
    """Mean cross-entropy of the teacher-forced predictions over the real (non-pad) target tokens."""
    logits = model(batch.source, batch.decoder_input, batch.source_padding)
    return F.cross_entropy(logits, batch.decoder_target, ignore_index=IGNORE_INDEX)


def train_seq2seq(model, task: Seq2SeqTask, config: Seq2SeqTrainConfig, held_out=(), evaluate=None,
                  progress: bool = True, print_fn=None) -> Seq2SeqTrainingRun:
    """Train `model` in place on fresh batches of `task` (never an example of `held_out`).

    evaluate: called as evaluate(model) every eval_every steps and at the end; its dict of numbers goes into
    the history with the step and the mean training loss since the previous evaluation.
    """
    manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 1])
    excluded = frozenset(held_out)
    optimizer, scheduler = build_optimizer(model, config)
    parameters = model.parameters()
    run = Seq2SeqTrainingRun(config=config, model=model)
    losses, seconds = [], 0.0

    def record(step: int) -> None:
        entry = {"step": step, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        if evaluate is not None:
            was_training = model.training
            model.eval()
            entry.update(evaluate(model))
            model.train(was_training)
        run.history.append(entry)
        losses.clear()
        line = "  ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                         for key, value in entry.items() if isinstance(value, (int, float)))
        if progress:
            bar.write(line)
        elif print_fn is not None:
            print_fn(line)

    model.train()
    bar = tqdm(range(1, config.steps + 1), desc=f"train {task.name}", disable=not progress, mininterval=0.5)
    for step in bar:
        start = time.perf_counter()
        examples = sample_examples(task, config.batch_size, config.min_length, config.max_length, rng, exclude=excluded)
        optimizer.zero_grad()
        loss = seq2seq_loss(model, make_batch(examples, task.vocabulary))
        loss.backward()
        if config.clip_norm > 0:
            optim.clip_grad_norm_(parameters, config.clip_norm)
        optimizer.step()
        scheduler.step()
        seconds += time.perf_counter() - start
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
            record(step)
    bar.close()
    run.seconds = seconds
    run.examples_per_s = config.steps * config.batch_size / seconds if seconds > 0 else float("nan")
    return run

