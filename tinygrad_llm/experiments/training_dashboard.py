"""Chapter 12 experiment (Q33): a training dashboard for one small ReLU MLP trained at several learning rates.

    learning_rate_dashboard(log_dir, fast)

Each run trains make_mlp (2 inputs, two ReLU hidden layers, 3 classes) on the spirals with Adam on mini-batches,
and every `log_every` steps logs to <log_dir>/lr=<lr>/ through RunLogger: the loss, the dead-ReLU fraction of
each hidden layer on the whole training set, the update-to-weight ratio of each parameter for that step, and
weight and gradient histograms (`tensorboard --logdir <log_dir>` shows the runs side by side). The measured
claim: the larger the learning rate, the more ReLU units end up dead (0 on every training point).

Returns a dict of plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import optim
from ..interpretability.run_logger import RunLogger
from ..interpretability.training_statistics import activation_health, log_training_step, parameter_snapshot
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor
from .mlp import load_split, make_mlp


def mean_dead_fraction(health: dict) -> float:
    """The dead-ReLU fraction averaged over the hidden layers (they have equal widths here)."""
    return float(np.mean([value for name, value in health.items() if name.startswith("dead_relu/")]))


def train_logged_mlp(X: np.ndarray, y: np.ndarray, lr: float, seed: int, steps: int, log_every: int,
                     logger: RunLogger, hidden: int = 64, batch_size: int = 64) -> dict:
    """Adam at `lr` on random mini-batches, logged every `log_every` steps and at the last. Returns the final loss
    on the training set, the mean dead fraction at initialisation and at the end, and the weight matrices'
    update ratios at every logged step."""
    manual_seed(seed)
    model = make_mlp(X.shape[1], hidden, int(y.max()) + 1, depth=3)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    inputs, rng = Tensor(X.astype(np.float32)), np.random.default_rng(seed)
    dead_at_init = mean_dead_fraction(activation_health(model, inputs))
    weight_ratios = []
    for step in range(1, steps + 1):
        logged = step % log_every == 0 or step == steps
        before = parameter_snapshot(model) if logged else None
        batch = rng.integers(0, len(X), batch_size)
        loss = F.cross_entropy(model(Tensor(X[batch].astype(np.float32))), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if logged:
            scalars = {"loss": loss.item(), **activation_health(model, inputs)}
            ratios = log_training_step(logger, model, step, before, scalars=scalars)
            weight_ratios += [ratio for name, ratio in ratios.items() if name.endswith("weight")]
    return {"final_loss": F.cross_entropy(model(inputs), y).item(), "dead_at_init": dead_at_init,
            "dead_at_end": mean_dead_fraction(activation_health(model, inputs)), "weight_ratios": weight_ratios}


def learning_rate_dashboard(log_dir="runs/training_dashboard", fast: bool = False, learning_rates=None,
                            seeds=None, steps: int | None = None, log_every: int = 25) -> dict:
    """The dead-ReLU fraction, the update-to-weight ratio and the loss against Adam's learning rate, each run
    logged to <log_dir>/lr=<lr> (an earlier log there is replaced). Figures are means over the seeds; the update
    ratio is the median over the weight matrices and the logged steps. learning_rates, seeds and steps override
    the sizes `fast` picks (a notebook's smaller run)."""
    start = time.perf_counter()
    default_rates = [1e-3, 1e-2, 1e-1] if fast else [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    default_seeds, default_steps = ([0], 100) if fast else ([0, 1, 2], 300)
    learning_rates = list(learning_rates or default_rates)
    seeds, steps = list(seeds or default_seeds), steps or default_steps
    X, y, _, _ = load_split("spirals", 1000)
    runs = {lr: [] for lr in learning_rates}
    for lr in learning_rates:
        for seed in seeds:
            with RunLogger(Path(log_dir) / f"lr={lr:g}" / f"seed={seed}", overwrite=True) as logger:
                runs[lr].append(train_logged_mlp(X, y, lr, seed, steps, log_every, logger))
    mean = lambda lr, key: float(np.mean([run[key] for run in runs[lr]]))
    return {
        "learning_rates": learning_rates, "seeds": len(seeds), "steps": steps,
        "dead_relu_at_init": float(np.mean([mean(lr, "dead_at_init") for lr in learning_rates])),
        "dead_relu_fraction": [mean(lr, "dead_at_end") for lr in learning_rates],
        "median_update_ratio": [float(np.median([r for run in runs[lr] for r in run["weight_ratios"]]))
                                for lr in learning_rates],
        "final_loss": [mean(lr, "final_loss") for lr in learning_rates],
        "log_dir": str(log_dir), "seconds": time.perf_counter() - start,
    }
