"""The chapter 12 exercises (integrated gradients, exact Shapley values for three players, the logit-lens readout): the
references agree with the library's own implementations, other correct styles pass, and classic wrong answers are
rejected by the property that names their bug, with a message that says why. The wrong answers are real functions,
named after the bug (spot-the-bug material).
"""

from itertools import combinations
from math import factorial

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.interpretability import COALITIONS, QuadraticFunction, TanhNetwork

pytestmark = [pytest.mark.interpretability, pytest.mark.exercises]

INTERPRETABILITY_EXERCISES = ["integrated_gradients", "shapley_three_players", "logit_lens_readout"]

# ---- integrated_gradients --------------------------------------------------------------------------------


def _riemann(f, x, baseline, steps, offset):
    alphas = (np.arange(steps) + offset) / steps
    return (x - baseline) * f.gradient(baseline + alphas[:, None] * (x - baseline)).mean(axis=0)


def ig_gradient_at_the_input_only(f, x, baseline, steps):
    return (x - baseline) * f.gradient(x)


def ig_gradient_times_input(f, x, baseline, steps):
    return x * f.gradient(x)


def ig_without_the_difference_factor(f, x, baseline, steps):
    alphas = (np.arange(steps) + 0.5) / steps
    return f.gradient(baseline + alphas[:, None] * (x - baseline)).mean(axis=0)


def ig_left_riemann_sum(f, x, baseline, steps):
    return _riemann(f, x, baseline, steps, offset=0.0)


def ig_right_riemann_sum(f, x, baseline, steps):
    return _riemann(f, x, baseline, steps, offset=1.0)


def ig_nodes_from_linspace(f, x, baseline, steps):
    """Nodes 0, 1/(steps-1), ..., 1 with equal weights: symmetric, so exact for a quadratic when steps >= 2, but not
    the midpoint rule (and one node at the baseline when steps = 1)."""
    alphas = np.linspace(0.0, 1.0, steps)
    return (x - baseline) * f.gradient(baseline + alphas[:, None] * (x - baseline)).mean(axis=0)


# ---- shapley_three_players -------------------------------------------------------------------------------

def shapley_leave_one_out(value):
    return np.array([value[(0, 1, 2)] - value[tuple(p for p in (0, 1, 2) if p != i)] for i in range(3)])


def shapley_unweighted_average(value):
    phi = np.zeros(3)
    for i in range(3):
        without = [S for S in COALITIONS if i not in S]
        phi[i] = np.mean([value[tuple(sorted(S + (i,)))] - value[S] for S in without])
    return phi


def shapley_equal_split(value):
    return np.full(3, (value[(0, 1, 2)] - value[()]) / 3)


# ---- logit_lens_readout ----------------------------------------------------------------------------------

def _softmax(logits):
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def lens_skipping_the_final_norm(residual, norm_weight, norm_bias, unembedding, eps):
    probabilities = _softmax(residual @ unembedding.T)
    return probabilities, probabilities.argmax(axis=-1)


def lens_norm_without_weight_and_bias(residual, norm_weight, norm_bias, unembedding, eps):
    normed = (residual - residual.mean(-1, keepdims=True)) / np.sqrt(residual.var(-1, keepdims=True) + eps)
    probabilities = _softmax(normed @ unembedding.T)
    return probabilities, probabilities.argmax(axis=-1)


def lens_top_token_from_an_ascending_sort(residual, norm_weight, norm_bias, unembedding, eps):
    probabilities, _ = ex.get_exercise("logit_lens_readout").reference(residual, norm_weight, norm_bias, unembedding,
                                                                       eps)
    return probabilities, np.argsort(probabilities, axis=-1)[:, 0]  # the LEAST probable token


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("integrated_gradients", ig_gradient_at_the_input_only, "complete on a quadratic"),
    ("integrated_gradients", ig_gradient_times_input, "exact for a linear f"),
    ("integrated_gradients", ig_without_the_difference_factor, "exact for a linear f"),
    ("integrated_gradients", ig_left_riemann_sum, "complete on a quadratic"),
    ("integrated_gradients", ig_right_riemann_sum, "complete on a quadratic"),
    ("integrated_gradients", ig_nodes_from_linspace, "complete on a quadratic"),
    ("shapley_three_players", shapley_leave_one_out, "efficiency"),
    ("shapley_three_players", shapley_unweighted_average, "efficiency"),
    ("shapley_three_players", shapley_equal_split, "dummy"),
    ("logit_lens_readout", lens_skipping_the_final_norm, "final LayerNorm comes first"),
    ("logit_lens_readout", lens_norm_without_weight_and_bias, "with the norm's weight, bias and eps"),
    ("logit_lens_readout", lens_top_token_from_an_ascending_sort, "most probable token"),
]


def test_the_interpretability_exercises_are_registered_in_teaching_order():
    names = [name for name, _ in ex.list_exercises()]
    assert [name for name in names if name in INTERPRETABILITY_EXERCISES] == INTERPRETABILITY_EXERCISES
    assert names.index("concat_mlp_fusion") < names.index("integrated_gradients")  # after chapter 11


def test_every_interpretability_exercise_has_at_least_two_wrong_answers():
    for name in INTERPRETABILITY_EXERCISES:
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# The reference, starter and wrong-answer checks run in tests/test_exercises.py over every registered exercise.


def test_failure_messages_teach_the_fix():
    expectations = [("integrated_gradients", ig_left_riemann_sum, "left or right Riemann"),
                    ("shapley_three_players", shapley_unweighted_average, "1/3, 1/6, 1/6, 1/3"),
                    ("logit_lens_readout", lens_skipping_the_final_norm, "NORMALISED stream")]
    for name, wrong, phrase in expectations:
        assert phrase in str(ex.get_exercise(name).grade(wrong)), name


# ---- the references agree with the library ---------------------------------------------------------------

def test_integrated_gradients_reference_equals_the_library_midpoint_rule_on_a_classifier():
    """The library's integrated_gradients (riemann_middle) on a bag-of-embeddings classifier, and the exercise on
    the same function of the flattened embeddings, give the same attributions."""
    from tinygrad_llm.interpretability.gradient_attribution import _embedded, integrated_gradients, \
        scores_and_gradients
    from tinygrad_llm.interpretability.text_classifier import BagOfEmbeddingsClassifier, TextClassifier, WordVocabulary
    vocabulary = WordVocabulary(["good", "bad", "not", "movie"])
    classifier = TextClassifier(BagOfEmbeddingsClassifier(vocabulary.size, embed_dim=6, hidden_size=8).double(),
                                vocabulary)
    words = ["not", "good", "movie"]
    library = integrated_gradients(classifier, words, target=1, steps=12, method="riemann_middle")
    embeddings = _embedded(classifier, words, "test")
    baseline = embeddings.copy()
    baseline[1:] = 0

    class ClassifierScore:
        def gradient(self, points):
            flat = np.atleast_2d(points)
            _, gradients = scores_and_gradients(classifier, flat.reshape(len(flat), *embeddings.shape), 1)
            return gradients.reshape(np.shape(points))

    exercise = ex.get_exercise("integrated_gradients").reference(ClassifierScore(), embeddings.ravel(),
                                                                  baseline.ravel(), 12)
    np.testing.assert_allclose(exercise.reshape(embeddings.shape)[1:], library.embedding_attributions, rtol=1e-10,
                               atol=1e-14)
    assert np.all(exercise.reshape(embeddings.shape)[0] == 0)  # <bos> is not attributed


def test_integrated_gradients_are_exactly_complete_on_a_quadratic_and_converge_on_a_network():
    reference = ex.get_exercise("integrated_gradients").reference
    rng = np.random.default_rng(0)
    half = rng.normal(size=(4, 4))
    quadratic = QuadraticFunction(half + half.T, rng.normal(size=4))
    x, baseline = rng.normal(size=4), rng.normal(size=4)
    for steps in (1, 3, 10):
        assert reference(quadratic, x, baseline, steps).sum() == pytest.approx(quadratic(x) - quadratic(baseline),
                                                                                 abs=1e-12)
    network = TanhNetwork(rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=3))
    gap = network(x) - network(baseline)
    errors = [abs(reference(network, x, baseline, steps).sum() - gap) for steps in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2]


def test_shapley_reference_equals_the_library_and_the_permutation_free_formula():
    from tinygrad_llm.interpretability.shapley import shapley_values
    reference = ex.get_exercise("shapley_three_players").reference
    rng = np.random.default_rng(0)
    for _ in range(5):
        value = {S: float(rng.normal()) for S in COALITIONS}
        library = shapley_values(lambda masks: np.array([value[tuple(np.flatnonzero(m))] for m in masks]), 3)
        np.testing.assert_allclose(reference(value), library, rtol=1e-12, atol=1e-14)


def test_logit_lens_reference_equals_the_library_lens_on_a_tiny_gpt_at_every_layer():
    from tinygrad_llm.interpretability.logit_lens import logit_lens, residual_stream, top_tokens
    from tinygrad_llm.nn.gpt import GPT
    model = GPT(vocab_size=11, context_size=8, embed_dim=8, num_heads=2, num_layers=2).double().eval()
    rng = np.random.default_rng(0)
    model.final_norm.weight.data[...] = rng.normal(1.0, 0.5, 8)  # a trained-looking norm, so that its affine matters
    model.final_norm.bias.data[...] = rng.normal(0.0, 0.5, 8)
    ids = rng.integers(0, 11, (1, 6))
    streams, lens = residual_stream(model, ids), logit_lens(model, ids)
    reference = ex.get_exercise("logit_lens_readout").reference
    for layer in range(model.num_layers + 1):
        probabilities, tokens = reference(streams[layer, 0], model.final_norm.weight.data, model.final_norm.bias.data,
                                          model.lm_head.weight.data, model.final_norm.eps)
        np.testing.assert_allclose(probabilities, _softmax(lens[layer, 0]), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(tokens, top_tokens(lens[layer, 0])[:, 0])
    np.testing.assert_allclose(_softmax(lens[-1, 0]), _softmax(model(ids).data[0]), rtol=1e-9, atol=1e-12)


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """IG one point at a time, Shapley by the weighted-subset formula, the lens through np.var and a log-softmax."""
    def ig_point_by_point(f, x, baseline, steps):
        total = np.zeros_like(x)
        for k in range(steps):
            total += f.gradient(baseline + (k + 0.5) / steps * (x - baseline))
        return (x - baseline) * total / steps

    def shapley_by_subsets(value):
        phi = np.zeros(3)
        for i in range(3):
            others = [p for p in range(3) if p != i]
            for size in range(3):
                for S in combinations(others, size):
                    weight = factorial(size) * factorial(2 - size) / factorial(3)
                    phi[i] += weight * (value[tuple(sorted(S + (i,)))] - value[S])
        return phi

    def lens_with_log_softmax(residual, norm_weight, norm_bias, unembedding, eps):
        normed = (residual - residual.mean(1)[:, None]) / np.sqrt(residual.var(1)[:, None] + eps)
        logits = (normed * norm_weight + norm_bias) @ unembedding.T
        log_probabilities = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return np.exp(log_probabilities), np.argmax(logits, axis=1)

    for name, function in (("integrated_gradients", ig_point_by_point), ("shapley_three_players", shapley_by_subsets),
                           ("logit_lens_readout", lens_with_log_softmax)):
        result = ex.get_exercise(name).grade(function)
        assert result, f"{function.__name__}: {result}"
