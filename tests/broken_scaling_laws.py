"""A deliberately broken scaling-law fitter, named after its bug (test_scaling_laws.py proves the check
catches it)."""
import numpy as np

from tinygrad_llm.scaling_laws import PowerLaw


def fit_power_law_without_floor(N, L) -> PowerLaw:
    """A straight line through log L against log N, as if the loss could fall to zero."""
    slope, log_a = np.polyfit(np.log(N), np.log(L), 1)  # BUG: ignores c, so the slope flattens as L nears it
    a, alpha = float(np.exp(log_a)), float(-slope)
    residual = float(np.sqrt(np.mean((a * np.asarray(N, dtype=np.float64) ** -alpha - L) ** 2)))
    return PowerLaw(a=a, alpha=alpha, c=0.0, residual=residual)
