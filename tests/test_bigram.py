"""Learning checks for the bigram language model, the first rung of the Q08 ladder.

- A count model's table rows are normalised log-probabilities with add-k smoothing, so its cross-entropy
  is exactly the count model's negative log-likelihood.
- A uniform table gives loss ln V (perplexity V).
- A bigram beats the unigram baseline; trained by gradient descent it approaches, and can never beat on
  its own training text, the maximum-likelihood count model.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import nn
from tinygrad_llm.nn import functional as F

pytestmark = pytest.mark.lm


def loss_of(model, ids) -> float:
    with tgl.no_grad():
        return F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).item()


def unigram_nll(train_ids, test_ids, vocab_size) -> float:
    """The baseline: next-token probabilities = token frequencies (add-1 smoothed), ignoring the context."""
    counts = np.bincount(train_ids.reshape(-1), minlength=vocab_size) + 1.0
    return float(-np.log(counts / counts.sum())[test_ids[:, 1:]].mean())


def text_ids(chars=4000):
    text = tgl.data.load_text()[:chars]
    vocab = tgl.data.CharTokenizer.train(text)
    return vocab.encode(text)[None], vocab.vocab_size


def test_count_table_by_hand():
    """ids 0 1 0 1 1 with V = 3 and k = 1: after 0 come 1, 1 (counts 0, 2, 0 -> 1/5, 3/5, 1/5); after 1 come
    0, 1 (-> 2/5, 2/5, 1/5); 2 never comes first, so its row is uniform."""
    model = nn.BigramLanguageModel.from_counts(np.array([0, 1, 0, 1, 1]), vocab_size=3, add_k=1.0)
    expected = np.array([[1, 3, 1], [2, 2, 1], [1, 1, 1]]) / np.array([[5], [5], [3]])
    np.testing.assert_allclose(np.exp(model.table.data), expected, rtol=1e-6)


@given(vocab=st.integers(1, 8), batch=st.integers(1, 3), steps=st.integers(1, 12), add_k=st.floats(0.01, 3),
       seed=st.integers(0, 2**16))
def test_count_rows_are_log_distributions_and_the_loss_is_the_count_nll(vocab, batch, steps, add_k, seed):
    ids = np.random.default_rng(seed).integers(0, vocab, (batch, steps))
    model = nn.BigramLanguageModel.from_counts(ids, vocab, add_k=add_k)
    np.testing.assert_allclose(np.exp(model.table.data.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-5)
    if steps > 1:
        pair_counts = np.zeros((vocab, vocab))
        np.add.at(pair_counts, (ids[:, :-1], ids[:, 1:]), 1)
        probs = (pair_counts + add_k) / (pair_counts.sum(axis=1, keepdims=True) + add_k * vocab)
        count_nll = -np.log(probs[ids[:, :-1], ids[:, 1:]]).mean()
        assert loss_of(model, ids) == pytest.approx(count_nll, rel=1e-5)


@given(vocab=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_uniform_table_gives_loss_log_vocab_size(vocab, seed):
    """A fresh model's table is all zeros: every token equally likely, perplexity = V."""
    ids = np.random.default_rng(seed).integers(0, vocab, (2, 9))
    assert loss_of(nn.BigramLanguageModel(vocab), ids) == pytest.approx(math.log(vocab), abs=1e-5)


def test_count_bigram_beats_unigram_on_held_out_text():
    ids, vocab = text_ids()
    train, test = ids[:, :3000], ids[:, 3000:]
    model = nn.BigramLanguageModel.from_counts(train, vocab, add_k=0.1)
    assert loss_of(model, test) < unigram_nll(train, test, vocab) - 0.3


def test_trained_bigram_beats_unigram_and_never_beats_the_count_model():
    """Gradient descent on the table (the shared training recipe) heads for the maximum-likelihood
    solution, which the count model with a tiny k is; on its training text nothing can do better."""
    ids, vocab = text_ids(3000)
    tgl.manual_seed(0)
    model = nn.BigramLanguageModel(vocab)
    optimizer = tgl.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        loss = F.cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        model.zero_grad()
        loss.backward()
        optimizer.step()
    trained = loss_of(model, ids)
    maximum_likelihood = loss_of(nn.BigramLanguageModel.from_counts(ids, vocab, add_k=1e-6), ids)
    assert trained < unigram_nll(ids, ids, vocab) - 0.3
    assert maximum_likelihood - 1e-3 <= trained < maximum_likelihood + 0.2


def test_cache_counts_tokens_and_changes_nothing():
    model = nn.BigramLanguageModel.from_counts(np.array([0, 2, 1, 2, 0, 1]), vocab_size=3)
    ids = np.array([[0, 1, 2, 2, 1], [2, 2, 0, 1, 0]])
    cache = model.new_cache(2)
    pieces = [model(ids[:, :2], cache=cache).data, model(ids[:, 2:3], cache=cache).data, model(ids[:, 3:], cache=cache).data]
    assert cache.length == 5
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), model(ids).data)


def test_config_rebuilds_the_model():
    model = nn.BigramLanguageModel.from_counts(np.array([0, 1, 1, 3]), vocab_size=4)
    twin = type(model)(**model.config).load_state_dict(model.state_dict())
    np.testing.assert_array_equal(twin.table.data, model.table.data)
    assert isinstance(model, nn.LanguageModel) and model.max_context is None


def test_bad_input_gives_a_clear_error():
    with pytest.raises(ValueError, match="add_k must be > 0, got 0"):
        nn.BigramLanguageModel.from_counts(np.array([0, 1]), vocab_size=2, add_k=0)
    with pytest.raises(IndexError, match="token id 5 is outside the vocabulary 0..2"):
        nn.BigramLanguageModel.from_counts(np.array([0, 5]), vocab_size=3)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        nn.BigramLanguageModel(0)
