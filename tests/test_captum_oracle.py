"""Oracle (optional extra `oracle`): Captum, run on a PyTorch twin of BagOfEmbeddingsClassifier with the same
weights, gives the library's integrated gradients (same zero baseline at the words, same quadrature and steps)
and gradient x input. Skips cleanly without torch or captum."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.interpretability.gradient_attribution import QUADRATURES, gradient_times_input, integrated_gradients
from tinygrad_llm.interpretability.planted_sentiment import VOCABULARY
from tinygrad_llm.interpretability.text_classifier import BagOfEmbeddingsClassifier, TextClassifier, WordVocabulary

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

pytestmark = [pytest.mark.interpretability, pytest.mark.oracle]

VOCAB = WordVocabulary(VOCABULARY)
RIEMANN_RULES = [name for name in QUADRATURES if name.startswith("riemann")]  # Captum uses the same names
CAPTUM_METHOD = {"gauss_legendre": "gausslegendre", **{name: name for name in RIEMANN_RULES}}
# Captum multiplies the gradients by its quadrature weights as a float32 tensor (and builds its Riemann nodes with
# float32 torch.linspace), so in float64 it matches ours to float32 precision, not to 1e-12: over 200 drawn cases
# the largest difference was 4e-9 (Riemann) and 6e-10 (Gauss-Legendre).
RELATIVE_TOLERANCE, ABSOLUTE_TOLERANCE = 1e-6, 1e-9


def torch_twin(model: BagOfEmbeddingsClassifier, output: str):
    """embeddings (B, T, d) -> probabilities or logits (B, C): mean over the tokens, Linear, exact GELU, Linear."""
    hidden_weight, hidden_bias, output_weight, output_bias = (
        torch.from_numpy(np.array(p.data, dtype=np.float64)) for p in
        (model.hidden.weight, model.hidden.bias, model.output.weight, model.output.bias))

    def forward(embeddings):
        hidden = torch.nn.functional.gelu(embeddings.mean(dim=1) @ hidden_weight.T + hidden_bias)
        logits = hidden @ output_weight.T + output_bias
        return torch.softmax(logits, dim=-1) if output == "probability" else logits
    return forward


def classifier_for(seed: int) -> TextClassifier:
    tgl.manual_seed(seed)
    return TextClassifier(BagOfEmbeddingsClassifier(VOCAB.size, embed_dim=8, hidden_size=16).double(), VOCAB)


def embedded(classifier: TextClassifier, words: list[str]) -> np.ndarray:
    """(1, 1 + words, d): <bos> and the words, as the library's attributions see them."""
    return classifier.model.embed(classifier.encode([" ".join(words)]).ids).numpy()


word_lists = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=8)


@given(st.integers(0, 7), word_lists)
@settings(max_examples=10, deadline=None)
def test_the_twin_computes_the_libraries_probabilities(seed, words):
    classifier = classifier_for(seed)
    twin = torch_twin(classifier.model, "probability")
    np.testing.assert_allclose(twin(torch.from_numpy(embedded(classifier, words))).numpy(),
                               classifier([" ".join(words)]), rtol=1e-12, atol=1e-14)


@given(st.integers(0, 7), word_lists, st.sampled_from(QUADRATURES), st.integers(2, 40), st.integers(0, 1),
       st.sampled_from(["probability", "logit"]))
@settings(max_examples=15, deadline=None)
def test_captum_integrated_gradients_match_ours(seed, words, method, steps, target, output):
    classifier = classifier_for(seed)
    inputs = torch.from_numpy(embedded(classifier, words))
    baselines = inputs.clone()
    baselines[:, 1:] = 0  # ours: zero vectors at the words, <bos> kept
    theirs = captum_attr.IntegratedGradients(torch_twin(classifier.model, output)).attribute(
        inputs, baselines=baselines, target=target, n_steps=steps, method=CAPTUM_METHOD[method])
    if method == "riemann_trapezoid":
        # Captum's trapezoid takes n nodes spaced 1/(n-1) apart but weights 1/n (halved at the ends), which sum
        # to (n-1)/n: its attributions fall short of f(x) - f(x') by that factor. Ours weigh 1/(n-1), summing to 1.
        theirs = theirs * steps / (steps - 1)
    ours = integrated_gradients(classifier, words, target, steps=steps, method=method, output=output)
    np.testing.assert_allclose(ours.embedding_attributions, theirs[0, 1:].detach().numpy(), rtol=RELATIVE_TOLERANCE,
                               atol=ABSOLUTE_TOLERANCE)


@given(st.integers(0, 7), word_lists, st.integers(0, 1), st.sampled_from(["probability", "logit"]))
@settings(max_examples=15, deadline=None)
def test_captum_input_x_gradient_matches_ours(seed, words, target, output):
    classifier = classifier_for(seed)
    inputs = torch.from_numpy(embedded(classifier, words)).requires_grad_()
    theirs = captum_attr.InputXGradient(torch_twin(classifier.model, output)).attribute(inputs, target=target)
    ours = gradient_times_input(classifier, words, target, output=output)
    np.testing.assert_allclose(ours, theirs[0, 1:].sum(dim=-1).detach().numpy(), atol=1e-12, rtol=0)
