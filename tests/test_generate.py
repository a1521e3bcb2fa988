"""Chapter 9 checks for the generation loop (Q08, Q21, M20): generation extends the prompt one token
at a time, the cached loop gives exactly the tokens and logits of full recomputation (also once the text
outgrows the model's context), seeds fix the samples, tokens stream out as they are made, a stop token stops.

The model here is a stand-in that honours the LanguageModel protocol and depends on its WHOLE context: the
logits at position t are a row of a fixed random table picked by a rolling hash of ids[:t+1]. Its cache is
the hash so far. Any difference in what the cached and uncached loops let the model see changes the logits.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.generation import generate
from tinygrad_llm.nn import Dropout, Parameter
from tinygrad_llm.nn.language_model import DecodingCache, LanguageModel

pytestmark = pytest.mark.inference

HASH_BASE, HASH_MODULUS = 31, 10_007


class PrefixHashCache(DecodingCache):
    def __init__(self, batch_size):
        super().__init__(batch_size)
        self.prefix_hash = np.zeros(batch_size, dtype=np.int64)


class PrefixHashModel(LanguageModel):
    """logits[:, t] = table[hash(ids[:, :t+1])]: a causal model whose every prediction depends on all of its
    context. It records each call (cache length before, ids, training flag, grad mode) for the tests."""

    def __init__(self, vocab_size=7, max_context=None, seed=0):
        self.vocab_size, self.max_context, self.seed = vocab_size, max_context, seed
        table = np.random.default_rng(seed).normal(0, 2, size=(HASH_MODULUS, vocab_size))
        self.table = Parameter(table.astype(np.float32))
        self.dropout = Dropout(0.5)
        self.calls = []

    @property
    def config(self):
        return dict(vocab_size=self.vocab_size, max_context=self.max_context, seed=self.seed)

    def new_cache(self, batch_size):
        return PrefixHashCache(batch_size)

    def forward(self, ids, cache=None):
        ids = self.check_ids(ids, cache)
        self.calls.append((None if cache is None else cache.length, ids.copy(), self.dropout.training,
                           tgl.is_grad_enabled()))
        prefix_hash = np.zeros(len(ids), np.int64) if cache is None else cache.prefix_hash
        hashes = np.empty_like(ids)
        for t in range(ids.shape[1]):
            prefix_hash = (prefix_hash * HASH_BASE + ids[:, t] + 1) % HASH_MODULUS
            hashes[:, t] = prefix_hash
        if cache is not None:
            cache.prefix_hash, cache.length = prefix_hash, cache.length + ids.shape[1]
        return self.table[hashes]


@st.composite
def generation_cases(draw):
    """A model (with or without a context limit), a batch of prompts that fit it, and sampling options."""
    vocab = draw(st.integers(2, 9))
    max_context = draw(st.one_of(st.none(), st.integers(1, 6)))
    prompt_length = draw(st.integers(1, max_context or 8))
    prompt = np.array(draw(st.lists(st.lists(st.integers(0, vocab - 1), min_size=prompt_length,
                                             max_size=prompt_length), min_size=1, max_size=3)))
    options = dict(
        max_new_tokens=draw(st.integers(0, 16)),
        temperature=draw(st.sampled_from([0, 0.7, 1.0, 1.5])),
        top_k=draw(st.one_of(st.none(), st.integers(1, vocab))),
        top_p=draw(st.one_of(st.none(), st.floats(0.3, 1.0))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    return PrefixHashModel(vocab, max_context, seed=draw(st.integers(0, 3))), prompt, options


# ============================================================================ the loop extends the prompt
@given(generation_cases(), st.booleans())
def test_output_is_the_prompt_followed_by_max_new_tokens(case, use_cache):
    model, prompt, options = case
    ids = generate(model, prompt, use_cache=use_cache, **options)
    assert ids.shape == (len(prompt), prompt.shape[1] + options["max_new_tokens"]) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, :prompt.shape[1]], prompt)
    assert ids.min() >= 0 and ids.max() < model.vocab_size
    single = generate(model, prompt[0], use_cache=use_cache, **options)
    assert single.shape == (prompt.shape[1] + options["max_new_tokens"],)


def test_the_argmax_over_a_prompt_is_not_a_continuation():
    """M20: model(prompt).argmax(-1) holds one guess per prompt position, about tokens the prompt already has;
    only its LAST guess is new text (it equals the first greedy token). Generation needs the loop."""
    model = PrefixHashModel(vocab_size=7, seed=1)
    prompt = np.array([[3, 1, 4, 1, 5, 2]])
    guesses = model(prompt).data.argmax(-1)[0]
    generated = generate(model, prompt, max_new_tokens=6, temperature=0)[0]
    assert guesses.shape == (prompt.shape[1],)
    assert generated.shape == (prompt.shape[1] + 6,)
    assert generated[6] == guesses[-1]
    assert not np.array_equal(generated[6:], guesses), "the guesses at prompt positions are not a continuation"


@given(generation_cases())
def test_greedy_tokens_are_the_argmax_of_the_returned_logits(case):
    model, prompt, options = case
    options.update(temperature=0, top_k=None, top_p=None)
    ids, logits = generate(model, prompt, return_logits=True, **options)
    assert logits.shape == (len(prompt), options["max_new_tokens"], model.vocab_size)
    np.testing.assert_array_equal(ids[:, prompt.shape[1]:], logits.argmax(-1))


# ============================================================================ the KV-cache equivalence
@given(generation_cases())
def test_cached_and_uncached_generation_give_identical_tokens_and_logits(case):
    model, prompt, options = case
    cached_ids, cached_logits = generate(model, prompt, use_cache=True, return_logits=True, **options)
    full_ids, full_logits = generate(model, prompt, use_cache=False, return_logits=True, **options)
    np.testing.assert_array_equal(cached_ids, full_ids)
    np.testing.assert_array_equal(cached_logits, full_logits)


def test_past_max_context_both_loops_restart_from_the_last_half_of_the_window():
    """max_context = 4: when a fifth token would be needed, the window becomes its last 4 // 2 = 2 tokens. The
    uncached loop reads each window whole; the cached one reads a restarted window into a fresh cache and then
    feeds one token at a time, so the cache never holds more than the window."""
    prompt = np.array([[1, 2, 3, 4]])
    uncached, cached = PrefixHashModel(max_context=4), PrefixHashModel(max_context=4)
    ids = generate(uncached, prompt, max_new_tokens=6, seed=3, use_cache=False)[0]
    np.testing.assert_array_equal(ids, generate(cached, prompt, max_new_tokens=6, seed=3, use_cache=True)[0])

    x = ids[4:]
    windows = [[1, 2, 3, 4], [4, x[0]], [4, x[0], x[1]], [4, x[0], x[1], x[2]], [x[2], x[3]], [x[2], x[3], x[4]]]
    assert [call[1][0].tolist() for call in uncached.calls] == windows
    assert all(call[0] is None for call in uncached.calls)
    fed = [(length, ids_fed[0].tolist()) for length, ids_fed, *_ in cached.calls]
    assert fed == [(0, [1, 2, 3, 4]), (0, [4, x[0]]), (2, [x[1]]), (3, [x[2]]), (0, [x[2], x[3]]), (2, [x[4]])]


def test_a_prompt_longer_than_the_context_is_a_clear_error():
    model = PrefixHashModel(max_context=4)
    with pytest.raises(ValueError, match=r"prompt has 5 tokens.*max_context=4.*last 4 tokens"):
        generate(model, np.array([1, 2, 3, 4, 5]), max_new_tokens=3)


# ============================================================================ seeds, streaming, stopping
def test_the_same_seed_gives_the_same_text_and_different_seeds_differ():
    model, prompt = PrefixHashModel(vocab_size=9), np.array([[1, 2], [3, 4]])
    first = generate(model, prompt, max_new_tokens=30, seed=11)
    np.testing.assert_array_equal(first, generate(model, prompt, max_new_tokens=30, seed=11))
    np.testing.assert_array_equal(first, generate(model, prompt, max_new_tokens=30, rng=np.random.default_rng(11)))
    assert not np.array_equal(first, generate(model, prompt, max_new_tokens=30, seed=12))
    tgl.manual_seed(5)
    library_seeded = generate(model, prompt, max_new_tokens=30)
    tgl.manual_seed(5)
    np.testing.assert_array_equal(library_seeded, generate(model, prompt, max_new_tokens=30))


@pytest.mark.parametrize("use_cache", [True, False])
def test_on_token_streams_each_token_in_order_before_the_next_step(use_cache):
    model, events = PrefixHashModel(), []
    ids = generate(model, np.array([2, 5]), max_new_tokens=5, seed=0, use_cache=use_cache,
                   on_token=lambda token: events.append(("token", token, len(model.calls))))
    assert [token for _, token, _ in events] == ids[2:].tolist()
    assert all(isinstance(token, int) for _, token, _ in events)
    # the k-th token arrives after the k-th model call and before the (k+1)-th: streamed, not batched at the end
    assert [calls_so_far for *_, calls_so_far in events] == [1, 2, 3, 4, 5]

    batch_events = []
    batch_ids = generate(model, np.array([[2, 5], [1, 1]]), max_new_tokens=3, seed=0, on_token=batch_events.append)
    np.testing.assert_array_equal(np.stack(batch_events, axis=1), batch_ids[:, 2:])


def test_a_stop_token_ends_a_single_sequence_and_is_kept():
    model, prompt = PrefixHashModel(vocab_size=9), np.array([1, 2, 3])
    free = generate(model, prompt, max_new_tokens=20, temperature=0)
    stop = int(free[5])  # the third generated token
    first_stop = 3 + int(np.flatnonzero(free[3:] == stop)[0])
    stopped = generate(model, prompt, max_new_tokens=20, temperature=0, stop_token_id=stop)
    np.testing.assert_array_equal(stopped, free[:first_stop + 1])


def test_a_stop_token_in_a_batch_pads_finished_rows_and_ends_when_all_have_stopped():
    model, prompt = PrefixHashModel(vocab_size=9), np.array([[1, 2, 3], [4, 5, 6]])
    free = generate(model, prompt, max_new_tokens=40, temperature=0)
    stop = int(free[1, 3 + 4])  # row 1 stops at step 4; row 0 happens to produce it later
    stop_steps = [int(np.flatnonzero(row[3:] == stop)[0]) for row in free]
    assert stop_steps[0] > stop_steps[1], "the case must have one row finish before the other"
    stopped = generate(model, prompt, max_new_tokens=40, temperature=0, stop_token_id=stop)
    assert stopped.shape == (2, 3 + max(stop_steps) + 1)
    for row, free_row, step in zip(stopped, free, stop_steps):
        np.testing.assert_array_equal(row[:3 + step + 1], free_row[:3 + step + 1])
        assert np.all(row[3 + step:] == stop), "a finished row is padded with the stop token"


# ============================================================================ inference mode and errors
def test_generation_runs_without_grad_in_eval_mode_and_restores_training_mode():
    model = PrefixHashModel().train()
    generate(model, np.array([1, 2]), max_new_tokens=3, seed=0)
    assert all(not training and not grad_enabled for *_, training, grad_enabled in model.calls)
    assert model.training and model.dropout.training
    model.eval()
    generate(model, np.array([1, 2]), max_new_tokens=3, seed=0)
    assert not model.training


@pytest.mark.parametrize("prompt, options, error, message", [
    (np.array([1, 2]), dict(max_new_tokens=-1), ValueError, "max_new_tokens must be an integer >= 0"),
    (np.array([1, 2]), dict(max_new_tokens=2, seed=1, rng=np.random.default_rng(1)), ValueError, "either seed or rng"),
    (np.array([1, 2]), dict(max_new_tokens=2, stop_token_id=7), ValueError, "stop_token_id 7 is outside"),
    (np.array([1, 2]), dict(max_new_tokens=2, temperature=-1), ValueError, "temperature must be >= 0"),
    (np.array([1, 2]), dict(max_new_tokens=2, top_p=0), ValueError, r"p in \(0, 1\]"),
    (np.zeros(0, dtype=np.int64), dict(max_new_tokens=2), ValueError, "at least one token"),
    (np.array([1, 9]), dict(max_new_tokens=2), IndexError, "outside the vocabulary"),
])
def test_bad_arguments_are_clear_errors(prompt, options, error, message):
    with pytest.raises(error, match=message):
        generate(PrefixHashModel(vocab_size=7), prompt, **options)


def test_a_model_returning_the_wrong_logits_shape_is_named():
    class LastPositionOnly(PrefixHashModel):
        def forward(self, ids, cache=None):
            return super().forward(ids, cache)[:, -1]

    with pytest.raises(ValueError, match=r"LastPositionOnly returned logits of shape \(1, 7\).*\(batch, time"):
        generate(LastPositionOnly(), np.array([1, 2]), max_new_tokens=2)
