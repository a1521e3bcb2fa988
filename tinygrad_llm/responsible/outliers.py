"""Outliers (Q35, M56): flagging them by z-score or by MAD, and the truncated quadratic, the loss that ignores them.

Flagging. A z-score measures a value's distance from the mean in standard deviations. Both the mean and the
standard deviation are pulled by the outliers themselves, so a cluster of outliers hides itself ("masking"): k
equal values among n can never get a z-score above sqrt((n - k) / k), however far away they sit, so at 10%
contamination they never pass the usual threshold of 3. The robust z-score swaps the mean for the median and the
standard deviation for the median absolute deviation (MAD), scaled by 1.4826 so that it estimates the standard
deviation on normal data. The median and the MAD stay bounded until half the data are outliers (a breakdown
point of 50%).

Losses. Huber (`nn.functional.huber_loss`) is quadratic inside delta and linear outside: an outlier still pulls, by
a bounded delta * sign(e). The truncated quadratic min(e^2 / 2, delta^2 / 2) is the contrast: an outlier's
gradient is exactly 0, so it is ignored entirely, but so is any inlier the current fit is far from. It is not
convex, and where gradient descent ends depends on where it starts.
"""
from __future__ import annotations

import numpy as np

from ..nn.functional import _reduce
from ..tensor import Tensor

MAD_TO_STD = 1.4826
"""1 / Phi^-1(3/4): for normal data, 1.4826 * MAD estimates the standard deviation."""


def _sample(values, caller: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 3:
        raise ValueError(f"{caller}: expected a 1-D array of at least 3 values, got shape {values.shape}; "
                         "flatten a batch of residuals with .ravel() first")
    if not np.isfinite(values).all():
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{caller}: values contain NaN or inf (first at index {first}); drop them first: a NaN is "
                         "missing data, not an outlier")
    return values


def _check_threshold(threshold: float, caller: str) -> None:
    if not threshold > 0:
        raise ValueError(f"{caller}: threshold must be > 0 (3 for z-scores, 3.5 for robust z-scores), got {threshold}")


def zscores(values) -> np.ndarray:
    """(x - mean) / std, with the population standard deviation (ddof = 0)."""
    values = _sample(values, "zscores")
    spread = values.std()
    if spread == 0:
        raise ValueError("zscores: all values are equal (standard deviation 0), so no value can be measured "
                         "against the spread; there is nothing to flag")
    return (values - values.mean()) / spread


def median_absolute_deviation(values) -> float:
    """median(|x - median(x)|): a spread that moves by a bounded amount whatever the outliers are worth."""
    values = _sample(values, "median_absolute_deviation")
    return float(np.median(np.abs(values - np.median(values))))


def robust_zscores(values) -> np.ndarray:
    """(x - median) / (1.4826 * MAD): the z-score with the median for the mean and the scaled MAD for the std."""
    values = _sample(values, "robust_zscores")
    spread = MAD_TO_STD * median_absolute_deviation(values)
    if spread == 0:
        raise ValueError("robust_zscores: at least half the values are equal, so the median absolute deviation is 0 "
                         "and every other value would be infinitely far away; the data are too discrete for the MAD, "
                         "so use zscores or a scale known in advance")
    return (values - np.median(values)) / spread


def zscore_outliers(values, threshold: float = 3.0) -> np.ndarray:
    """A boolean mask of the values whose |z-score| exceeds `threshold` (masked by clusters of outliers)."""
    _check_threshold(threshold, "zscore_outliers")
    return np.abs(zscores(values)) > threshold


def mad_outliers(values, threshold: float = 3.5) -> np.ndarray:
    """A boolean mask of the values whose |robust z-score| exceeds `threshold` (3.5, Iglewicz and Hoaglin's)."""
    _check_threshold(threshold, "mad_outliers")
    return np.abs(robust_zscores(values)) > threshold


def truncated_quadratic_loss(prediction: Tensor, target, delta: float = 1.0, reduction: str = "mean") -> Tensor:
    """min(e^2 / 2, delta^2 / 2): Huber's quadratic part without its linear part, flat beyond delta.

    Written as 0.5 * clamp(e, -delta, delta)^2: the clamp passes no gradient outside [-delta, delta], so an error
    beyond delta contributes exactly 0 to the gradient, whether it belongs to an outlier or to a bad start.
    """
    target = prediction._operand(target)
    if prediction.shape != target.shape:
        raise ValueError(f"truncated_quadratic_loss: prediction {prediction.shape} and target {target.shape} "
                         "must have the same shape")
    if not delta > 0:
        raise ValueError(f"truncated_quadratic_loss: delta must be > 0, got {delta}")
    clipped = (prediction - target).clamp(min=-delta, max=delta)
    return _reduce(0.5 * clipped * clipped, reduction, "truncated_quadratic_loss")
