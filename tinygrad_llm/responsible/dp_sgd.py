"""DP-SGD (Abadi et al. 2016): SGD whose every step hides any single example.

Per step:
  1. Poisson sampling: each example joins the batch independently with probability q (the accountant's
     amplification-by-sampling bound assumes exactly this, not a shuffled fixed-size batch).
  2. Per-example gradients, each clipped to L2 norm <= C (over ALL parameters together), so no example can
     move the sum by more than C: the sensitivity the noise is calibrated to.
  3. Sum, add Gaussian noise N(0, sigma^2 C^2) to every coordinate, divide by the EXPECTED batch size q*N
     (dividing by the actual size would leak it). The noise on the average has std sigma*C/B.
  4. Any optimizer then steps with that gradient; the RDP accountant records (q, sigma) to report epsilon.

Clipping alone is not privacy and noise alone is not privacy: the noise only means something relative to a
bound on each example's influence (M58).
"""
from __future__ import annotations

import math

import numpy as np

from .per_example_gradients import per_example_gradients
from .rdp_accountant import RDPAccountant


def poisson_batch(num_examples: int, sample_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of this step's batch: each example in with probability q (the size varies; it may be 0)."""
    if not 0 < sample_rate <= 1:
        raise ValueError(f"poisson_batch: sample_rate = {sample_rate} must be in (0, 1] (expected batch / dataset)")
    return np.flatnonzero(rng.random(num_examples) < sample_rate)


def per_example_norms(gradients: dict[str, np.ndarray]) -> np.ndarray:
    """(B,): each example's gradient norm over all parameters together."""
    squares = ((g.reshape(len(g), int(np.prod(g.shape[1:]))).astype(np.float64) ** 2).sum(axis=1)
               for g in gradients.values())  # (B, size) even when B = 0 (a reshape with -1 cannot tell)
    return np.sqrt(sum(squares))


def clip_per_example(gradients: dict[str, np.ndarray], max_norm: float) -> dict[str, np.ndarray]:
    """Scale each example's gradient by min(1, C / norm): norms above C come down to C, the rest are unchanged."""
    if not max_norm > 0:
        raise ValueError(f"clip_per_example: max_norm C = {max_norm} must be > 0 (math.inf turns clipping off)")
    scale = np.minimum(1.0, max_norm / np.maximum(per_example_norms(gradients), 1e-12))
    return {name: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype) for name, g in gradients.items()}


def noisy_average(clipped: dict[str, np.ndarray], max_norm: float, noise_multiplier: float, expected_batch_size: float,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(sum of clipped gradients + N(0, (sigma*C)^2)) / expected batch size, per parameter."""
    if noise_multiplier < 0 or expected_batch_size <= 0:
        raise ValueError(f"noisy_average: need noise_multiplier >= 0 and expected_batch_size > 0, got "
                         f"{noise_multiplier} and {expected_batch_size}")
    if noise_multiplier > 0 and math.isinf(max_norm):
        raise ValueError("noisy_average: noise sigma*C is infinite with C = inf; clip to a finite C to add noise")
    noise_std = noise_multiplier * max_norm if noise_multiplier > 0 else 0.0
    return {name: ((g.sum(axis=0) + rng.normal(0.0, noise_std, g.shape[1:])) / expected_batch_size).astype(g.dtype)
            for name, g in clipped.items()}


def privatize(gradients: dict[str, np.ndarray], max_norm: float, noise_multiplier: float, expected_batch_size: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-example gradients (B, ...) -> clip each to C -> sum + N(0, (sigma*C)^2) -> / expected batch size."""
    return noisy_average(clip_per_example(gradients, max_norm), max_norm, noise_multiplier, expected_batch_size, rng)


def private_gradients(model, per_example_loss, inputs, max_norm: float, noise_multiplier: float,
                      expected_batch_size: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One step's privatised gradient for the batch `inputs` (arrays whose first axis is the example)."""
    if len(inputs[0]) == 0:  # Poisson sampling can draw nobody: the step is then pure noise, as the analysis assumes
        gradients = {name: np.zeros((0,) + p.shape, dtype=p.dtype) for name, p in model.named_parameters()}
    else:
        gradients = per_example_gradients(model, per_example_loss, *inputs)
    return privatize(gradients, max_norm, noise_multiplier, expected_batch_size, rng)


def dp_sgd_step(model, optimizer, per_example_loss, inputs, max_norm: float, noise_multiplier: float,
                expected_batch_size: float, rng: np.random.Generator) -> None:
    """Put the privatised gradient in each parameter's .grad and let the optimizer step with it."""
    gradients = private_gradients(model, per_example_loss, inputs, max_norm, noise_multiplier, expected_batch_size, rng)
    for name, parameter in model.named_parameters():
        parameter.grad = gradients[name]
    optimizer.step()


def dp_sgd_training(model, optimizer, per_example_loss, examples: tuple, noise_multiplier: float, max_norm: float,
                    expected_batch_size: float, steps: int, seed: int) -> RDPAccountant:
    """Train `model` in place by `steps` DP-SGD steps on `examples` (arrays whose first axis is the example) and
    return the accountant. Poisson batches come from `seed` and the noise from seed + 1, so runs that differ
    only in (sigma, C) see the same batches; sigma = 0 with C = inf is the plain, non-private optimizer on them."""
    batch_rng, noise_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    num_examples = len(examples[0])
    sample_rate = expected_batch_size / num_examples
    accountant = RDPAccountant()
    for _ in range(steps):
        batch = poisson_batch(num_examples, sample_rate, batch_rng)
        dp_sgd_step(model, optimizer, per_example_loss, tuple(array[batch] for array in examples), max_norm,
                    noise_multiplier, expected_batch_size, noise_rng)
        accountant.step(sample_rate, noise_multiplier)
    return accountant
