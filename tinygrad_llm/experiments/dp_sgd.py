"""Chapter 14 experiment (Q37, M58): what privacy costs in accuracy, and what it buys in epsilon.

    accuracy_against_sigma(fast)   a small MLP trained on two moons by DP-SGD (Poisson batches, per-example
                                   clipping to C = 1, noise multiplier sigma) for several sigma, from the same
                                   start and the same batches; held-out accuracy and the epsilon the RDP accountant
                                   reports at delta = 1/(10 N). Two runs without noise separate the costs: plain SGD
                                   (sigma = 0, C = inf) and clipping alone (sigma = 0, C = 1); both have epsilon inf

More noise buys a smaller epsilon and costs accuracy; how much accuracy depends on how many examples share each
step (the noise on the average is sigma*C/B, so a larger expected batch hides the same noise better). Clipping alone
protects nothing (epsilon stays infinite) though it already changes the updates. Returns a dict of plain numbers;
fast=True is the CI size.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad
from ..data.synthetic import make_moons
from ..nn import functional as F
from ..nn.layers import Linear
from ..nn.module import Module
from ..optim import SGD
from ..random import manual_seed
from ..responsible import dp_sgd
from ..tensor import Tensor


class MoonsClassifier(Module):
    def __init__(self, hidden: int = 16):
        self.hidden, self.out = Linear(2, hidden), Linear(hidden, 2)

    def forward(self, x):
        return self.out(self.hidden(x).tanh())


def per_example_cross_entropy(model, x, y):
    return F.cross_entropy(model(Tensor(x)), y, reduction="none")


def train_with_dp_sgd(features, labels, noise_multiplier: float, max_norm: float, expected_batch_size: int,
                      steps: int, lr: float, seed: int):
    """(model, accountant) after `steps` DP-SGD steps; the batches depend on the seed only, not on sigma."""
    manual_seed(seed)
    model = MoonsClassifier()
    accountant = dp_sgd.dp_sgd_training(model, SGD(model.parameters(), lr=lr), per_example_cross_entropy, (features, labels),
                                 noise_multiplier, max_norm, expected_batch_size, steps, seed)
    return model, accountant


def accuracy_against_sigma(fast: bool = True, seed: int = 0) -> dict:
    """Held-out accuracy and epsilon for each sigma (see the module docstring)."""
    num_train, steps, sigmas = (1000, 300, (1.0, 4.0, 8.0)) if fast else (10000, 3000, (0.5, 1.0, 2.0, 4.0, 8.0))
    expected_batch_size, max_norm, lr = 8, 1.0, 0.5  # a small batch: the noise on the average, sigma*C/B, shows
    train_x, train_y = make_moons(num_train, noise=0.15, rng=seed)
    test_x, test_y = make_moons(2000, noise=0.15, rng=seed + 1)
    delta = 1 / (10 * num_train)
    settings = [("sgd", 0.0, math.inf), ("clipping_only", 0.0, max_norm)]  # what clipping alone costs, no noise
    settings += [(f"sigma={sigma}", sigma, max_norm) for sigma in sigmas]
    runs = {}
    for name, sigma, clip in settings:
        model, accountant = train_with_dp_sgd(train_x.astype(np.float32), train_y, sigma, clip, expected_batch_size,
                                              steps, lr, seed)
        with no_grad():
            predictions = model(Tensor(test_x.astype(np.float32))).data.argmax(axis=1)
        runs[name] = {"noise_multiplier": sigma, "max_norm": clip, "epsilon": accountant.epsilon(delta),
                      "test_accuracy": float((predictions == test_y).mean())}
    return {"num_train": num_train, "steps": steps, "expected_batch_size": expected_batch_size, "delta": delta,
            "learning_rate": lr, "runs": runs}
