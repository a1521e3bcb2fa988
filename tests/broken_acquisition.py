"""A deliberately broken acquisition function; test_gaussian_process.py proves that its checks catch it."""
import numpy as np

from tinygrad_llm.tuning.acquisition import standard_normal_cdf, standard_normal_pdf


def expected_improvement_with_flipped_sign(mean, std, best, xi=0.0):
    """Measures the improvement as mean - (best - xi), the maximisation formula used while minimising: it is still
    >= 0 everywhere, so a check of EI >= 0 passes, but it rewards points predicted to be WORSE than the best, and
    BO driven by it climbs the loss instead of descending it."""
    mean, std = np.broadcast_arrays(np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))
    improvement = mean - (best - xi)  # BUG: the improvement when minimising is (best - xi) - mean
    certain = std == 0
    z = improvement / np.where(certain, 1.0, std)
    uncertain_ei = improvement * standard_normal_cdf(z) + std * standard_normal_pdf(z)
    return np.where(certain, np.maximum(improvement, 0.0), np.maximum(uncertain_ei, 0.0))
