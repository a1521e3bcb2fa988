"""Deliberately broken DP-SGD gradient privatisers, each named after its bug, with the signature of
`dp_sgd.privatize`; tests/test_dp_sgd.py proves its checks catch every one."""
import numpy as np

from tinygrad_llm.responsible.dp_sgd import clip_per_example, noisy_average


def privatize_clipping_the_batch_gradient(gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    """Clips the SUM of the batch's gradients instead of each example's: one outlier example can still dominate
    the update, so the noise (sized for one example moving the sum by at most C) protects nobody."""
    batch_sum = {name: g.sum(axis=0, keepdims=True) for name, g in gradients.items()}  # BUG: one "example", the batch
    return noisy_average(clip_per_example(batch_sum, max_norm), max_norm, noise_multiplier, expected_batch_size, rng)


def privatize_with_noise_scaled_by_clip_only(gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    """Adds N(0, C^2) noise whatever sigma is: the accountant reports epsilon for sigma, the model got sigma = 1."""
    clipped = clip_per_example(gradients, max_norm)
    return {name: ((g.sum(axis=0) + rng.normal(0.0, max_norm, g.shape[1:])) / expected_batch_size).astype(g.dtype)
            for name, g in clipped.items()}  # BUG: the std should be noise_multiplier * max_norm
