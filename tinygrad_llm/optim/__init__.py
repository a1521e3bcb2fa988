"""Optimizers, gradient clipping, learning-rate schedules, early stopping and the L1 proximal step.

The training loop, in order:

    optimizer.zero_grad()                      # gradients accumulate otherwise
    loss = loss_fn(model(x), y)
    loss.backward()
    clip_grad_norm_(model.parameters(), 1.0)   # log the norm it returns
    optimizer.step()
    scheduler.step()
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip_grad import clip_grad_norm_
from .early_stopping import EarlyStopping
from .grad_scaler import GradScaler
from .lr_scheduler import CosineAnnealingLR, ExponentialLR, LambdaLR, LinearWarmupCosine, LRScheduler, StepLR
from .optimizer import Optimizer
from .proximal import l1_proximal_step_
from .reduce_lr_on_plateau import ReduceLROnPlateau
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "clip_grad_norm_", "lr_scheduler", "LRScheduler",
    "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearWarmupCosine", "LambdaLR", "ReduceLROnPlateau",
    "EarlyStopping", "l1_proximal_step_", "GradScaler",
]
