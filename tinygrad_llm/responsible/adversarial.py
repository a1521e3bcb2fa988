"""Adversarial examples: the smallest input change that raises the loss the most (Q35).

Training asks "which WEIGHTS lower the loss on this input?". An attacker asks the mirror question: "which
INPUT, within a distance epsilon of this one, raises the loss the most?". The same backward pass answers it:
the gradient of the loss with respect to the input x instead of the weights. Under the L-infinity distance
(every coordinate may move by at most epsilon) the best first-order move is to push every coordinate by the
full epsilon in the direction its gradient points:

    FGSM (fast gradient sign method)   delta = epsilon * sign(dL/dx)          one backward pass, ||delta||_inf = eps
    PGD (projected gradient descent)   delta <- Proj(delta + alpha * sign(dL/dx(x + delta)))   repeated, from a
                                       random point in the ball; Proj clips back into the ball and the valid range

FGSM trusts the linear approximation all the way to the ball's corner; on a curved loss that corner is not the
worst point, so PGD takes several smaller steps and re-reads the gradient each time. It is the stronger attack
and the one to train against (adversarial training, `train_adversarially`): the model then sees, at every step,
the worst inputs it can currently be given, and learns a decision boundary at least epsilon away from the data.

The attacks work on any model that maps an input Tensor to outputs, with any scalar loss of (outputs, targets):
an MLP on points, or a text classifier from its word EMBEDDINGS on (`SentenceEmbeddingsModel`). Words are
discrete, so there the perturbation moves each word's vector to a point that is usually no word at all: it
measures how flat the classifier is around its inputs, not which real sentence fools it.

Arithmetic: the perturbation `delta` is kept in float64, so FGSM's is exactly +-epsilon wherever the gradient is
nonzero (0 where it is 0) and PGD's never leaves [-epsilon, epsilon]; the attacked inputs x + delta are rounded
once to the inputs' dtype and then clipped to the valid range, so they always lie inside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..interpretability.gradient_attribution import gradients_for_inputs_only
from ..nn import functional as F
from ..nn.module import Module
from ..tensor import Tensor


@dataclass(frozen=True)
class AdversarialExamples:
    inputs: np.ndarray  # the attacked inputs, the original dtype, inside `bounds` if given
    delta: np.ndarray  # float64, the chosen perturbation: inputs = clip(x + delta) up to one rounding to inputs' dtype
    loss: float  # the loss at `inputs`

    @property
    def linf_norm(self) -> float:
        """max |delta| over all coordinates (the attack's L-infinity budget used)."""
        return float(np.abs(self.delta).max()) if self.delta.size else 0.0


def loss_and_input_gradient(model: Module, inputs: np.ndarray, targets,
                            loss=F.cross_entropy) -> tuple[float, np.ndarray]:
    """The loss at `inputs` and dLoss/dInputs (same shape), in eval mode, leaving no gradient on the parameters."""
    tensor = Tensor(inputs, requires_grad=True)
    with gradients_for_inputs_only(model):
        value = loss(model(tensor), targets)
        if value.data.size != 1:
            raise ValueError(f"loss_and_input_gradient: the loss must be one number (e.g. the batch mean), got shape "
                             f"{value.shape}; pass a loss with reduction='mean' or 'sum'")
        value.backward()
    return value.item(), tensor.grad


def fgsm(model: Module, inputs, targets, epsilon: float, loss=F.cross_entropy,
         bounds: tuple[float, float] | None = None) -> AdversarialExamples:
    """One step of size epsilon along sign(dLoss/dInputs): the fast gradient sign method (Goodfellow et al. 2015).

    bounds=(low, high) is the valid input range (pixels in [0, 1]); where it binds, delta is shorter than epsilon.
    """
    x = _check_inputs(inputs, epsilon, bounds, "fgsm")
    _, gradient = loss_and_input_gradient(model, x, targets, loss)
    delta = _project(x, epsilon * np.sign(gradient.astype(np.float64)), epsilon, bounds)
    return _finish(model, x, delta, targets, loss, bounds)


def pgd(model: Module, inputs, targets, epsilon: float, steps: int = 10, step_size: float | None = None,
        random_start: bool = True, loss=F.cross_entropy, bounds: tuple[float, float] | None = None,
        seed=0) -> AdversarialExamples:
    """Projected gradient ascent on the loss inside the L-infinity ball of radius epsilon (Madry et al. 2018).

    step_size defaults to 2.5 * epsilon / steps, so the walk can cross the ball and still fine-tune at the end.
    random_start draws delta uniformly from the ball first (with `seed`), so the attack does not rely on the gradient
    at exactly x, which a model can make flat or misleading there (gradient masking). Returns the last iterate.
    """
    x = _check_inputs(inputs, epsilon, bounds, "pgd")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"pgd: steps must be a positive integer, got {steps!r}")
    step_size = 2.5 * epsilon / steps if step_size is None else step_size
    if not (np.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"pgd: step_size must be a finite number >= 0, got {step_size}")
    delta = np.zeros(x.shape)
    if random_start:
        delta = _project(x, np.random.default_rng(seed).uniform(-epsilon, epsilon, size=x.shape), epsilon, bounds)
    for _ in range(steps):
        _, gradient = loss_and_input_gradient(model, _perturbed(x, delta, bounds), targets, loss)
        delta = _project(x, delta + step_size * np.sign(gradient.astype(np.float64)), epsilon, bounds)
    return _finish(model, x, delta, targets, loss, bounds)


ATTACKS = {"fgsm": fgsm, "pgd": pgd}


def train_adversarially(model: Module, X: np.ndarray, y: np.ndarray, epsilon: float, steps: int,
                        attack: str = "pgd", lr: float = 1e-2, batch_size: int = 128, seed: int = 0,
                        attack_options: dict | None = None) -> list[float]:
    """Adam on minibatches (drawn without replacement; batch_size >= len(X) is full batch) that hold each example
    twice: clean, and attacked against the CURRENT weights.

    The attack is rerun at every step because the worst input moves as the model changes; the clean copy keeps
    ordinary inputs in the loss. Returns the loss of every step; leaves the model in train mode. attack_options
    go to the attack (e.g. {"steps": 5} for PGD).
    """
    if attack not in ATTACKS:
        raise ValueError(f"train_adversarially: attack must be one of {sorted(ATTACKS)}, got {attack!r}")
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
    if len(X) != len(y) or not len(y):
        raise ValueError(f"train_adversarially: need as many labels as inputs (and at least one), got {len(X)} "
                         f"inputs and {len(y)} labels")
    rng = np.random.default_rng(seed)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        rows = rng.choice(len(y), size=min(batch_size, len(y)), replace=False)
        options = dict(attack_options or {}, **({"seed": [seed, step]} if attack == "pgd" else {}))
        attacked = ATTACKS[attack](model, X[rows], y[rows], epsilon, **options).inputs
        loss = F.cross_entropy(model(Tensor(np.concatenate([X[rows], attacked]))), np.concatenate([y[rows], y[rows]]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


class SentenceEmbeddingsModel(Module):
    """A sentence classifier with its embedding lookup cut off: embeddings (B, T, d) -> logits (B, C), for one
    padded batch, so the attacks can move the word vectors. Padding positions are masked out by the classifier,
    so their gradient is 0 and moving them changes nothing."""

    def __init__(self, classifier, sentences):
        batch = classifier.encode(sentences)
        self.model, self.padding_mask = classifier.model, batch.padding_mask
        with no_grad():
            self.embeddings = classifier.model.embed(batch.ids).numpy()  # the unperturbed inputs

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.model.logits_from_embeddings(embeddings, self.padding_mask)


# ---------------------------------------------------------------------------- helpers
def _check_inputs(inputs, epsilon, bounds, caller: str) -> np.ndarray:
    x = np.asarray(inputs)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{caller}: inputs must be floating point (attack embeddings, not token ids), got {x.dtype}")
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"{caller}: epsilon is the L-infinity radius and must be a finite number >= 0, got {epsilon}")
    if bounds is not None:
        low, high = bounds
        if not low < high:
            raise ValueError(f"{caller}: bounds must be (low, high) with low < high, got {bounds}")
        if x.size and (x.min() < low or x.max() > high):
            raise ValueError(f"{caller}: inputs span [{x.min()}, {x.max()}], outside bounds {bounds}; the attack keeps "
                             "inputs in range, so they must start in it")
    return x


def _project(x: np.ndarray, delta: np.ndarray, epsilon: float, bounds) -> np.ndarray:
    """The nearest delta (per coordinate) with |delta| <= epsilon and x + delta inside bounds: both are boxes, so
    their intersection is the interval [max(-eps, low - x), min(eps, high - x)] and projecting is one clip."""
    low, high = -epsilon, epsilon
    if bounds is not None:
        x64 = x.astype(np.float64)
        low, high = np.maximum(low, bounds[0] - x64), np.minimum(high, bounds[1] - x64)
    return np.clip(delta, low, high)


def _perturbed(x: np.ndarray, delta: np.ndarray, bounds) -> np.ndarray:
    """x + delta in x's dtype, clipped to bounds (the rounding to x's dtype may step just outside them)."""
    moved = (x.astype(np.float64) + delta).astype(x.dtype)
    return moved if bounds is None else np.clip(moved, *np.asarray(bounds, dtype=x.dtype))


def _finish(model, x, delta, targets, loss, bounds) -> AdversarialExamples:
    attacked = _perturbed(x, delta, bounds)
    with no_grad(), gradients_for_inputs_only(model):
        value = loss(model(Tensor(attacked)), targets).item()
    return AdversarialExamples(attacked, delta, value)
