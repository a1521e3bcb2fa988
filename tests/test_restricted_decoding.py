"""Chapter 14 checks for restricted decoding (Q38), each held to the plain decoding it restricts.

- A banned token gets probability exactly 0 and the allowed tokens share the whole mass in the model's own
  proportions (renormalisation); a banned n-gram's last token is removed exactly where its prefix ends the
  text and nowhere else (which catches tests/broken_restricted_decoding.py).
- generate with the ban never produces the n-gram, also across the prompt boundary and past the context.
- Text generated under a finite-state machine is always a path of it, and an accepted one once it stopped.
- generate with no processors, or with processors that change nothing, gives exactly the plain tokens.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.__main__ import main
from tinygrad_llm.experiments import restricted_decoding as experiment
from tinygrad_llm.generation import generate, next_token_probs
from tinygrad_llm.nn import GPT
from tinygrad_llm.responsible.restricted_decoding import (TokenFSM, ban_ngrams, ban_tokens, chain_fsm,
                                                          constrain_to_fsm, ngram_occurrences)
from tinygrad_llm.training import train_language_model

import broken_restricted_decoding as broken

pytestmark = pytest.mark.responsible


def random_gpt(vocab_size, context_size, seed):
    """A GPT with weights ~ N(0, 0.5): peaked next-token distributions that differ between seeds."""
    tgl.manual_seed(seed)
    model = GPT(vocab_size, context_size=context_size, embed_dim=8, num_heads=2, num_layers=1)
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data[...] = rng.normal(0.0, 0.5, parameter.data.shape)
    return model


def ends_with(row, prefix) -> bool:
    return len(prefix) <= len(row) and list(row[len(row) - len(prefix):]) == list(prefix)


# ================================================================================================ the processors
@given(st.integers(2, 12).flatmap(lambda vocab: st.tuples(
    st.lists(st.integers(0, vocab - 1), min_size=1, max_size=vocab - 1, unique=True),
    st.lists(st.lists(st.floats(-20, 20), min_size=vocab, max_size=vocab), min_size=1, max_size=4),
    st.sampled_from([0.5, 1.0, 2.0]))))
def test_banned_tokens_get_probability_zero_and_the_rest_sum_to_one(case):
    banned, logits, temperature = case
    logits = np.array(logits)
    ids = np.zeros((len(logits), 3), dtype=np.int64)
    probs = next_token_probs(ban_tokens(banned)(ids, logits), temperature)
    assert (probs[:, banned] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)
    allowed = np.setdiff1d(np.arange(logits.shape[1]), banned)
    original = next_token_probs(logits, temperature)[:, allowed]
    np.testing.assert_allclose(probs[:, allowed], original / original.sum(axis=-1, keepdims=True), rtol=1e-9)


def check_ngram_ban_fires_only_after_its_prefix(ban_ngrams, ids, ngrams, vocab):
    logits = np.random.default_rng(0).normal(size=(len(ids), vocab))
    processed = ban_ngrams(ngrams)(ids, logits)
    for row in range(len(ids)):
        banned_here = {ngram[-1] for ngram in ngrams if ends_with(ids[row], ngram[:-1])}
        for token in range(vocab):
            if token in banned_here:
                assert np.isneginf(processed[row, token]), f"row {ids[row]} must not complete a banned n-gram"
            else:
                assert processed[row, token] == logits[row, token], (
                    f"token {token} after {ids[row].tolist()} completes no banned n-gram {ngrams}, yet it changed")


ngram_cases = st.integers(2, 5).flatmap(lambda vocab: st.tuples(
    st.integers(1, 6).flatmap(lambda length: st.lists(st.lists(st.integers(0, vocab - 1), min_size=length,
                                                               max_size=length), min_size=1, max_size=4)),
    st.lists(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=4), min_size=1, max_size=3),
    st.just(vocab)))


@given(ngram_cases)
def test_an_ngram_ban_fires_exactly_where_its_prefix_ends_the_text(case):
    ids, ngrams, vocab = case
    check_ngram_ban_fires_only_after_its_prefix(ban_ngrams, np.array(ids), ngrams, vocab)


def test_the_prefix_check_catches_a_ban_that_fires_without_its_prefix():
    ids, ngrams = np.array([[0, 1], [1, 1]]), [[0, 2]]  # only the first row ends with the prefix 0
    check_ngram_ban_fires_only_after_its_prefix(ban_ngrams, ids, ngrams, vocab=3)
    with pytest.raises(AssertionError, match="completes no banned n-gram"):
        check_ngram_ban_fires_only_after_its_prefix(broken.ban_ngrams_without_their_prefix, ids, ngrams, vocab=3)


@given(st.lists(st.integers(0, 3), max_size=30), st.lists(st.integers(0, 3), min_size=1, max_size=3))
def test_ngram_occurrences_counts_every_window(ids, ngram):
    expected = sum(ids[i:i + len(ngram)] == ngram for i in range(len(ids) - len(ngram) + 1))
    assert ngram_occurrences(ids, ngram) == expected


# ================================================================================================ in generate
@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16), st.integers(3, 6), st.lists(st.integers(1, 3), min_size=1, max_size=3),
       st.sampled_from([0.0, 1.0]))
def test_generate_with_a_ban_never_completes_the_ngram(seed, vocab, ngram_lengths, temperature):
    """Past the context (6 tokens) too, and counting n-grams that start inside the prompt. No n-gram ends in
    the last token, so some token is always allowed."""
    rng = np.random.default_rng(seed)
    model = random_gpt(vocab, context_size=6, seed=seed)
    ngrams = [rng.integers(0, vocab, size=n - 1).tolist() + [int(rng.integers(0, vocab - 1))] for n in ngram_lengths]
    prompts = rng.integers(0, vocab, size=(3, 2))
    ids = generate(model, prompts, 14, temperature=temperature, seed=seed, logits_processors=[ban_ngrams(ngrams)])
    for row in ids:
        for ngram in ngrams:
            assert ngram_occurrences(row[2 - (len(ngram) - 1):], ngram) == 0, (row, ngram)


def test_a_greedy_ban_takes_the_best_allowed_token():
    model = random_gpt(8, context_size=16, seed=3)
    prompt = np.array([1, 2])
    plain, logits = generate(model, prompt, 1, temperature=0, return_logits=True)
    favourite = int(plain[-1])
    restricted = generate(model, prompt, 1, temperature=0, logits_processors=[ban_tokens([favourite])])
    second = np.argsort(-logits[0], kind="stable")[1]
    assert restricted[-1] == second


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16), st.booleans())
def test_processors_that_change_nothing_change_no_token(seed, use_cache):
    model = random_gpt(7, context_size=5, seed=seed)
    prompts = np.random.default_rng(seed).integers(0, 7, size=(2, 3))
    seen = []

    def record(ids, logits):
        seen.append(ids.copy())
        return logits

    plain = generate(model, prompts, 9, seed=seed, use_cache=use_cache)
    np.testing.assert_array_equal(generate(model, prompts, 9, seed=seed, use_cache=use_cache, logits_processors=[]),
                                  plain)
    recorded = generate(model, prompts, 9, seed=seed, use_cache=use_cache, logits_processors=[record, ban_ngrams([])])
    np.testing.assert_array_equal(recorded, plain)
    for step, ids in enumerate(seen):  # each step sees the whole text so far, beyond the 5-token context
        np.testing.assert_array_equal(ids, plain[:, :3 + step])


# ================================================================================================ finite-state machines
@st.composite
def fsm_cases(draw):
    vocab = draw(st.integers(4, 9))
    stop = vocab - 1
    steps, previous = [], set()
    for _ in range(draw(st.integers(1, 4))):
        tokens = draw(st.lists(st.integers(0, stop - 1), min_size=1, max_size=3, unique=True)
                      .filter(lambda t: not previous & set(t)))
        repeat = draw(st.booleans())
        steps.append((tokens, repeat))
        previous = set(tokens) if repeat else set()
    return vocab, stop, steps, draw(st.integers(0, 2**16))


@settings(max_examples=12, deadline=None)
@given(fsm_cases())
def test_text_generated_under_an_fsm_is_always_accepted_by_it(case):
    vocab, stop, steps, seed = case
    fsm = chain_fsm(steps, stop_token_id=stop)
    model = random_gpt(vocab, context_size=6, seed=seed)
    prompts = np.random.default_rng(seed).integers(0, vocab, size=(3, 2))
    ids = generate(model, prompts, 12, seed=seed, stop_token_id=stop, logits_processors=[constrain_to_fsm(fsm, 2)])
    for row in ids[:, 2:]:  # a row that stopped is padded with stop tokens, which the FSM accepts too
        assert fsm.accepts(row) if stop in row else fsm.accepts_prefix(row), row


def test_digits_only_and_a_json_like_object_with_a_character_vocabulary():
    alphabet = list('0123456789{}":n ab$')
    token = {char: i for i, char in enumerate(alphabet)}
    digits = [token[d] for d in "0123456789"]
    model = random_gpt(len(alphabet), context_size=8, seed=0)
    only_digits = generate(model, np.array([token["a"]]), 10, seed=0,
                           logits_processors=[constrain_to_fsm(chain_fsm([(digits, True)]), 1)])
    assert all(alphabet[t] in "0123456789" for t in only_digits[1:])
    json_like = chain_fsm([([token[c]], False) for c in '{"n":'] + [(digits, True), ([token["}"]], False)],
                          stop_token_id=token["$"])
    for seed in range(3):
        ids = generate(model, np.array([token["a"]]), 20, seed=seed, stop_token_id=token["$"],
                       logits_processors=[constrain_to_fsm(json_like, 1)])
        text = "".join(alphabet[t] for t in ids[1:])
        assert json_like.accepts_prefix(ids[1:]), text
        if text.endswith("$"):
            assert text.startswith('{"n":') and text[5:-2].isdigit() and text.endswith("}$"), text


def test_fsm_mistakes_raise_errors_that_say_what_to_do():
    with pytest.raises(ValueError, match="no entry in transitions"):
        TokenFSM({0: {1: 5}}, 0, frozenset({0}))
    with pytest.raises(ValueError, match="make the two steps' tokens differ"):
        chain_fsm([([1, 2], True), ([2], False)])
    with pytest.raises(ValueError, match="stop token that the steps do not use"):
        chain_fsm([([1, 2], True)], stop_token_id=2)
    finished = chain_fsm([([1], False)])  # no stop token: one token, then nothing is allowed
    model = random_gpt(3, context_size=8, seed=0)
    with pytest.raises(ValueError, match="end it with a stop token"):
        generate(model, np.array([0]), 3, logits_processors=[constrain_to_fsm(finished, 1)])
    with pytest.raises(ValueError, match="prompt_length"):
        constrain_to_fsm(finished, 0)


def test_bad_bans_and_processors_raise_errors_that_say_what_to_do():
    model = random_gpt(4, context_size=8, seed=0)
    with pytest.raises(ValueError, match="tokenizer.encode"):
        ban_ngrams([[]])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate(model, np.array([0]), 2, logits_processors=[ban_tokens([4])])
    with pytest.raises(ValueError, match="entirely -inf"):
        generate(model, np.array([0]), 2, logits_processors=[ban_tokens([0, 1, 2, 3])])
    with pytest.raises(ValueError, match="process\\(ids, logits\\)"):
        generate(model, np.array([0]), 2, logits_processors=["the"])
    with pytest.raises(ValueError, match="same shape"):
        generate(model, np.array([0]), 2, logits_processors=[lambda ids, logits: logits[:, :2]])


# ================================================================================================ experiment and CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("restricted")
    return out_dir, train_language_model(experiment.model_config(fast=True), out_dir=out_dir, progress=False)


def test_the_ban_removes_the_ngram_from_a_thousand_samples(trained):
    result = experiment.banned_ngram_rates(fast=True, run=trained[1])
    assert result["samples"] == 1000 and result["ngram"] == "the"
    assert result["unfiltered"]["samples_with_ngram"] > 0.05  # the trained model writes "the" often
    assert result["banned"]["samples_with_ngram"] == 0 and result["banned"]["occurrences_per_1k"] == 0
    for run in ("unfiltered", "banned"):
        assert 1 < result[run]["model_perplexity"] < 65 and result[run]["kl_per_token"] >= 0
        assert 0 < result[run]["ban_fired"] < 1


def test_sample_ban_on_the_command_line(trained, capsys):
    checkpoint = str(trained[0] / "checkpoint.npz")
    common = ["sample", "--checkpoint", checkpoint, "--prompt", "t", "--max-new-tokens", "60", "--temperature", "1.5",
              "--samples", "3"]
    assert main(common + ["--ban", "e", "th"]) == 0
    text = capsys.readouterr().out
    assert "e" not in text.replace("--- sample", "") and "th" not in text
