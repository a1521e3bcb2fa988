"""Chapter 14 experiment (Q37, M58): what an attacker learns about the training data, with and without DP-SGD.

    membership_attack(fast)  an MLP trained until it memorises 200 examples of a noisy task (20% of the labels
                             flipped: only memorisation fits those), against the same MLP from the same start on
                             the same Poisson batches trained by DP-SGD (per-example clipping to C = 1, noise
                             sigma); the loss-threshold attack's AUC, best advantage and ROC points on each, with
                             train and held-out accuracy and epsilon (with the most advantage it allows)
    canary_exposure(fast)    a small character GPT trained on a slice of the embedded corpus with "my PIN is 4821"
                             planted 10 times; the rank of 4821 among all 10^4 PINs by the model's likelihood of
                             the sentence, and its exposure, against the same model trained on the text WITHOUT
                             the canary (the control: what the language alone makes of 4821); full mode adds the
                             planted text trained by DP-SGD

Both attacks need only the model's outputs, never its weights. The overfit model's gap between member and
non-member losses is what the attack reads; DP-SGD bounds every example's influence, and the gap (so the AUC)
falls towards 0.5. A canary makes memorisation concrete: a secret seen 10 times in a few thousand characters
comes back as the model's first few guesses out of 10^4. Returns dicts of plain numbers; fast=True is the CI size.

What DP-SGD promises the canary: its unit is one example, here one window of text, and epsilon is reported per
window. A copy of the canary lies whole in about block_size windows, so 10 copies are a group of hundreds of
examples, and group privacy only promises about (group size x epsilon) for a group: a secret repeated through the
data is not covered by the per-example guarantee. What the DP run measures is how much its clipping and noise
still hold the memorisation back.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad
from ..data import CharTokenizer, embedded_text
from ..nn import functional as F
from ..nn.gpt import GPT
from ..nn.layers import Linear
from ..nn.module import Module
from ..optim import Adam
from ..random import manual_seed
from ..responsible import canary
from ..responsible.dp_sgd import dp_sgd_training
from ..responsible.membership_inference import advantage_bound, loss_threshold_attack
from ..tensor import Tensor
from .dp_sgd import per_example_cross_entropy


class TabularClassifier(Module):
    """One tanh hidden layer; wide enough to memorise a few hundred examples."""

    def __init__(self, features: int, hidden: int):
        self.hidden, self.out = Linear(features, hidden), Linear(hidden, 2)

    def forward(self, x):
        return self.out(self.hidden(x).tanh())


def noisy_linear_task(num_examples: int, features: int, label_noise: float, seed: int):
    """Gaussian features, label = the side of a random hyperplane, then a fraction `label_noise` of the labels
    flipped: the flipped ones cannot be learned, only memorised."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, features)).astype(np.float32)
    y = (x @ rng.normal(size=features) > 0) ^ (rng.random(num_examples) < label_noise)
    return x, y.astype(np.int64)


def membership_attack(fast: bool = True, seed: int = 0) -> dict:
    """The loss-threshold attack on an overfit model and on DP-SGD models (see the module docstring)."""
    steps, sigmas = (400, (2.0,)) if fast else (1500, (0.5, 1.0, 2.0, 4.0))
    num_members, features, hidden, expected_batch_size, lr, max_norm = 200, 10, 64, 20, 0.01, 1.0
    x, y = noisy_linear_task(2 * num_members, features, label_noise=0.2, seed=seed)
    members, non_members = (x[:num_members], y[:num_members]), (x[num_members:], y[num_members:])
    delta = 1 / (10 * num_members)
    settings = [("overfit", 0.0, math.inf)] + [(f"dp_sigma={sigma}", sigma, max_norm) for sigma in sigmas]
    runs = {}
    for name, sigma, clip in settings:
        manual_seed(seed)
        model = TabularClassifier(features, hidden)
        accountant = dp_sgd_training(model, Adam(model.parameters(), lr=lr), per_example_cross_entropy, members,
                                     sigma, clip, expected_batch_size, steps, seed)
        with no_grad():
            member_losses, non_member_losses = (per_example_cross_entropy(model, *split).data
                                                for split in (members, non_members))
            train_accuracy, test_accuracy = (float((model(Tensor(split[0])).data.argmax(axis=1) == split[1]).mean())
                                             for split in (members, non_members))
        epsilon = accountant.epsilon(delta)
        runs[name] = {"noise_multiplier": sigma, "max_norm": clip, "epsilon": epsilon,
                      "advantage_bound": advantage_bound(epsilon, delta), "train_accuracy": train_accuracy,
                      "test_accuracy": test_accuracy, **loss_threshold_attack(member_losses, non_member_losses)}
    return {"num_members": num_members, "num_non_members": num_members, "steps": steps, "delta": delta,
            "expected_batch_size": expected_batch_size, "runs": runs}


def per_window_loss(model, inputs, targets):
    """(B,): each window's mean next-token cross-entropy; a window is DP-SGD's example."""
    return F.cross_entropy(model(inputs), targets, reduction="none").mean(axis=1)


def every_window(ids: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of the windows starting at every position: each planted copy lies whole in some."""
    windows = np.lib.stride_tricks.sliding_window_view(ids, block_size + 1)
    return windows[:, :-1].copy(), windows[:, 1:].copy()


def canary_exposure(fast: bool = True, seed: int = 0) -> dict:
    """Rank and exposure of a planted PIN, with the never-planted control (see the module docstring)."""
    num_chars, steps, embed_dim, num_layers, block_size = (1500, 200, 32, 1, 24) if fast else (3000, 800, 48, 2, 32)
    copies, secret, expected_batch_size, lr, max_norm, noise_multiplier = 10, "4821", 16, 0.02, 1.0, 1.0
    text = embedded_text()[:num_chars]
    planted = canary.plant_canary(text, canary.PIN_TEMPLATE.format(secret), copies, np.random.default_rng(seed))
    tokenizer = CharTokenizer.train(planted + "0123456789")  # every candidate PIN must be encodable
    candidates = canary.pin_candidates(len(secret))
    settings = [("control", text, 0.0, math.inf), ("planted", planted, 0.0, math.inf)]
    if not fast:
        settings.append((f"planted_dp_sigma={noise_multiplier}", planted, noise_multiplier, max_norm))
    runs = {}
    for name, training_text, sigma, clip in settings:
        manual_seed(seed)
        model = GPT(tokenizer.vocab_size, context_size=block_size, embed_dim=embed_dim, num_heads=4,
                    num_layers=num_layers, positions="sinusoidal")
        windows = every_window(tokenizer.encode(training_text), block_size)
        accountant = dp_sgd_training(model, Adam(model.parameters(), lr=lr), per_window_loss, windows, sigma, clip,
                                     expected_batch_size, steps, seed)
        delta = 1 / (10 * len(windows[0]))
        runs[name] = {"noise_multiplier": sigma, "num_windows": len(windows[0]), "epsilon_per_window":
                      accountant.epsilon(delta), "delta": delta,
                      **canary.measure_exposure(model, tokenizer, secret, candidates, seed=seed)}
    return {"secret": secret, "copies": copies, "num_chars": num_chars, "steps": steps, "block_size": block_size,
            "runs": runs}
