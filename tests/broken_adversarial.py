"""Deliberately broken attacks, each named after its bug; test_adversarial.py proves its checks catch every one."""
import numpy as np

from tinygrad_llm.autograd import no_grad
from tinygrad_llm.nn import functional as F
from tinygrad_llm.responsible.adversarial import AdversarialExamples, _finish, _project, loss_and_input_gradient
from tinygrad_llm.tensor import Tensor


def fgsm_along_the_scaled_gradient(model, inputs, targets, epsilon, loss=F.cross_entropy, bounds=None):
    """Steps along the gradient rescaled so its largest coordinate is epsilon: the L-infinity norm is right, but
    every other coordinate moves less than it may, so the attack wastes most of its budget (the L2 direction
    used with an L-infinity ball)."""
    x = np.asarray(inputs)
    _, gradient = loss_and_input_gradient(model, x, targets, loss)
    gradient = gradient.astype(np.float64)
    delta = epsilon * gradient / max(np.abs(gradient).max(), 1e-300)  # BUG: not sign(gradient)
    return _finish(model, x, _project(x, delta, epsilon, bounds), targets, loss, bounds)


def fgsm_that_descends(model, inputs, targets, epsilon, loss=F.cross_entropy, bounds=None):
    """Copies the training update x - epsilon * sign(grad): it moves every input to where the model is MORE sure."""
    x = np.asarray(inputs)
    _, gradient = loss_and_input_gradient(model, x, targets, loss)
    delta = -epsilon * np.sign(gradient.astype(np.float64))  # BUG: minus
    return _finish(model, x, _project(x, delta, epsilon, bounds), targets, loss, bounds)


def pgd_without_projection(model, inputs, targets, epsilon, steps=10, step_size=None, random_start=True,
                           loss=F.cross_entropy, bounds=None, seed=0):
    """Takes the sign steps but never clips back: after k steps delta can reach k * step_size > epsilon, and the
    inputs leave the valid range."""
    x = np.asarray(inputs)
    step_size = 2.5 * epsilon / steps if step_size is None else step_size
    delta = np.random.default_rng(seed).uniform(-epsilon, epsilon, size=x.shape) if random_start else np.zeros(x.shape)
    for _ in range(steps):
        _, gradient = loss_and_input_gradient(model, (x + delta).astype(x.dtype), targets, loss)
        delta = delta + step_size * np.sign(gradient.astype(np.float64))  # BUG: no projection
    attacked = (x + delta).astype(x.dtype)
    with no_grad():
        value = loss(model(Tensor(attacked)), targets).item()
    return AdversarialExamples(attacked, delta, value)
