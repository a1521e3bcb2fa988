"""A Gaussian process (GP) regressor: the surrogate model Bayesian optimisation fits to the trials so far.

A GP is a prior over functions: any finite set of values f(x_1..x_n) is jointly Gaussian with covariance
K_ij = k(x_i, x_j), where the kernel k says how much nearby inputs agree. Observations add noise,
y = f(x) + eps with eps ~ N(0, noise_variance). Conditioning on the data gives, at new inputs X*,

    posterior mean      m(X*) = k(X*, X) (K + s2 I)^-1 y
    posterior variance  v(X*) = k(X*, X*) - k(X*, X) (K + s2 I)^-1 k(X, X*)

Nothing is inverted: with the Cholesky factor L L^T = K + s2 I, (K + s2 I)^-1 y is two triangular solves, and
log det(K + s2 I) = 2 sum(log diag L). The kernel's lengthscales and signal variance and the noise variance are
chosen by maximising the log marginal likelihood of the data,

    log p(y | X) = -1/2 y^T (K + s2 I)^-1 y - 1/2 log det(K + s2 I) - n/2 log(2 pi),

which trades data fit (first term) against complexity (second term): no validation split is needed.

Inputs are rescaled to [0, 1] per dimension and targets standardised to mean 0, variance 1 before fitting, so one
set of hyperparameter bounds suits every problem; predictions are mapped back to the original units.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Hyperparameter bounds, in the normalised units (inputs in [0, 1], targets with variance 1).
LENGTHSCALE_BOUNDS = (1e-2, 1e1)
SIGNAL_VARIANCE_BOUNDS = (1e-2, 1e2)
# The lower noise bound keeps K + s2 I well enough conditioned for a Cholesky factor even on noiseless data.
NOISE_VARIANCE_BOUNDS = (1e-6, 1.0)


def scaled_distances(a: np.ndarray, b: np.ndarray, lengthscales: np.ndarray) -> np.ndarray:
    """(n, m) Euclidean distances after dividing each dimension by its own lengthscale.

    Per-dimension lengthscales let the GP learn that some inputs barely matter (a long lengthscale makes the
    function flat along that axis): automatic relevance determination.
    """
    difference = (a[:, None, :] - b[None, :, :]) / lengthscales
    return np.sqrt(np.sum(difference**2, axis=-1))


def rbf_kernel(a: np.ndarray, b: np.ndarray, lengthscales: np.ndarray, signal_variance: float) -> np.ndarray:
    """Squared-exponential kernel s^2 exp(-r^2 / 2): infinitely smooth sample functions."""
    return signal_variance * np.exp(-0.5 * scaled_distances(a, b, lengthscales) ** 2)


def matern52_kernel(a: np.ndarray, b: np.ndarray, lengthscales: np.ndarray, signal_variance: float) -> np.ndarray:
    """Matern-5/2 kernel s^2 (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r): twice-differentiable sample functions.

    The usual default for BO: the RBF's smoothness assumption is too strong for real objectives such as a
    validation loss against the learning rate.
    """
    s = math.sqrt(5.0) * scaled_distances(a, b, lengthscales)
    return signal_variance * (1.0 + s + s**2 / 3.0) * np.exp(-s)


KERNELS = {"rbf": rbf_kernel, "matern52": matern52_kernel}


def _check_kernel_name(kernel: str, caller: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"{caller}: unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")


@dataclass(frozen=True)
class Hyperparameters:
    """The kernel's per-dimension lengthscales and signal variance, and the observation noise variance."""

    lengthscales: np.ndarray
    signal_variance: float
    noise_variance: float

    def __post_init__(self):
        lengthscales = np.atleast_1d(np.asarray(self.lengthscales, dtype=np.float64))
        if lengthscales.ndim != 1 or not np.all(lengthscales > 0) or not self.signal_variance > 0 \
                or not self.noise_variance > 0:
            raise ValueError(f"Hyperparameters: lengthscales, signal_variance and noise_variance must all be > 0, "
                             f"got {lengthscales}, {self.signal_variance}, {self.noise_variance}; for noiseless data "
                             f"use a tiny noise_variance such as 1e-8 (exactly 0 breaks the Cholesky factor of "
                             f"near-duplicate points)")
        object.__setattr__(self, "lengthscales", lengthscales)

    def to_log_vector(self) -> np.ndarray:
        """[log l_1 .. log l_d, log signal_variance, log noise_variance]: the space the optimiser searches, where
        every value is valid and a step means the same relative change at any scale."""
        return np.log(np.concatenate([self.lengthscales, [self.signal_variance, self.noise_variance]]))

    @classmethod
    def from_log_vector(cls, log_vector: np.ndarray) -> Hyperparameters:
        values = np.exp(np.asarray(log_vector, dtype=np.float64))
        return cls(values[:-2], float(values[-2]), float(values[-1]))


def log_bounds(dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the log vector (see Hyperparameters.to_log_vector) for `dimension` inputs."""
    bounds = [LENGTHSCALE_BOUNDS] * dimension + [SIGNAL_VARIANCE_BOUNDS, NOISE_VARIANCE_BOUNDS]
    low, high = np.log(np.array(bounds)).T
    return low, high


def _covariance_cholesky(x: np.ndarray, kernel: str, hyperparameters: Hyperparameters) -> np.ndarray:
    """Lower-triangular L with L L^T = K(x, x) + noise_variance I (raises numpy.linalg.LinAlgError if that is
    not numerically positive definite)."""
    covariance = KERNELS[kernel](x, x, hyperparameters.lengthscales, hyperparameters.signal_variance)
    covariance.flat[::len(x) + 1] += hyperparameters.noise_variance  # the diagonal
    return np.linalg.cholesky(covariance)


def _cholesky_solve(cholesky: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """(L L^T)^-1 rhs by a solve with L, then with L^T.

    NumPy has no triangular solver (scipy.linalg.solve_triangular is one, but SciPy is not a dependency), so each
    solve is a general one; for the tens of points BO sees the cost is negligible.
    """
    return np.linalg.solve(cholesky.T, np.linalg.solve(cholesky, rhs))


def log_marginal_likelihood(x: np.ndarray, y: np.ndarray, kernel: str, hyperparameters: Hyperparameters) -> float:
    """log p(y | x) under a zero-mean GP with this kernel and these hyperparameters, through a Cholesky factor.

    x: (n, d), y: (n,), used as given (GaussianProcess normalises them before calling this).
    """
    _check_kernel_name(kernel, "log_marginal_likelihood")
    cholesky = _covariance_cholesky(x, kernel, hyperparameters)
    alpha = _cholesky_solve(cholesky, y)
    return float(-0.5 * y @ alpha - np.sum(np.log(np.diag(cholesky))) - 0.5 * len(y) * math.log(2 * math.pi))


def _compass_search(objective, start: np.ndarray, low: np.ndarray, high: np.ndarray,
                    initial_step: float = 1.0, min_step: float = 0.01, max_evaluations: int = 150):
    """Maximise `objective` inside a box by compass search, a derivative-free local method.

    Try a step up and down along each coordinate and move to the first point that improves; when none does,
    halve the step. It needs no gradient of the likelihood (the usual choice, a quasi-Newton method such as SciPy's
    L-BFGS-B, wants one, and SciPy is not a dependency). It finds a local optimum, which is why the caller
    restarts it from several points.
    """
    point, value = start.copy(), objective(start)
    step, evaluations = initial_step, 1
    while step > min_step and evaluations < max_evaluations:
        improved = False
        for coordinate in range(len(point)):
            for direction in (1.0, -1.0):
                trial = point.copy()
                trial[coordinate] = np.clip(point[coordinate] + direction * step, low[coordinate], high[coordinate])
                if trial[coordinate] == point[coordinate]:
                    continue
                trial_value = objective(trial)
                evaluations += 1
                if trial_value > value:
                    point, value, improved = trial, trial_value, True
                    break
        if not improved:
            step /= 2
    return point, value


def maximise_log_marginal_likelihood(x: np.ndarray, y: np.ndarray, kernel: str, rng: np.random.Generator,
                                     restarts: int = 2, starts: Sequence[Hyperparameters] = ()) -> Hyperparameters:
    """The hyperparameters with the highest log marginal likelihood found by compass search in log space, started
    from each of `starts` and from `restarts` points drawn uniformly inside the bounds.

    The likelihood surface often has several optima (a short lengthscale that explains the data as wiggles vs a
    long one that calls it noise): multiple starts make the choice less of a coin flip.
    """
    _check_kernel_name(kernel, "maximise_log_marginal_likelihood")
    low, high = log_bounds(x.shape[1])

    def objective(log_vector):
        try:
            return log_marginal_likelihood(x, y, kernel, Hyperparameters.from_log_vector(log_vector))
        except np.linalg.LinAlgError:  # numerically singular covariance: treat as the worst possible fit
            return -math.inf

    start_vectors = [np.clip(h.to_log_vector(), low, high) for h in starts]
    start_vectors += [rng.uniform(low, high) for _ in range(restarts)]
    if not start_vectors:
        raise ValueError("maximise_log_marginal_likelihood: no starting point; pass restarts >= 1 or some starts")
    best_vector, best_value = max((_compass_search(objective, s, low, high) for s in start_vectors),
                                  key=lambda result: result[1])
    if best_value == -math.inf:
        raise np.linalg.LinAlgError("maximise_log_marginal_likelihood: every candidate covariance was singular")
    return Hyperparameters.from_log_vector(best_vector)


class GaussianProcess:
    """GP regression with an RBF or Matern-5/2 kernel.

    gp = GaussianProcess("matern52").fit(x, y)            # hyperparameters by marginal likelihood
    gp = GaussianProcess("rbf", hyperparameters).fit(x, y, optimise=False)   # hyperparameters as given
    mean, variance = gp.predict(x_new)

    Hyperparameters are in the normalised units: targets standardised, inputs rescaled so that input_bounds
    (low, high) becomes [0, 1]^d. Pass the search domain as input_bounds when there is one: without it the
    observed range is used, and a few clustered first points would make a lengthscale of 0.1 mean a tenth of
    that cluster rather than of the domain. A refit starts the search from the previous optimum as well as
    from random points, so BO's refits are cheap and stable.
    """

    def __init__(self, kernel: str = "matern52", hyperparameters: Hyperparameters | None = None,
                 restarts: int = 2, seed: int = 0, input_bounds=None):
        _check_kernel_name(kernel, "GaussianProcess")
        self.kernel = kernel
        self.input_bounds = input_bounds
        self.hyperparameters = hyperparameters
        self.restarts = restarts
        self.rng = np.random.default_rng(seed)
        self._x = None

    def fit(self, x, y, optimise: bool = True) -> GaussianProcess:
        """Condition on observations y (n,) at inputs x (n, d); with optimise, first choose the hyperparameters."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError(f"GaussianProcess.fit: x must be (n, d) and y (n,) with n >= 1, got x {x.shape} and "
                             f"y {y.shape}; reshape a single input dimension with x.reshape(-1, 1)")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("GaussianProcess.fit: x and y must be finite; drop failed trials (nan/inf losses) first")
        low, high = (x.min(axis=0), x.max(axis=0)) if self.input_bounds is None else self.input_bounds
        self._x_low = np.broadcast_to(np.asarray(low, dtype=np.float64), x.shape[1:])
        span = np.asarray(high, dtype=np.float64) - self._x_low
        self._x_span = np.where(span > 0, span, 1.0)  # an axis where every input is equal keeps its own units
        self._y_mean = y.mean()
        self._y_scale = y.std() if y.std() > 0 else 1.0
        self._x = self._normalise(x)
        self._y = (y - self._y_mean) / self._y_scale
        if optimise:
            previous = [self.hyperparameters] if self._fits_dimension(self.hyperparameters) else []
            self.hyperparameters = maximise_log_marginal_likelihood(self._x, self._y, self.kernel, self.rng,
                                                                    self.restarts, previous)
        elif not self._fits_dimension(self.hyperparameters):
            raise ValueError(f"GaussianProcess.fit: optimise=False needs Hyperparameters with {x.shape[1]} "
                             f"lengthscale(s), got {self.hyperparameters}; pass them to the constructor or fit with "
                             f"optimise=True")
        self._cholesky = _covariance_cholesky(self._x, self.kernel, self.hyperparameters)
        self._alpha = _cholesky_solve(self._cholesky, self._y)
        return self

    def _fits_dimension(self, hyperparameters: Hyperparameters | None) -> bool:
        return hyperparameters is not None and len(hyperparameters.lengthscales) == self._x.shape[1]

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        return (x - self._x_low) / self._x_span

    @property
    def prior_variance(self) -> float:
        """The variance of f before any data, in the targets' units: the most a posterior variance can be."""
        return self.hyperparameters.signal_variance * self._y_scale**2

    @property
    def noise_variance(self) -> float:
        """The variance of the observation noise, in the targets' units."""
        return self.hyperparameters.noise_variance * self._y_scale**2

    def predict(self, x, include_noise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance (each (m,)) of f at inputs x (m, d), in the targets' units.

        include_noise adds the noise variance: the spread of a new observation y rather than of f itself.
        """
        if self._x is None:
            raise RuntimeError("GaussianProcess.predict: call fit(x, y) first")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self._x.shape[1]:
            raise ValueError(f"GaussianProcess.predict: x must be (m, {self._x.shape[1]}) like the training inputs, "
                             f"got {x.shape}")
        h = self.hyperparameters
        cross = KERNELS[self.kernel](self._normalise(x), self._x, h.lengthscales, h.signal_variance)
        mean = cross @ self._alpha
        explained = np.linalg.solve(self._cholesky, cross.T)
        # Exactly >= 0; rounding can leave about -1e-16 at an observed point, which would make sqrt(variance) nan.
        variance = np.maximum(h.signal_variance - np.sum(explained**2, axis=0), 0.0)
        if include_noise:
            variance = variance + h.noise_variance
        return mean * self._y_scale + self._y_mean, variance * self._y_scale**2

    def log_marginal_likelihood(self) -> float:
        """log p(y | x) of the normalised training data under the current hyperparameters."""
        if self._x is None:
            raise RuntimeError("GaussianProcess.log_marginal_likelihood: call fit(x, y) first")
        return log_marginal_likelihood(self._x, self._y, self.kernel, self.hyperparameters)
