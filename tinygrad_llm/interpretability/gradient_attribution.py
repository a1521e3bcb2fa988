"""Gradient attributions: which input words the output is most sensitive to, read from d(output)/d(embeddings).

Words are discrete, so the gradient is taken with respect to their embedding vectors x_t (T, d), and a word's
score is the sum over its d coordinates. f is the target class's probability (or its logit).

    gradient x input        a_t = sum_j x_tj * df/dx_tj (x)
    integrated gradients    a_t = sum_j (x_tj - x'_tj) * integral_0^1 df/dx_tj (x' + alpha (x - x')) d alpha

Gradient x input is a first-order Taylor guess: it is exact for a linear f and can be far off for a saturated
one (a softmax at 0.999 has almost no gradient, however decisive the word). Integrated gradients walks the
straight path from a baseline x' (here: zero vectors at the word positions) to x and adds up the gradients on
the way, so by the fundamental theorem of calculus it is COMPLETE:

    sum_t a_t = f(x) - f(x')

up to the error of the quadrature that approximates the integral. A rule is nodes alpha_k in [0, 1] and weights
w_k summing to 1; each node is one forward and backward pass, all of them in one batch here. Riemann rules
(left, right: error ~ 1/steps; middle, trapezoid: ~ 1/steps^2) need many nodes; Gauss-Legendre places them
where a polynomial of degree 2*steps - 1 is integrated exactly, so on a smooth model the error falls faster
than any power of 1/steps. `completeness_error` measures it, and is the first check to run on any IG result.

<bos> is in every input, even the empty sentence, so it is not attributed: the baseline keeps its embedding
(its IG attribution is exactly 0) and both methods report one number per WORD.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..nn import functional as F
from ..tensor import Tensor
from .text_classifier import TextClassifier
from .word_perturbation import check_words

QUADRATURES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre")
OUTPUTS = ("probability", "logit")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(nodes alpha_k in [0, 1], weights w_k summing to 1): integral_0^1 g ~ sum_k w_k g(alpha_k)."""
    if method not in QUADRATURES:
        raise ValueError(f"quadrature: method must be one of {QUADRATURES}, got {method!r}")
    minimum = 2 if method == "riemann_trapezoid" else 1
    if not isinstance(steps, (int, np.integer)) or steps < minimum:
        raise ValueError(f"quadrature: {method} needs an integer steps >= {minimum}, got {steps!r}")
    if method == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], weights summing to 2
        return (nodes + 1) / 2, weights / 2
    if method == "riemann_trapezoid":
        weights = np.full(steps, 1 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1 / steps)


@contextmanager
def gradients_for_inputs_only(model):
    """Eval mode, and no parameter records a gradient: an explanation must not leave .grad behind or pay for
    the parameters' backward pass."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    for p in parameters:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad = True
        model.train(was_training)


def scores_and_gradients(classifier: TextClassifier, embeddings: np.ndarray, target: int,
                         output: str = "probability") -> tuple[np.ndarray, np.ndarray]:
    """For a batch of embedded inputs (S, T, d) (no padding): f (S,) and df/d(embeddings) (S, T, d)."""
    if output not in OUTPUTS:
        raise ValueError(f"scores_and_gradients: output must be one of {OUTPUTS}, got {output!r}")
    if not (isinstance(target, (int, np.integer)) and 0 <= target < classifier.num_classes):
        raise ValueError(f"scores_and_gradients: target {target} is not a class of this {classifier.num_classes}-class "
                         "model")
    inputs = Tensor(embeddings, requires_grad=True)
    with gradients_for_inputs_only(classifier.model):
        logits = classifier.model.logits_from_embeddings(inputs)
        scores = (F.softmax(logits, axis=-1) if output == "probability" else logits)[:, target]
        scores.sum().backward()  # rows are independent inputs, so the sum's gradient is each row's own
    return scores.numpy(), inputs.grad


def _embedded(classifier: TextClassifier, words: Sequence[str], caller: str) -> np.ndarray:
    """(1 + len(words), d) embeddings of <bos> + the words."""
    batch = classifier.encode([" ".join(check_words(words, caller))])
    return classifier.model.embed(batch.ids).numpy()[0]


def gradient_times_input(classifier: TextClassifier, words: Sequence[str], target: int,
                         output: str = "probability") -> np.ndarray:
    """One score per word: sum over the embedding of x * df/dx at the sentence itself."""
    embeddings = _embedded(classifier, words, "gradient_times_input")
    _, gradients = scores_and_gradients(classifier, embeddings[None], target, output)
    return (embeddings * gradients[0]).sum(axis=-1)[1:]


@dataclass(frozen=True)
class IntegratedGradients:
    embedding_attributions: np.ndarray  # (words, d)
    score: float  # f(x)
    baseline_score: float  # f(x')

    @property
    def word_attributions(self) -> np.ndarray:
        return self.embedding_attributions.sum(axis=-1)

    @property
    def completeness_error(self) -> float:
        """|sum of attributions - (f(x) - f(x'))|: zero for the exact integral, the quadrature error otherwise."""
        return abs(float(self.embedding_attributions.sum()) - (self.score - self.baseline_score))


def integrated_gradients(classifier: TextClassifier, words: Sequence[str], target: int, steps: int = 32,
                         method: str = "gauss_legendre", output: str = "probability",
                         baseline_word: str | None = None) -> IntegratedGradients:
    """Integrated gradients of f(target) from a baseline to the sentence's embeddings. The baseline replaces every
    word by the zero vector, or, with baseline_word (e.g. "<unk>"), by that word's embedding."""
    if baseline_word is not None and (not isinstance(baseline_word, str) or len(baseline_word.split()) != 1):
        raise ValueError(f"integrated_gradients: baseline_word must be one word such as '<unk>', got {baseline_word!r}")
    alphas, weights = quadrature(method, steps)
    embeddings = _embedded(classifier, words, "integrated_gradients")
    baseline = embeddings.copy()
    if baseline_word is None:
        baseline[1:] = 0
    else:
        baseline[1:] = _embedded(classifier, [baseline_word], "integrated_gradients")[1]
    path = baseline + alphas[:, None, None].astype(embeddings.dtype) * (embeddings - baseline)
    _, gradients = scores_and_gradients(classifier, path, target, output)
    average_gradient = np.tensordot(weights, gradients, axes=1)  # sum_k w_k df/dx(path_k), (T, d)
    ends, _ = scores_and_gradients(classifier, np.stack([embeddings, baseline]), target, output)
    attributions = ((embeddings - baseline) * average_gradient)[1:]
    return IntegratedGradients(attributions.astype(np.float64), float(ends[0]), float(ends[1]))
