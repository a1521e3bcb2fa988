"""One training loop for every language model (bigram, MLP, RNN/LSTM/GRU, GPT).

Each optimizer step:
    zero_grad -> for each micro-batch: forward -> loss / accum -> backward (gradients add up)
    -> clip the global gradient norm -> AdamW step -> learning-rate schedule
Every `eval_every` steps it estimates train and val loss, logs, checks early stopping and (when given an
output folder) writes a checkpoint that can be resumed bit-exactly.

Three generators keep a run repeatable and resumable: the library's (initialisation, dropout), one for
the order of training batches, and a fresh one per evaluation seeded from (seed, step), so evaluating
more or less often never changes which batches training sees.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import optim
from ..autograd import no_grad
from ..data import Tokenizer, random_windows
from ..nn import functional as F
from ..random import manual_seed
from .checkpoints import (TrainingState, check_same_run, read_training_checkpoint, restore_training_checkpoint,
                          save_training_checkpoint)
from .config import TrainConfig
from .model_factory import build_model
from .run_log import write_logs
from .text_data import TextData, prepare_text_data


@dataclass
class TrainingRun:
    config: TrainConfig
    model: object
    tokenizer: object
    train_ids: np.ndarray
    val_ids: np.ndarray
    history: list
    seconds: float
    tokens_per_s: float
    stopped_early: bool = False
    checkpoint: Path | None = None
    logs: dict = field(default_factory=dict)

    @property
    def final(self) -> dict:
        return self.history[-1]


def build_optimizer(model, config: TrainConfig):
    """AdamW with weight decay on matrices only (biases, LayerNorm gains and the like are not decayed)."""
    named = list(model.named_parameters())
    matrices = [p for _, p in named if p.ndim >= 2]
    others = [p for _, p in named if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}]
    if others:
        groups.append({"params": others, "weight_decay": 0.0})
    optimizer = optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))
    scheduler = optim.LinearWarmupCosine(optimizer, config.warmup_steps, config.steps, min_lr=config.min_lr)
    return optimizer, scheduler


def language_model_loss(model, inputs, targets):
    """Mean cross-entropy of every position's prediction against the next token: (B, T, V) vs (B, T)."""
    return F.cross_entropy(model(inputs), targets)


def estimate_loss(model, ids: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> float:
    """Mean loss over `eval_batches` random windows, in eval mode (no dropout) and without a graph."""
    was_training = model.training
    model.eval()
    with no_grad():
        losses = [language_model_loss(model, *random_windows(ids, config.context_size, config.batch_size, rng)).item()
                  for _ in range(config.eval_batches)]
    model.train(was_training)
    return float(np.mean(losses))


def optimizer_step(model, parameters, optimizer, scheduler, train_ids, config: TrainConfig, data_rng):
    """One step: zero_grad, then forward/backward over grad_accum_steps micro-batches (gradients add up),
    clip, update, schedule. Returns (the step's loss, the gradient norm before clipping)."""
    optimizer.zero_grad()
    loss_value = 0.0
    for _ in range(config.grad_accum_steps):
        inputs, targets = random_windows(train_ids, config.context_size, config.batch_size, data_rng)
        loss = language_model_loss(model, inputs, targets) / config.grad_accum_steps
        loss.backward()
        loss_value += loss.item()
    grad_norm = optim.clip_grad_norm_(parameters, config.clip_norm) if config.clip_norm > 0 else float("nan")
    optimizer.step()
    scheduler.step()
    return loss_value, float(grad_norm)


def evaluation_record(model, data: TextData, config: TrainConfig, step: int, lr: float, grad_norm: float) -> dict:
    """Train and val loss estimated on windows drawn from a generator seeded by (seed, step): evaluating
    more or less often never changes the batches training sees."""
    return {
        "step": step,
        "tokens": step * config.tokens_per_step,
        "train_loss": estimate_loss(model, data.train_ids, config, np.random.default_rng([config.seed, 2, step])),
        "val_loss": estimate_loss(model, data.val_ids, config, np.random.default_rng([config.seed, 3, step])),
        "lr": lr,
        "grad_norm": grad_norm,
    }


def train_language_model(config: TrainConfig, out_dir=None, resume_from=None, stop_after_step: int | None = None,
                         progress: bool = True, print_fn=None, data: TextData | None = None) -> TrainingRun:
    """Train (or resume) a run; with out_dir, write checkpoint.npz, history.csv/.json and loss_curve.png there.

    stop_after_step ends this call early, as an interruption would (the schedule still spans config.steps).
    Each evaluation prints a line under the progress bar, or through print_fn (e.g. print) without one.
    data: token ids and tokenizer prepared by the caller (an experiment with its own text or split); by
    default the config's corpus and tokenizer settings make them.
    """
    saved = read_training_checkpoint(resume_from) if resume_from is not None else None
    if saved is not None:
        check_same_run(config, saved[1], resume_from)
    manual_seed(config.seed)
    if data is None:
        data = prepare_text_data(config, Tokenizer.from_dict(saved[1]["tokenizer"]) if saved else None)
    model = build_model(config, data.tokenizer.vocab_size).to(config.device)
    optimizer, scheduler = build_optimizer(model, config)
    data_rng = np.random.default_rng([config.seed, 1])
    state = TrainingState()
    if saved is not None:
        state = restore_training_checkpoint(*saved, model, optimizer, scheduler, data_rng)
    model.train()

    call_start = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else None
    checkpoint = out_dir / "checkpoint.npz" if out_dir is not None else None
    last_step = min(config.steps, stop_after_step or config.steps)
    parameters = model.parameters()
    stopped_early, logs, best_weights = False, {}, None
    train_seconds, tokens_this_call = 0.0, 0  # evaluation time is left out of tokens/s

    def say(line: str) -> None:
        if progress:
            bar.write(line)
        elif print_fn is not None:
            print_fn(line)

    bar = tqdm(range(state.step + 1, last_step + 1), desc=f"train {config.model}", disable=not progress,
               mininterval=0.5, initial=state.step, total=config.steps)
    for step in bar:
        start = time.perf_counter()
        loss_value, grad_norm = optimizer_step(model, parameters, optimizer, scheduler, data.train_ids, config, data_rng)
        train_seconds += time.perf_counter() - start
        state.step = step
        tokens_this_call += config.tokens_per_step
        tokens_per_s = tokens_this_call / train_seconds
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_per_s=f"{tokens_per_s:,.0f}", refresh=False)
        if step % config.eval_every and step != last_step:
            continue

        record = evaluation_record(model, data, config, step, optimizer.param_groups[0]["lr"], grad_norm)
        record.update(tokens_per_s=tokens_per_s, train_seconds=train_seconds)
        state.history.append(record)
        say(f"step {step:5d}  train {record['train_loss']:.4f}  val {record['val_loss']:.4f}  "
            f"lr {record['lr']:.2e}  {tokens_per_s:,.0f} tok/s")
        if record["val_loss"] < state.best_val_loss:
            state.best_val_loss, state.evals_without_improvement = record["val_loss"], 0
            best_weights = model.state_dict() if config.early_stopping_patience else None
        else:
            state.evals_without_improvement += 1
        if config.early_stopping_patience and state.evals_without_improvement >= config.early_stopping_patience:
            stopped_early = True
            restored = best_weights is not None  # None when the best evaluation came before a resume
            if restored:
                model.load_state_dict(best_weights)
            say(f"early stopping at step {step}: val loss has not improved for "
                f"{state.evals_without_improvement} evaluations (best {state.best_val_loss:.4f}"
                f"{', weights restored' if restored else ''})")
        if out_dir is not None:
            save_training_checkpoint(checkpoint, config, model, optimizer, scheduler, data.tokenizer, state, data_rng)
            logs = write_logs(out_dir, state.history, asdict(config))
        if stopped_early:
            break
    bar.close()
    return TrainingRun(config=config, model=model, tokenizer=data.tokenizer, train_ids=data.train_ids,
                       val_ids=data.val_ids, history=state.history, seconds=time.perf_counter() - call_start,
                       tokens_per_s=tokens_this_call / train_seconds if train_seconds > 0 else float("nan"),
                       stopped_early=stopped_early, checkpoint=checkpoint, logs=logs)
