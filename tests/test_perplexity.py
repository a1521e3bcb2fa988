"""Chapter 8 checks for perplexity and distinct-n (Q08, Q17, Q19): PPL = exp(mean NLL per token), a
uniform model has PPL = V, the evaluation scores every token after the first exactly once, and distinct-n
measures how much generated text repeats itself.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.metrics import distinct_n, evaluate_language_model, perplexity
from tinygrad_llm.nn import Parameter
from tinygrad_llm.nn.language_model import LanguageModel

pytestmark = pytest.mark.evaluation


class TableModel(LanguageModel):
    """Logits from a fixed random table, one row per `key`: the previous token (a bigram model) or the
    position inside the window (a model that only knows where in its window it is). Records the modes it ran in."""

    def __init__(self, vocab_size, key, max_context=None, seed=0, scale=2.0):
        self.vocab_size, self.key, self.max_context, self.seed, self.scale = vocab_size, key, max_context, seed, scale
        rows = vocab_size if key == "previous_token" else max_context
        self.table = Parameter(np.random.default_rng(seed).normal(0, scale, (rows, vocab_size)).astype(np.float32))
        self.modes = []

    @property
    def config(self):
        return dict(vocab_size=self.vocab_size, key=self.key, max_context=self.max_context, seed=self.seed,
                    scale=self.scale)

    def forward(self, ids, cache=None):
        ids = self.check_ids(ids, cache)
        self.modes.append((self.training, tgl.is_grad_enabled()))
        rows = ids if self.key == "previous_token" else np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        return self.table[rows]


def log_softmax(z):
    z = z.astype(np.float64)
    return z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))


token_streams = st.integers(2, 9).flatmap(
    lambda vocab: st.tuples(st.just(vocab), st.lists(st.integers(0, vocab - 1), min_size=2, max_size=60).map(np.array))
)


# ============================================================================ perplexity
@given(st.floats(0, 30))
def test_perplexity_is_exp_of_the_mean_nll(mean_nll):
    assert perplexity(mean_nll) == pytest.approx(math.exp(mean_nll), rel=1e-12)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), "2.0"])
def test_perplexity_rejects_what_is_not_a_mean_nll(bad):
    with pytest.raises(ValueError, match="perplexity: mean_nll must be"):
        perplexity(bad)


@given(token_streams, st.integers(1, 8), st.integers(1, 4))
def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size(stream, block_size, batch_size):
    vocab, ids = stream
    model = TableModel(vocab, "previous_token", scale=0.0)  # every row all zeros: uniform over V tokens
    result = evaluate_language_model(model, ids, block_size, batch_size)
    assert result["perplexity"] == pytest.approx(vocab, rel=1e-5)
    assert result["loss"] == pytest.approx(math.log(vocab), rel=1e-5)


@given(token_streams, st.integers(1, 8), st.integers(1, 4), st.integers(0, 3))
def test_perplexity_is_exp_of_the_mean_per_token_cross_entropy(stream, block_size, batch_size, seed):
    """A bigram model predicts ids[j] from ids[j - 1] alone, so the windows cannot matter: the result must be
    exp(mean over j = 1..N-1 of -log softmax(table[ids[j-1]])[ids[j]]), computed here directly."""
    vocab, ids = stream
    model = TableModel(vocab, "previous_token", seed=seed)
    per_token_nll = -log_softmax(model.table.data[ids[:-1]])[np.arange(len(ids) - 1), ids[1:]]
    result = evaluate_language_model(model, ids, block_size, batch_size)
    assert result["tokens"] == len(ids) - 1
    assert result["loss"] == pytest.approx(per_token_nll.mean(), rel=1e-9)
    assert result["perplexity"] == pytest.approx(math.exp(per_token_nll.mean()), rel=1e-9)


@given(token_streams, st.integers(1, 8), st.integers(1, 4))
def test_every_token_after_the_first_is_scored_once_from_its_window_position(stream, block_size, batch_size):
    """A model that knows only its position in the window: token ids[j] is scored once, predicted at window
    position (j - 1) mod block_size (windows restart every block_size tokens; the last one may be shorter)."""
    vocab, ids = stream
    model = TableModel(vocab, "window_position", max_context=block_size, seed=1)
    positions = np.arange(len(ids) - 1) % block_size
    per_token_nll = -log_softmax(model.table.data[positions])[np.arange(len(ids) - 1), ids[1:]]
    result = evaluate_language_model(model, ids, block_size, batch_size)
    assert result["tokens"] == len(ids) - 1
    assert result["loss"] == pytest.approx(per_token_nll.mean(), rel=1e-9)


def test_evaluation_runs_without_grad_in_eval_mode_and_restores_training_mode():
    model = TableModel(5, "previous_token").train()
    evaluate_language_model(model, np.arange(20) % 5, block_size=4)
    assert model.modes and all(mode == (False, False) for mode in model.modes)
    assert model.training


@pytest.mark.parametrize("ids, block_size, batch_size, message", [
    (np.arange(10) % 5, 9, 32, r"block_size=9 exceeds TableModel's max_context=8"),
    (np.array([3]), 4, 32, "at least 2 tokens"),
    (np.zeros((2, 5), dtype=np.int64), 4, 32, "1-D token stream"),
    (np.arange(10) % 5, 0, 32, "block_size must be an integer >= 1"),
    (np.arange(10) % 5, 4, 0, "batch_size must be an integer >= 1"),
])
def test_bad_evaluation_arguments_are_clear_errors(ids, block_size, batch_size, message):
    with pytest.raises(ValueError, match=message):
        evaluate_language_model(TableModel(5, "window_position", max_context=8), ids, block_size, batch_size)


# ============================================================================ distinct-n
@given(st.lists(st.lists(st.integers(0, 4), min_size=3, max_size=12), min_size=1, max_size=5), st.integers(1, 3))
def test_distinct_n_lies_in_0_1_and_repeating_the_samples_halves_it(sequences, n):
    score = distinct_n(sequences, n)
    assert 0 < score <= 1
    assert distinct_n(sequences + sequences, n) == pytest.approx(score / 2)


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=30, unique=True), st.integers(1, 2))
def test_distinct_n_is_one_without_repeats_and_falls_as_text_loops(tokens, n):
    assert distinct_n([tokens], n) == 1.0
    looped = [tokens * 2, tokens * 4]
    assert distinct_n([tokens * 2], n) < 1.0
    assert distinct_n([looped[1]], n) < distinct_n([looped[0]], n)


def test_distinct_n_worked_examples():
    assert distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)  # (1,2) (2,1) (1,2)
    assert distinct_n([[1, 2], [1, 2]], 2) == pytest.approx(1 / 2)  # pooled over samples
    assert distinct_n([[1, 2], [2, 1]], 2) == 1.0  # no n-gram spans two samples
    assert distinct_n(["abab"], 2) == pytest.approx(2 / 3)  # strings are character sequences
    assert distinct_n(np.array([[7, 7, 7]]), 1) == pytest.approx(1 / 3)


@pytest.mark.parametrize("sequences, n, message", [
    ([[1, 2]], 0, "n must be an integer >= 1"),
    ([[1, 2], [3]], 3, "no 3-gram"),
    ([1, 2, 3], 2, r"each sequence must be 1-D.*\[ids\] for a single one"),
])
def test_bad_distinct_n_arguments_are_clear_errors(sequences, n, message):
    with pytest.raises(ValueError, match=message):
        distinct_n(sequences, n)
