"""What a training dashboard shows beyond the loss curve, for any Module (Q33).

- Weight and gradient histograms per parameter: a layer whose gradients collapse to a spike at 0 has stopped
  learning; weights that spread wider and wider point at a learning rate that is too high.
- The update-to-weight ratio ||W_after - W_before|| / ||W_before|| of one optimizer step, per parameter: how
  much of a weight one update changes. Around 1e-3 is the usual healthy figure; 1e-1 rewrites the weights
  every few steps, 1e-5 barely moves them.
- Dead ReLUs: a unit whose ReLU outputs 0 on every example of a batch passes no gradient back to its weights,
  so the data alone never revives it. One large step can move a unit's weights and bias to where its
  pre-activation is negative for every input: the larger the learning rate, the more such units
  (experiments/training_dashboard.py measures it).
- Saturated sigmoid/tanh units: outputs within `margin` of the asymptotes, where the derivative is near 0.

`model` may be a Module or anything else with named_parameters() (the training loop's master weights).
"""
from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..device import to_device
from ..nn.layers import ReLU, Sigmoid, Tanh
from .activations import capture_activations

ACTIVATION_KINDS = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


def _host(array) -> np.ndarray:
    return np.asarray(to_device(array, "cpu"))


def log_parameter_histograms(logger, model, step: int, bins=30) -> None:
    """Histograms "weights/<name>" of every parameter and "gradients/<name>" of every gradient there is."""
    for name, parameter in model.named_parameters():
        logger.histogram(f"weights/{name}", _host(parameter.data), step, bins=bins)
        if parameter.grad is not None:
            logger.histogram(f"gradients/{name}", _host(parameter.grad), step, bins=bins)


def parameter_snapshot(model) -> dict:
    """A copy of every parameter by name, taken before an optimizer step."""
    return {name: _host(parameter.data).astype(np.float64) for name, parameter in model.named_parameters()}


def update_to_weight_ratios(before: dict, model) -> dict:
    """||W_now - W_before|| / ||W_before|| per parameter, from a parameter_snapshot taken before the step.
    The ratio is undefined for a parameter that was all zeros (a bias at initialisation): nan."""
    ratios = {}
    for name, parameter in model.named_parameters():
        old = before[name]
        weight_norm = np.linalg.norm(old)
        update_norm = np.linalg.norm(_host(parameter.data).astype(np.float64) - old)
        ratios[name] = float(update_norm / weight_norm) if weight_norm > 0 else float("nan")
    return ratios


def log_training_step(logger, model, step: int, before: dict | None = None, scalars: dict | None = None,
                      bins=30) -> dict:
    """Everything a dashboard shows for one optimizer step: the scalars given (loss, lr, ...), "update_ratio/<name>"
    when a parameter_snapshot from before the step is given, and the weight and gradient histograms.
    Returns the update ratios by parameter name ({} without `before`)."""
    for name, value in (scalars or {}).items():
        logger.scalar(name, value, step)
    ratios = update_to_weight_ratios(before, model) if before is not None else {}
    for name, ratio in ratios.items():
        logger.scalar(f"update_ratio/{name}", ratio, step)
    log_parameter_histograms(logger, model, step, bins=bins)
    return ratios


def dead_unit_fraction(activations) -> float:
    """The share of units (the last axis) that are 0 on every example (all the other axes)."""
    activations = np.asarray(activations)
    per_unit = activations.reshape(-1, activations.shape[-1])
    return float((per_unit <= 0).all(axis=0).mean())


def saturated_fraction(activations, kind: str, margin: float = 0.01) -> float:
    """The share of sigmoid outputs below margin or above 1 - margin, or of tanh outputs beyond +-(1 - margin)."""
    activations = np.asarray(activations)
    if kind == "sigmoid":
        return float(((activations < margin) | (activations > 1 - margin)).mean())
    if kind == "tanh":
        return float((np.abs(activations) > 1 - margin).mean())
    raise ValueError(f"saturated_fraction: kind must be 'sigmoid' or 'tanh', got {kind!r}")


def activation_layers(model) -> dict:
    """{module name: "relu" | "sigmoid" | "tanh"} for every ReLU, Sigmoid and Tanh module in the model."""
    return {name: ACTIVATION_KINDS[type(module)] for name, module in model.named_modules()
            if type(module) in ACTIVATION_KINDS}


def activation_health(model, *inputs, layers: dict | None = None, margin: float = 0.01) -> dict:
    """Run model(*inputs) once (no graph) and measure its activation layers: "dead_relu/<name>" (dead_unit_fraction)
    for ReLUs, "saturated/<name>" (saturated_fraction) for sigmoids and tanhs.

    layers: {module name: kind} to measure; by default activation_layers(model). A layer called several times in
    one forward (a recurrent cell) is measured on its last call."""
    layers = activation_layers(model) if layers is None else layers
    if not layers:
        raise ValueError(f"activation_health: {type(model).__name__} has no ReLU, Sigmoid or Tanh module; pass "
                         f"layers={{name: 'relu' | 'sigmoid' | 'tanh'}} naming the modules whose outputs to measure")
    with no_grad(), capture_activations(model, list(layers)) as captured:
        model(*inputs)
    health = {}
    for name, kind in layers.items():
        outputs = _host(captured[name].data)
        if kind == "relu":
            health[f"dead_relu/{name}"] = dead_unit_fraction(outputs)
        else:
            health[f"saturated/{name}"] = saturated_fraction(outputs, kind, margin)
    return health
