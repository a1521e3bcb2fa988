"""Differentially private training of a language model: `train --dp-sigma S --dp-clip C` (Q37, M58).

The unit protected is one WINDOW of text. The training split is cut into N non-overlapping chunks of
context_size + 1 tokens (the inputs and their next-token targets); no two chunks share a token, so "this
window in or out" is a clear pair of neighbouring datasets. (A person's whole document spans many windows: the
guarantee for k windows together is weaker, roughly k times the epsilon.)

Each optimizer step is DP-SGD's (responsible/dp_sgd.py does the clipping and the noise):
    1. Poisson batch: every window joins with probability q = batch_size / N
    2. each window's gradient (of its mean token loss) is clipped to norm C = dp_clip
    3. sum + N(0, (sigma C)^2) on every coordinate, divided by the expected batch q N = batch_size
    4. AdamW steps on that gradient with the run's own schedule
    5. the RDP accountant records one step of (q, sigma)
and every evaluation reports epsilon at delta = dp_delta (or 1/N when that is 0).

What the guarantee covers is the weights (and anything computed from them alone). The train loss the loop
prints is measured on training windows without noise: a diagnostic for whoever trains, not something to publish.
"""
from __future__ import annotations

import numpy as np

from ..nn import functional as F
from ..responsible.dp_sgd import dp_sgd_step, poisson_batch
from ..responsible.rdp_accountant import RDPAccountant
from .config import TrainConfig


def private_windows(train_ids: np.ndarray, context_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, T), targets (N, T)) from N disjoint chunks of T + 1 tokens: the units DP-SGD protects."""
    count = len(train_ids) // (context_size + 1)
    chunks = np.asarray(train_ids)[:count * (context_size + 1)].reshape(count, context_size + 1)
    return chunks[:, :-1], chunks[:, 1:]


def window_losses(model, inputs, targets):
    """(B,): each window's mean next-token loss. Their mean over a batch is the plain loop's loss."""
    return F.cross_entropy(model(inputs), targets, reduction="none").mean(axis=1)


class PrivateTraining:
    """The windows, the sampling rate and the accountant of one DP-SGD run. steps_done: the steps a resumed run
    already took, which have already spent their share of the privacy budget."""

    def __init__(self, train_ids: np.ndarray, config: TrainConfig, steps_done: int = 0):
        self.inputs, self.targets = private_windows(train_ids, config.context_size)
        if len(self.inputs) < config.batch_size:
            raise ValueError(f"PrivateTraining: the training split holds {len(self.inputs)} windows of "
                             f"{config.context_size + 1} tokens, fewer than batch_size={config.batch_size}; the "
                             "sampling rate batch_size / windows must be at most 1 (use more text or a smaller batch)")
        self.config = config
        self.sample_rate = config.batch_size / len(self.inputs)
        self.delta = config.dp_delta or 1 / len(self.inputs)
        self.accountant = RDPAccountant()
        if steps_done:
            self.accountant.step(self.sample_rate, config.dp_sigma, steps_done)

    def optimizer_step(self, model, optimizer, scheduler, rng: np.random.Generator) -> tuple[float, float]:
        """One DP-SGD step. Returns (the batch's mean window loss, nan for an empty batch; the norm of the
        noisy gradient the optimizer used)."""
        batch = poisson_batch(len(self.inputs), self.sample_rate, rng)
        losses = []

        def recorded_window_losses(model, inputs, targets):
            loss = window_losses(model, inputs, targets)
            losses.append(loss.data)
            return loss

        dp_sgd_step(model, optimizer, recorded_window_losses, (self.inputs[batch], self.targets[batch]),
                    self.config.dp_clip, self.config.dp_sigma, self.config.batch_size, rng)
        scheduler.step()
        self.accountant.step(self.sample_rate, self.config.dp_sigma)
        loss_value = float(np.mean(losses[0])) if losses and len(losses[0]) else float("nan")
        grad_norm = float(np.sqrt(sum((p.grad.astype(np.float64) ** 2).sum() for p in model.parameters())))
        return loss_value, grad_norm

    def privacy_spent(self) -> dict:
        """What the steps so far have spent, for the run's history (and so its checkpoint)."""
        return {"epsilon": self.accountant.epsilon(self.delta), "delta": self.delta}


def privacy_text(record: dict) -> str:
    """The progress line's addition at an evaluation."""
    return f"  eps={record['epsilon']:.3f} (delta={record['delta']:.1e})"


def privacy_spent(metadata: dict) -> dict:
    """{"epsilon", "delta"} of a DP-trained checkpoint, from load_trained_model's metadata (its last evaluation,
    which is always the run's last step)."""
    history = metadata["state"]["history"]
    if not history or "epsilon" not in history[-1]:
        raise ValueError("privacy_spent: this checkpoint was not trained with DP-SGD (no epsilon in its history); "
                         "train with --dp-sigma and --dp-clip")
    return {"epsilon": history[-1]["epsilon"], "delta": history[-1]["delta"]}
