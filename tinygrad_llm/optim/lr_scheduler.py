"""Learning-rate schedules: the learning rate as a function of the step count.

A schedule is an optimisation tool, not a regulariser: warmup keeps the first updates small while Adam's
moment estimates are still noisy, and decay lets the weights settle into a minimum instead of bouncing
around it. (Overfitting is fought with data, weight decay, dropout and early stopping.)

Each scheduler here writes `group["lr"] = base_lr * f(step)` into every parameter group of its optimizer,
where base_lr is the group's learning rate when the scheduler was created (saved as `group["initial_lr"]`).
The values are computed in closed form from the step count, so they never drift and resuming needs only the
step count. Constructing a scheduler already applies f(0); call `scheduler.step()` once per optimizer step
(or per epoch), after `optimizer.step()`:

    zero_grad -> forward -> loss -> backward -> clip -> optimizer.step() -> scheduler.step()
"""
from __future__ import annotations

import math
from numbers import Integral

from .optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses define `get_lr()`, the learning rates at step `self.last_epoch`."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} needs an Optimizer (e.g. tgl.optim.AdamW(model.parameters())), "
                f"got a {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0  # the number of step() calls so far; "epoch" is PyTorch's name, it may count batches
        self._set_lrs(self.get_lr())

    def get_lr(self) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr()")

    def step(self) -> None:
        """Advance one step and write the new learning rate into every parameter group."""
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _set_lrs(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group, as set by the last step (what to log)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """The scheduler's counters and settings (not the optimizer, and not functions such as a LambdaLR's
        lambda: code is not saved in a checkpoint, pass it again when building the scheduler)."""
        return {key: value for key, value in vars(self).items() if key != "optimizer" and not callable(value)}

    def load_state_dict(self, state_dict: dict) -> None:
        unknown = sorted(set(state_dict) - set(vars(self)))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: unknown keys {unknown}; was this state saved from a "
                "different kind of scheduler?"
            )
        self.__dict__.update(state_dict)


def _check_positive_int(scheduler: str, name: str, value) -> None:
    if not (isinstance(value, Integral) and value > 0):
        raise ValueError(f"{scheduler}: {name} must be a positive integer number of steps, got {value!r}")


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size): multiply by gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        _check_positive_int("StepLR", "step_size", step_size)
        if not gamma > 0:
            raise ValueError(f"StepLR: gamma must be > 0 (0.1 divides the rate by 10), got {gamma}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** step: multiply by gamma every step."""

    def __init__(self, optimizer: Optimizer, gamma: float):
        if not gamma > 0:
            raise ValueError(f"ExponentialLR: gamma must be > 0 (e.g. 0.99), got {gamma}")
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


def _cosine(progress: float, high: float, low: float) -> float:
    """Half a cosine wave from `high` (progress 0) to `low` (progress 1); (high + low) / 2 at progress 0.5."""
    return low + (high - low) * (1 + math.cos(math.pi * progress)) / 2


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2.

    Falls from base_lr to eta_min over T_max steps. Like PyTorch's it is periodic: after T_max it rises again
    (reaching base_lr at 2*T_max). For a flat tail after the decay use LinearWarmupCosine.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        _check_positive_int("CosineAnnealingLR", "T_max", T_max)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def get_lr(self):
        return [_cosine(self.last_epoch / self.T_max, base, self.eta_min) for base in self.base_lrs]


class LinearWarmupCosine(LRScheduler):
    """Linear warmup, then cosine decay to min_lr, then flat (the schedule GPT-style models train with).

    With W = warmup_steps and T = total_steps:
        step <  W:        lr = base_lr * (step + 1) / (W + 1)       from base_lr/(W+1) (about 0) up towards base_lr
        W <= step <= T:   lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * (step - W) / (T - W))) / 2
        step >  T:        lr = min_lr
    so lr = base_lr exactly at step W, (base_lr + min_lr) / 2 at step (W + T) / 2, and min_lr at step T.
    The warmup never uses lr = 0, which would waste the first step. warmup_steps=0 gives plain cosine decay.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        if not (isinstance(warmup_steps, Integral) and warmup_steps >= 0):
            raise ValueError(f"LinearWarmupCosine: warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        if not (isinstance(total_steps, Integral) and total_steps > warmup_steps):
            raise ValueError(
                f"LinearWarmupCosine: total_steps ({total_steps!r}) must be an integer larger than warmup_steps "
                f"({warmup_steps}); warmup is usually a few percent of training"
            )
        if not min_lr >= 0:
            raise ValueError(f"LinearWarmupCosine: min_lr must be >= 0, got {min_lr}")
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        super().__init__(optimizer)

    def get_lr(self):
        return [self.lr_at(self.last_epoch, base) for base in self.base_lrs]

    def lr_at(self, step: int, base_lr: float) -> float:
        if step < self.warmup_steps:
            return base_lr * (step + 1) / (self.warmup_steps + 1)
        if step > self.total_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return _cosine(progress, base_lr, self.min_lr)


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step), for any schedule you can write as a function of the step."""

    def __init__(self, optimizer: Optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be a function of the step count, got {lr_lambda!r}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.lr_lambda(self.last_epoch) for base in self.base_lrs]
