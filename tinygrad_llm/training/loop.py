"""One training loop for every language model (bigram, MLP, RNN/LSTM/GRU, GPT).

Each optimizer step:
    zero_grad -> for each micro-batch: forward -> loss / accum -> backward (gradients add up)
    -> clip the global gradient norm -> AdamW step -> learning-rate schedule
With mixed precision (config.precision fp16 or bf16; mixed_precision.py) the model computes in half
precision and the optimizer updates float32 master weights; with fp16 the loss is also scaled before
backward and the gradients unscaled after it (a step whose gradients overflowed is skipped). In fp32 those
pieces do nothing and the step is the plain one above.
With config.data_parallel (`mpiexec -n K ... train --data-parallel`; distributed/data_parallel.py) each rank
draws its own shard of every global batch, the gradients are averaged over the ranks right after backward,
and only rank 0 prints and writes.
With config.private (`train --dp-sigma S --dp-clip C`) the step is DP-SGD's instead (private_training.py: per-window
clipping and noise in place of the global clip) and each evaluation also prints the epsilon spent so far.
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
from ..distributed.data_parallel import DataParallel
from ..interpretability.run_logger import RunLogger
from ..interpretability.training_statistics import log_training_step, parameter_snapshot
from ..nn import functional as F
from ..random import manual_seed
from .checkpoints import (TrainingState, check_same_run, read_training_checkpoint, restore_training_checkpoint,
                          save_training_checkpoint)
from .config import TrainConfig
from .mixed_precision import mixed_precision_for
from .model_factory import build_model
from .objectives import Objective, build_objective, next_token
from .private_training import PrivateTraining, privacy_text
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
    """Mean cross-entropy of the model's predictions against the targets, (B, T, V) vs (B, T): the next token at
    every position (causal), or the masked tokens only (mlm: the other targets are IGNORE_INDEX)."""
    return F.cross_entropy(model(inputs), targets)


def estimate_loss(model, ids: np.ndarray, config: TrainConfig, rng: np.random.Generator,
                  objective: Objective = next_token) -> float:
    """Mean loss over `eval_batches` random windows, in eval mode (no dropout) and without a graph."""
    was_training = model.training
    model.eval()
    with no_grad():
        losses = [language_model_loss(model, *objective(*random_windows(ids, config.context_size, config.batch_size,
                                                                         rng), rng)).item()
                  for _ in range(config.eval_batches)]
    model.train(was_training)
    return float(np.mean(losses))


def random_micro_batches(train_ids, config: TrainConfig, data_rng):
    """grad_accum_steps batches of random windows, each with the divisor of its loss: the summed gradients are
    then the gradient of the micro-batches' mean loss."""
    for _ in range(config.grad_accum_steps):
        yield (*random_windows(train_ids, config.context_size, config.batch_size, data_rng), config.grad_accum_steps)


def micro_batch_backward(model, scaler, inputs, targets, divisor) -> float:
    """Backward of one micro-batch's (scaled) loss / divisor; returns the unscaled value. The loss tensor lives
    only in here: it holds the micro-batch's whole graph, and a loop variable would keep that alive during the
    next micro-batch's forward (measured: nearly twice the peak memory at 2 micro-batches)."""
    loss = language_model_loss(model, inputs, targets) / divisor
    scaler.scale(loss).backward()
    return loss.item()


def optimizer_step(model, master_weights, scaler, optimizer, scheduler, train_ids, config: TrainConfig, data_rng,
                   data_parallel=None, objective: Objective = next_token):
    """One step: zero the gradients; forward/backward over grad_accum_steps micro-batches (gradients add up,
    of the scaled loss); the model's gradients into the master weights' (float32); unscale; clip; update the
    master weights unless a gradient overflowed; round them into the model; schedule.
    Returns (the step's loss, the gradient norm before clipping; inf for a skipped step).

    With data_parallel (a distributed.DataParallel), this rank's batches come from its shard of the data, and
    the master gradients are averaged over all ranks before unscaling: every rank then holds the same gradient
    (an overflow on any rank reaches all of them), so all clip, skip or step alike."""
    master_weights.zero_grad()
    loss_value = 0.0
    batches = data_parallel.micro_batches() if data_parallel else random_micro_batches(train_ids, config, data_rng)
    for inputs, targets, divisor in batches:
        loss_value += micro_batch_backward(model, scaler, *objective(inputs, targets, data_rng), divisor)
    master_weights.copy_grads_to_master()
    if data_parallel:
        loss_value = data_parallel.average(master_weights.parameters(), loss_value)
    scaler.unscale_(optimizer)
    if scaler.found_inf(optimizer):  # the step will be skipped: nothing to clip
        grad_norm = float("inf")
    elif config.clip_norm > 0:
        grad_norm = optim.clip_grad_norm_(master_weights.parameters(), config.clip_norm)
    else:
        grad_norm = float("nan")
    scaler.step(optimizer)
    scaler.update()
    master_weights.copy_master_to_model()
    scheduler.step()
    return loss_value, float(grad_norm)


def evaluation_record(model, data: TextData, config: TrainConfig, step: int, lr: float, grad_norm: float,
                      objective: Objective = next_token) -> dict:
    """Train and val loss estimated on windows drawn from a generator seeded by (seed, step): evaluating
    more or less often never changes the batches training sees."""
    return {
        "step": step,
        "tokens": step * config.tokens_per_step,
        "train_loss": estimate_loss(model, data.train_ids, config, np.random.default_rng([config.seed, 2, step]),
                                    objective),
        "val_loss": estimate_loss(model, data.val_ids, config, np.random.default_rng([config.seed, 3, step]), objective),
        "lr": lr,
        "grad_norm": grad_norm,
    }


def train_language_model(config: TrainConfig, out_dir=None, resume_from=None, stop_after_step: int | None = None,
                         progress: bool = True, print_fn=None, data: TextData | None = None,
                         communicator=None) -> TrainingRun:
    """Train (or resume) a run; with out_dir, write checkpoint.npz, history.csv/.json and loss_curve.png there.

    stop_after_step ends this call early, as an interruption would (the schedule still spans config.steps).
    Each evaluation prints a line under the progress bar, or through print_fn (e.g. print) without one.
    data: token ids and tokenizer prepared by the caller (an experiment with its own text or split); by
    default the config's corpus and tokenizer settings make them.
    communicator: with config.data_parallel, the mpi4py communicator whose ranks train together (default: all
    the ranks mpiexec started).
    """
    saved = read_training_checkpoint(resume_from) if resume_from is not None else None
    if saved is not None:
        check_same_run(config, saved[1], resume_from)
    manual_seed(config.seed)
    if data is None:
        data = prepare_text_data(config, Tokenizer.from_dict(saved[1]["tokenizer"]) if saved else None)
    model = build_model(config, data.tokenizer.vocab_size).to(config.device)
    objective = build_objective(config, data.tokenizer)
    master_weights, scaler = mixed_precision_for(model, config.precision)
    optimizer, scheduler = build_optimizer(master_weights, config)
    data_rng = np.random.default_rng([config.seed, 1])
    data_parallel = DataParallel(data.train_ids, config, communicator) if config.data_parallel else None
    state = TrainingState()
    if saved is not None:
        state = restore_training_checkpoint(*saved, model, optimizer, scheduler, data_rng, master_weights, scaler)
        if data_parallel:
            data_parallel.sampler.load_state_dict(state.sampler)
    private = PrivateTraining(data.train_ids, config, steps_done=state.step) if config.private else None
    is_main = data_parallel is None or data_parallel.is_main  # with several ranks, only rank 0 prints and writes
    model.train()

    call_start = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else None
    checkpoint = out_dir / "checkpoint.npz" if out_dir is not None else None
    if config.log_histograms and out_dir is None:
        raise ValueError("train_language_model: log_histograms writes its log to out_dir/events; pass an out_dir")
    # --log-histograms: a fresh run replaces an earlier log in out_dir, a resumed run appends to it
    logger = RunLogger(out_dir / "events", overwrite=saved is None) if config.log_histograms and is_main else None
    last_step = min(config.steps, stop_after_step or config.steps)
    stopped_early, logs, best_weights = False, {}, None
    train_seconds, tokens_this_call = 0.0, 0  # evaluation time is left out of tokens/s

    def say(line: str) -> None:
        if not is_main:
            return
        if progress:
            bar.write(line)
        elif print_fn is not None:
            print_fn(line)

    bar = tqdm(range(state.step + 1, last_step + 1), desc=f"train {config.model if config.objective == 'causal' else config.objective}", disable=not (progress and is_main),
               mininterval=0.5, initial=state.step, total=config.steps)
    for step in bar:
        evaluates = step % config.eval_every == 0 or step == last_step
        before = parameter_snapshot(master_weights) if logger is not None and evaluates else None  # update ratios
        start = time.perf_counter()
        if private is not None:
            loss_value, grad_norm = private.optimizer_step(model, optimizer, scheduler, data_rng)
        else:
            loss_value, grad_norm = optimizer_step(model, master_weights, scaler, optimizer, scheduler,
                                                   data.train_ids, config, data_rng, data_parallel, objective)
        train_seconds += time.perf_counter() - start
        state.step = step
        tokens_this_call += data_parallel.step_tokens if data_parallel else config.tokens_per_step
        tokens_per_s = tokens_this_call / train_seconds
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_per_s=f"{tokens_per_s:,.0f}", refresh=False)
        if not evaluates:
            continue

        record = evaluation_record(model, data, config, step, optimizer.param_groups[0]["lr"], grad_norm, objective)
        record.update(tokens_per_s=tokens_per_s, train_seconds=train_seconds)
        if data_parallel:
            record["tokens"] = data_parallel.tokens_seen  # all ranks' tokens
        if scaler.is_enabled():
            record.update(loss_scale=scaler.get_scale(), skipped_steps=scaler.skipped_steps)
        if private is not None:
            record.update(private.privacy_spent())
        state.history.append(record)
        say(f"step {step:5d}  train {record['train_loss']:.4f}  val {record['val_loss']:.4f}  "
            f"lr {record['lr']:.2e}  {tokens_per_s:,.0f} tok/s{privacy_text(record) if private else ''}")
        if record["val_loss"] < state.best_val_loss:
            state.best_val_loss, state.evals_without_improvement = record["val_loss"], 0
            best_weights = master_weights.state_dict() if config.early_stopping_patience else None
        else:
            state.evals_without_improvement += 1
        if config.early_stopping_patience and state.evals_without_improvement >= config.early_stopping_patience:
            stopped_early = True
            restored = best_weights is not None  # None when the best evaluation came before a resume
            if restored:
                master_weights.load_state_dict(best_weights)
            say(f"early stopping at step {step}: val loss has not improved for "
                f"{state.evals_without_improvement} evaluations (best {state.best_val_loss:.4f}"
                f"{', weights restored' if restored else ''})")
        if out_dir is not None and is_main:
            state.sampler = data_parallel.sampler.state_dict() if data_parallel else None
            save_training_checkpoint(checkpoint, config, model, optimizer, scheduler, data.tokenizer, state, data_rng,
                                     master_weights, scaler)
            logs = write_logs(out_dir, state.history, asdict(config))
            if logger is not None:  # after the checkpoint: a resume never repeats a logged step
                log_training_step(logger, master_weights, step, before,
                                  scalars={k: v for k, v in record.items() if k != "step"})
        if stopped_early:
            break
    bar.close()
    if logger is not None:
        logger.close()
    return TrainingRun(config=config, model=model, tokenizer=data.tokenizer, train_ids=data.train_ids,
                       val_ids=data.val_ids, history=state.history, seconds=time.perf_counter() - call_start,
                       tokens_per_s=tokens_this_call / train_seconds if train_seconds > 0 else float("nan"),
                       stopped_early=stopped_early, checkpoint=checkpoint, logs=logs)
