"""Comparing attribution methods (Q32): the attention maps read through hooks are the ones the model used; the
rank correlation and top-k overlap behave as measures of agreement should (Spearman against its closed form on
drawn data); and the fast comparison returns well-formed numbers: symmetric agreement matrices with ones on the
diagonal, precisions in [0, 1], exact Shapley perfectly stable across seeds and LIME at most so."""
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.experiments.attribution_comparison import (ATTENTION_METHODS, GRADIENT_AND_PERTURBATION_METHODS,
                                                             agreement_matrices, attribution_comparison,
                                                             average_ranks, spearman, top_k_words)
from tinygrad_llm.interpretability.activations import capture_activations
from tinygrad_llm.interpretability.attention_attribution import attention_attribution, attention_maps
from tinygrad_llm.interpretability.planted_sentiment import VOCABULARY
from tinygrad_llm.interpretability.text_classifier import (BagOfEmbeddingsClassifier, TextClassifier,
                                                           TransformerTextClassifier, WordVocabulary)

pytestmark = pytest.mark.interpretability

VOCAB = WordVocabulary(VOCABULARY)
sentences = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=8).map(" ".join)


@lru_cache
def transformer_classifier(seed: int, num_layers: int) -> TextClassifier:
    tgl.manual_seed(seed)
    model = TransformerTextClassifier(VOCAB.size, context_size=16, embed_dim=8, num_heads=2, num_layers=num_layers)
    return TextClassifier(model.double(), VOCAB)


# ------------------------------------------------------------------ attention maps
@given(st.integers(0, 3), st.integers(1, 2), st.lists(sentences, min_size=1, max_size=4))
@settings(max_examples=10)
def test_attention_maps_are_the_probabilities_the_model_mixed_its_values_with(seed, num_layers, texts):
    """Each map is a distribution over the real keys (padding gets 0), and map @ values, merged over heads and
    projected, IS the attention layer's output in the forward pass: the maps were not merely plausible."""
    classifier = transformer_classifier(seed, num_layers)
    model, batch = classifier.model, classifier.encode(texts)
    maps = attention_maps(classifier, texts)
    names = [f"base.blocks.{i}.attn{part}" for i in range(num_layers) for part in ("", ".v_proj")]
    with capture_activations(model, names) as captured:
        model(batch.ids, padding_mask=batch.padding_mask)
    assert len(maps) == num_layers
    for layer, probabilities in enumerate(maps):
        attention = model.base.blocks[layer].attn
        time = batch.ids.shape[1]
        assert probabilities.shape == (len(texts), attention.num_heads, time, time)
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-12)
        assert (probabilities[np.broadcast_to(batch.padding_mask[:, None, None, :], probabilities.shape)] == 0).all()
        values = attention.split_heads(captured[f"base.blocks.{layer}.attn.v_proj"]).numpy()
        mixed = attention.merge_heads(tgl.Tensor(probabilities @ values))
        np.testing.assert_allclose(attention.out_proj(mixed).numpy(), captured[f"base.blocks.{layer}.attn"].numpy(),
                                   atol=1e-10)


@given(st.integers(0, 3), sentences, st.sampled_from(["first", "mean"]))
@settings(max_examples=10)
def test_attention_attribution_is_one_non_negative_weight_per_word_summing_to_at_most_one(seed, sentence, query):
    weights = attention_attribution(transformer_classifier(seed, 1), sentence.split(), query=query)
    assert weights.shape == (len(sentence.split()),)
    assert (weights >= 0).all() and weights.sum() <= 1 + 1e-12


def test_attention_attribution_explains_its_refusals():
    bag = TextClassifier(BagOfEmbeddingsClassifier(VOCAB.size), VOCAB)
    with pytest.raises(TypeError, match="TransformerTextClassifier"):
        attention_attribution(bag, ["a", "great", "film"])
    with pytest.raises(ValueError, match="query"):
        attention_attribution(transformer_classifier(0, 1), ["a", "great", "film"], query="last")
    with pytest.raises(ValueError, match="layer"):
        attention_attribution(transformer_classifier(0, 1), ["a", "great", "film"], layer=1)


# ------------------------------------------------------------------ measures of agreement
def closed_form_spearman(a, b) -> float:
    """1 - 6 sum d^2 / (n (n^2 - 1)), valid when neither list has ties; ranks by counting, no NumPy."""
    rank_a = [sum(other < x for other in a) for x in a]
    rank_b = [sum(other < x for other in b) for x in b]
    n = len(a)
    return 1 - 6 * sum((ra - rb) ** 2 for ra, rb in zip(rank_a, rank_b)) / (n * (n * n - 1))


distinct_lists = st.integers(2, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-100, 100), min_size=n, max_size=n, unique=True),
    st.lists(st.floats(-100, 100), min_size=n, max_size=n, unique=True)))


@given(distinct_lists)
def test_spearman_matches_its_closed_form_without_ties(pair):
    a, b = pair
    assert spearman(a, b) == pytest.approx(closed_form_spearman(a, b), abs=1e-12)


@given(st.lists(st.integers(-3, 3), min_size=2, max_size=12), st.integers(0, 2**16))
def test_spearman_is_one_against_itself_and_any_increasing_map_and_minus_one_reversed(values, seed):
    values = np.array(values, dtype=np.float64)
    if np.ptp(values) == 0:
        assert np.isnan(spearman(values, values))
        return
    assert spearman(values, np.exp(values) + 7) == pytest.approx(1.0)
    assert spearman(values, -values) == pytest.approx(-1.0)
    shuffled = np.random.default_rng(seed).permutation(values)
    assert -1 - 1e-12 <= spearman(values, shuffled) <= 1 + 1e-12


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12))
def test_tied_values_share_the_mean_of_their_ranks(values):
    ranks = average_ranks(values)
    assert ranks.sum() == pytest.approx(len(values) * (len(values) - 1) / 2)
    for value in set(values):
        tied = ranks[np.array(values) == value]
        below = sum(v < value for v in values)
        np.testing.assert_allclose(tied, below + (len(tied) - 1) / 2)


def test_spearman_agrees_with_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.integers(0, 4, size=(2, 9)).astype(float)
        if np.ptp(a) and np.ptp(b):
            assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


@given(st.integers(1, 6), st.integers(2, 10), st.integers(1, 3), st.integers(0, 2**16))
def test_agreement_matrices_are_symmetric_with_ones_on_the_diagonal(num_sentences, num_words, k, seed):
    rng = np.random.default_rng(seed)
    methods = ("a", "b", "c")
    explanations = [{m: rng.normal(size=num_words) for m in methods} for _ in range(num_sentences)]
    for matrix in agreement_matrices(explanations, methods, k).values():
        matrix = np.array(matrix)
        np.testing.assert_array_equal(matrix, matrix.T)
        np.testing.assert_array_equal(np.diag(matrix), 1.0)
        assert (np.abs(matrix) <= 1 + 1e-12).all()


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=10), st.integers(1, 4))
def test_top_k_words_are_the_largest_magnitudes(scores, k):
    chosen = top_k_words(scores, k)
    assert len(chosen) == min(k, len(scores))
    smallest_chosen = min(abs(scores[i]) for i in chosen)
    assert all(abs(scores[i]) <= smallest_chosen for i in range(len(scores)) if i not in chosen)


# ------------------------------------------------------------------ the fast experiment
@pytest.fixture(scope="module")
def comparison():
    return attribution_comparison(fast=True)


def test_the_fast_comparison_is_well_formed(comparison):
    assert set(comparison["models"]) == {"bag_of_embeddings", "transformer"}
    for name, model in comparison["models"].items():
        expected = GRADIENT_AND_PERTURBATION_METHODS + (ATTENTION_METHODS if name == "transformer" else ())
        assert tuple(model["methods"]) == expected
        assert 0.5 < model["accuracy"] <= 1
        assert sum(model["kind_counts"].values()) == comparison["sentences"]
        assert set(model["keyword_matters_by_kind"]) == set(model["kind_counts"]) <= {"positive", "negative", "negated"}
        assert all(0 <= share <= 1 for share in model["keyword_matters_by_kind"].values())
        for top in (1, 2):
            for precision in [model[f"precision_at_{top}"], *model[f"precision_at_{top}_by_kind"].values()]:
                assert set(precision) == set(expected) and all(0 <= p <= 1 for p in precision.values())
        for key in ("spearman", "top_k_overlap"):
            matrix = np.array(model[key])
            assert matrix.shape == (len(expected),) * 2
            np.testing.assert_array_equal(matrix, matrix.T)
            np.testing.assert_array_equal(np.diag(matrix), 1.0)
        assert np.isfinite(model["ig_completeness_error"]["median"])


def test_exact_shapley_is_perfectly_stable_across_seeds_and_lime_at_most_so(comparison):
    for model in comparison["models"].values():
        stability = model["stability"]
        assert stability["exact_shapley"] == {"spearman": pytest.approx(1.0), "top_k_jaccard": 1.0}
        for budget in comparison["sample_budgets"]:
            for method in ("lime", "kernel_shap"):
                for value in stability[f"{method}@{budget}"].values():
                    assert -1 <= value <= 1 + 1e-12
