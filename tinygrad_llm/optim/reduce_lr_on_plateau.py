"""ReduceLROnPlateau: cut the learning rate when a VALIDATION metric stops improving.

This is a learning-rate schedule whose clock is the validation curve instead of the step count. It is not
online learning (which means updating a model on a stream of new data), and it should not be fed the
training batch loss: that is noisy (it would trigger at random) and keeps falling while the model overfits.
Call `scheduler.step(val_loss)` once per evaluation.

Rule (PyTorch's): a metric is an improvement if it beats the best so far by more than `threshold`
(relative: below best * (1 - threshold) in "min" mode; absolute: below best - threshold). Each evaluation without
improvement is a "bad epoch". When the count of consecutive bad epochs exceeds `patience`, i.e. on the
(patience + 1)-th one, every group's lr becomes max(lr * factor, min_lr) and the count restarts. For
`cooldown` evaluations after a reduction, bad epochs are not counted, giving the new rate time to work.
"""
from __future__ import annotations

import math

from .lr_scheduler import LRScheduler
from .optimizer import Optimizer


class ReduceLROnPlateau(LRScheduler):
    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                 eps: float = 1e-8):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' (a loss) or 'max' (an accuracy), got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1) to lower the lr (e.g. 0.1), got {factor}")
        for name, value in (("patience", patience), ("cooldown", cooldown), ("threshold", threshold),
                            ("min_lr", min_lr), ("eps", eps)):
            if not value >= 0:
                raise ValueError(f"ReduceLROnPlateau: {name} must be >= 0, got {value}")
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lr, self.eps = cooldown, min_lr, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        super().__init__(optimizer)

    def get_lr(self):
        """The rates as they stand: this schedule changes them only inside step(metric)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def is_better(self, metric: float) -> bool:
        """Beats the best so far by more than the threshold. The relative bar scales `best`, so it assumes a
        positive metric (a loss, an accuracy); use threshold_mode="abs" for metrics that can be negative."""
        direction = -1 if self.mode == "min" else 1  # which way counts as progress
        if self.threshold_mode == "rel":
            bar = self.best * (1 + direction * self.threshold)
        else:
            bar = self.best + direction * self.threshold
        return metric < bar if self.mode == "min" else metric > bar

    def step(self, metric) -> None:
        """Record one VALIDATION result (e.g. the validation loss after an epoch) and maybe lower the lr."""
        metric = float(metric)
        self.last_epoch += 1
        if self.is_better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group in self.optimizer.param_groups:
                new_lr = max(group["lr"] * self.factor, self.min_lr)
                if group["lr"] - new_lr > self.eps:  # ignore changes too small to matter
                    group["lr"] = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._set_lrs(self.get_lr())
