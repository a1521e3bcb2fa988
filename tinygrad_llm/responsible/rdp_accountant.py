"""How much privacy DP-SGD spends: a Renyi-DP (RDP) accountant for the sampled Gaussian mechanism.

One DP-SGD step adds N(0, sigma^2 C^2) noise to a sum of per-example gradients clipped to norm C, over a batch
where each example was included with probability q (Poisson sampling). Renyi DP of order alpha measures such a
step by a divergence between the outputs with and without one example; for integer alpha it has a closed form,
a binomial expansion over how many times the example "could have been" drawn (Mironov, Talwar and Zhang 2019):

    A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))
    RDP(alpha) = log(A_alpha) / (alpha - 1)

RDP composes by addition, so T steps cost T * RDP(alpha) at every order. A guarantee in the usual (epsilon,
delta) form is then read off the best order. Why not simply add up a per-step epsilon? Composing (eps, delta)
directly grows linearly in T; going through RDP grows roughly like sqrt(T), which is what makes training for
thousands of steps affordable (M58: privacy is a number spent per step, not a property of "not sharing data").
"""
from __future__ import annotations

import math

import numpy as np

DEFAULT_ORDERS = tuple(range(2, 257))  # integer orders only: the closed form above needs alpha to be an integer


def _check_mechanism(function: str, sample_rate: float, noise_multiplier: float) -> None:
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"{function}: sample_rate q = {sample_rate} must be a probability in [0, 1] "
                         "(expected batch size / dataset size)")
    if noise_multiplier < 0:
        raise ValueError(f"{function}: noise_multiplier sigma = {noise_multiplier} must be >= 0")


def sampled_gaussian_rdp(sample_rate: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer `order` of ONE step of the sampled Gaussian mechanism (sensitivity 1, noise std sigma)."""
    _check_mechanism("sampled_gaussian_rdp", sample_rate, noise_multiplier)
    if int(order) != order or order < 2:
        raise ValueError(f"sampled_gaussian_rdp: order {order} must be an integer >= 2 (the binomial expansion "
                         "only holds for integer orders)")
    order = int(order)
    if sample_rate == 0:
        return 0.0  # an example that is never used leaks nothing
    if noise_multiplier == 0:
        return math.inf  # no noise: one step can reveal an example exactly
    if sample_rate == 1:
        return order / (2 * noise_multiplier**2)  # the plain Gaussian mechanism, no amplification by sampling
    k = np.arange(order + 1)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, order + 1)))])  # log k! for k = 0..order
    log_binomial = log_factorial[order] - log_factorial - log_factorial[::-1]
    log_terms = (log_binomial + k * math.log(sample_rate) + (order - k) * math.log1p(-sample_rate)
                 + (k * k - k) / (2 * noise_multiplier**2))
    largest = log_terms.max()  # log-sum-exp: the terms reach exp(order^2 / 2 sigma^2), far beyond float range
    log_a = largest + math.log(np.exp(log_terms - largest).sum())
    return log_a / (order - 1)


def rdp_to_epsilon(rdp, orders, delta: float, conversion: str = "balle") -> tuple[float, int]:
    """(epsilon, best order): the smallest epsilon over the orders for which the accumulated RDP gives
    (epsilon, delta)-DP.

    conversion="classic": eps = RDP + log(1/delta) / (alpha - 1)   (Mironov 2017; what TF Privacy's tutorials used)
    conversion="balle":   eps = RDP + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)
                          (Balle et al. 2020, a tighter bound; what Opacus reports)
    """
    if not 0 < delta < 1:
        raise ValueError(f"rdp_to_epsilon: delta = {delta} must be in (0, 1); below 1/dataset size is usual")
    orders, rdp = np.asarray(orders, dtype=np.float64), np.asarray(rdp, dtype=np.float64)
    if orders.shape != rdp.shape:
        raise ValueError(f"rdp_to_epsilon: {rdp.shape[0] if rdp.ndim else 1} RDP values for {orders.size} orders; "
                         "pass one RDP value per order")
    if conversion == "classic":
        epsilons = rdp + math.log(1 / delta) / (orders - 1)
    elif conversion == "balle":
        epsilons = rdp + np.log((orders - 1) / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
    else:
        raise ValueError(f"rdp_to_epsilon: conversion must be 'balle' or 'classic', got {conversion!r}")
    best = int(np.argmin(epsilons))
    return max(float(epsilons[best]), 0.0), int(orders[best])


def epsilon_after(steps: int, sample_rate: float, noise_multiplier: float, delta: float,
                  orders=DEFAULT_ORDERS, conversion: str = "balle") -> float:
    """Epsilon spent by `steps` DP-SGD steps with the same q and sigma: T * RDP(alpha), then converted."""
    accountant = RDPAccountant(orders, conversion)
    accountant.step(sample_rate, noise_multiplier, steps)
    return accountant.epsilon(delta)


class RDPAccountant:
    """Records every DP-SGD step (q, sigma) and answers "how much epsilon so far?" at any delta.

    Steps with the same (q, sigma) are counted together, since RDP of identical steps just multiplies."""

    def __init__(self, orders=DEFAULT_ORDERS, conversion: str = "balle"):
        self.orders, self.conversion = tuple(orders), conversion
        self.steps_by_mechanism: dict[tuple[float, float], int] = {}

    def step(self, sample_rate: float, noise_multiplier: float, steps: int = 1) -> None:
        _check_mechanism("RDPAccountant.step", sample_rate, noise_multiplier)
        key = (float(sample_rate), float(noise_multiplier))
        self.steps_by_mechanism[key] = self.steps_by_mechanism.get(key, 0) + steps

    def rdp(self) -> np.ndarray:
        """The accumulated RDP at each order (composition adds)."""
        return np.array([sum(count * sampled_gaussian_rdp(q, sigma, order)
                             for (q, sigma), count in self.steps_by_mechanism.items()) for order in self.orders])

    def epsilon(self, delta: float) -> float:
        return self.privacy_spent(delta)[0]

    def privacy_spent(self, delta: float) -> tuple[float, int]:
        """(epsilon, the order that gave it); nothing is spent before the first step."""
        if not self.steps_by_mechanism:
            return 0.0, self.orders[0]
        return rdp_to_epsilon(self.rdp(), self.orders, delta, self.conversion)
