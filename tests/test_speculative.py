"""Chapter 9 checks for speculative decoding (Q20): it is held to plain generation by the target alone.

- Greedy: the tokens are exactly generate(target, temperature=0)'s, for random GPTs and drafts (the target
  itself, or an unrelated model), also past the target's context where the window restarts.
- Sampling: one acceptance step gives the target's distribution exactly (computed in closed form), and the
  generated tokens follow the target's distribution (a chi-square test against probabilities enumerated
  over every continuation).
- KVCache.truncate leaves exactly what a fresh cache fed the kept tokens would hold.
Each check catches a broken variant from tests/broken_speculative.py.

The GPTs here get weights ~ N(0, 0.5) instead of GPT-2's 0.02, so that their next-token distributions are
peaked and differ from model to model: with near-uniform logits any draft would look like a good guess.
"""
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.generation import generate, next_token_probs, speculative_accept, speculative_generate
from tinygrad_llm.experiments import speculative as speculative_experiment
from tinygrad_llm.generation import speculative
from tinygrad_llm.nn import GPT, BigramLanguageModel, KVCache
from tinygrad_llm.nn.language_model import DecodingCache, LanguageModel
from tinygrad_llm.tensor import Tensor

import broken_speculative as broken

pytestmark = pytest.mark.compression


def random_gpt(vocab_size, context_size, seed, num_layers=1, embed_dim=8, positions="learned"):
    tgl.manual_seed(seed)
    model = GPT(vocab_size, context_size=context_size, embed_dim=embed_dim, num_heads=2, num_layers=num_layers,
                positions=positions)
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data[...] = rng.normal(0.0, 0.5, parameter.data.shape)
    return model


@st.composite
def greedy_cases(draw):
    """A target GPT, a draft (the target itself or an unrelated GPT with its own context), a prompt, n and k."""
    vocab = draw(st.integers(2, 10))
    positions = st.sampled_from(["learned", "sinusoidal", "rope"])
    target = random_gpt(vocab, draw(st.integers(2, 9)), draw(st.integers(0, 2**16)), num_layers=draw(st.integers(1, 2)),
                        positions=draw(positions))
    draft = target if draw(st.booleans()) else random_gpt(vocab, draw(st.integers(2, 9)), draw(st.integers(0, 2**16)),
                                                          positions=draw(positions))
    prompt = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=target.max_context)))
    return target, draft, prompt, draw(st.integers(0, 24)), draw(st.integers(1, 6))


def check_greedy_matches_generate(target, draft, prompt, new_tokens, k):
    result = speculative_generate(target, draft, prompt, new_tokens, draft_tokens=k, temperature=0)
    expected = generate(target, prompt, new_tokens, temperature=0)
    np.testing.assert_array_equal(result.ids, expected, err_msg=f"speculative greedy (k={k}) differs from generate")
    # Every round is one target pass that adds its accepted drafts plus one token.
    assert result.accepted + result.target_forward_passes == new_tokens
    assert 0 <= result.accepted <= result.drafted
    if draft is target:
        assert result.accepted == result.drafted, "the target as its own draft must have every guess accepted"
    return result


# ================================================================================================ greedy
@given(greedy_cases())
def test_greedy_speculative_decoding_gives_exactly_generates_tokens(case):
    check_greedy_matches_generate(*case)


def test_an_unrelated_draft_is_mostly_rejected_and_changes_nothing():
    target, draft = random_gpt(10, 16, seed=1, num_layers=2), random_gpt(10, 16, seed=2)
    result = check_greedy_matches_generate(target, draft, np.array([3, 1, 4]), 40, k=4)
    assert result.acceptance_rate < 0.5
    assert result.target_forward_passes > 40 / 4  # fewer accepted guesses, more target passes


def test_the_target_as_its_own_draft_needs_one_pass_per_k_plus_one_tokens():
    target = random_gpt(10, 64, seed=3, num_layers=2)
    result = check_greedy_matches_generate(target, target, np.array([0]), 40, k=4)
    assert result.acceptance_rate == 1.0 and result.target_forward_passes == 8  # 8 rounds of 4 drafts + 1 bonus


def test_greedy_check_catches_a_cache_that_is_not_rolled_back(monkeypatch):
    monkeypatch.setattr(KVCache, "truncate", broken.truncate_that_forgets_nothing)
    target, draft = random_gpt(10, 16, seed=1, num_layers=2), random_gpt(10, 16, seed=2)
    with pytest.raises(Exception):  # wrong tokens, or a cache whose length no longer matches the text
        check_greedy_matches_generate(target, draft, np.array([3, 1, 4]), 12, k=4)


# ================================================================================= one acceptance step
@st.composite
def distributions(draw, vocab, rows):
    """`rows` probability vectors over `vocab` tokens, some entries exactly 0 (as top-k and top-p make)."""
    weights = np.array(draw(st.lists(st.lists(st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.0, 5.0]), min_size=vocab,
                                              max_size=vocab), min_size=rows, max_size=rows))).reshape(rows, vocab)
    weights[:, draw(st.integers(0, vocab - 1))] += 0.1  # never an all-zero row
    return weights / weights.sum(axis=1, keepdims=True)


@st.composite
def acceptance_cases(draw):
    vocab, k = draw(st.integers(1, 6)), draw(st.integers(0, 4))
    target_probs, draft_probs = draw(distributions(vocab, k + 1)), draw(distributions(vocab, k))
    tokens = [draw(st.sampled_from(np.flatnonzero(row).tolist())) for row in draft_probs]
    return target_probs, draft_probs, np.array(tokens, dtype=np.int64), draw(st.integers(0, 2**32 - 1))


def check_one_step_marginal_is_the_target(target_probs, draft_probs):
    """P(the first new token = y), in closed form over the draft's proposal x ~ q: an accepted proposal gives x
    with probability q(x) * a(x); otherwise the residual is drawn. The sum must be p exactly."""
    accept = np.array([speculative.acceptance_probability(p, q) if q > 0 else 0.0
                       for p, q in zip(target_probs, draft_probs)])
    kept = draft_probs * accept
    rejected = 1.0 - kept.sum()
    residual = speculative.residual_distribution(target_probs, draft_probs) if rejected > 1e-12 else 0.0
    marginal = kept + rejected * residual
    np.testing.assert_allclose(marginal, target_probs, atol=1e-12, err_msg="one acceptance step does not give p")


@given(acceptance_cases())
def test_one_acceptance_step_gives_the_target_distribution_exactly(case):
    target_probs, draft_probs, _, _ = case
    if len(draft_probs):
        check_one_step_marginal_is_the_target(target_probs[0], draft_probs[0])


@pytest.mark.parametrize("piece, bug", [("acceptance_probability", broken.acceptance_without_a_coin_flip),
                                        ("residual_distribution", broken.residual_that_is_the_target)])
def test_closed_form_check_catches_the_broken_acceptance_rules(monkeypatch, piece, bug):
    monkeypatch.setattr(speculative, piece, bug)
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.6, 0.2])
    with pytest.raises(AssertionError):
        check_one_step_marginal_is_the_target(p, q)


@given(acceptance_cases())
def test_acceptance_keeps_a_prefix_and_draws_from_where_the_target_has_mass(case):
    target_probs, draft_probs, tokens, seed = case
    num_accepted, next_token = speculative_accept(target_probs, draft_probs, tokens, np.random.default_rng(seed))
    assert 0 <= num_accepted <= len(tokens)
    assert all(target_probs[i, tokens[i]] > 0 for i in range(num_accepted)), "kept a token the target never says"
    if num_accepted < len(tokens):  # a rejection: the replacement comes from the residual's support, p > q
        assert target_probs[num_accepted, next_token] > draft_probs[num_accepted, next_token]
    else:
        assert target_probs[-1, next_token] > 0


class NoRandomness:
    def random(self, *args, **kwargs):
        raise AssertionError("greedy acceptance drew a random number")


@given(st.integers(1, 8), st.integers(0, 5), st.integers(0, 2**16))
def test_greedy_acceptance_keeps_the_drafts_that_match_the_argmax_without_randomness(vocab, k, seed):
    rng = np.random.default_rng(seed)
    target_probs = next_token_probs(rng.normal(size=(k + 1, vocab)), temperature=0)
    tokens = np.where(rng.random(k) < 0.7, target_probs[:k].argmax(axis=1), rng.integers(0, vocab, k))
    draft_probs = np.eye(vocab)[tokens]
    matches = tokens == target_probs[:k].argmax(axis=1)
    expected_accepted = int(np.argmin(matches)) if not matches.all() else k
    assert speculative_accept(target_probs, draft_probs, tokens, NoRandomness()) == (
        expected_accepted, int(target_probs[expected_accepted].argmax()))


# ============================================================================ sampling: the distribution
class PrefixTableCache(DecodingCache):
    def __init__(self, batch_size):
        super().__init__(batch_size)
        self.hashes = np.zeros((batch_size, 0), dtype=np.int64)

    def truncate(self, length):
        self.hashes, self.length = self.hashes[:, :length], length


class PrefixTableModel(LanguageModel):
    """A stand-in language model cheap enough to run thousands of times: logits[:, t] is a row of a fixed
    random table picked by a rolling hash of ids[:, :t + 1]. Every prediction depends on the whole prefix, so a
    stale token left in the cache would change it; the cache keeps each position's hash and can be truncated."""

    def __init__(self, vocab_size, seed, scale=1.5):
        self.vocab_size = vocab_size
        self.table = np.random.default_rng(seed).normal(0, scale, size=(10_007, vocab_size))

    def new_cache(self, batch_size):
        return PrefixTableCache(batch_size)

    def forward(self, ids, cache=None):
        ids = self.check_ids(ids, cache)
        previous = cache.hashes[:, -1] if cache is not None and cache.length else np.zeros(len(ids), np.int64)
        hashes = np.empty_like(ids)
        for t in range(ids.shape[1]):
            previous = hashes[:, t] = (previous * 31 + ids[:, t] + 1) % len(self.table)
        if cache is not None:
            cache.hashes, cache.length = np.concatenate([cache.hashes, hashes], axis=1), cache.length + ids.shape[1]
        return Tensor(self.table[hashes])


def exact_continuation_probs(model, prompt, new_tokens, options) -> np.ndarray:
    """P(continuation) for every continuation of length new_tokens, by enumeration: shape (V,) * new_tokens."""
    probs = np.ones(())
    for length in range(new_tokens):
        continuations = np.array(list(np.ndindex(probs.shape)), dtype=np.int64).reshape(probs.size, length)
        prefixes = np.concatenate([np.tile(prompt, (probs.size, 1)), continuations], axis=1)
        step = next_token_probs(model(prefixes)[:, -1], **options).reshape(probs.shape + (model.vocab_size,))
        probs = probs[..., None] * step
    return probs


def chi_square_excess(observed: np.ndarray, expected: np.ndarray) -> float:
    """How many standard deviations Pearson's chi-square lies above its mean (dof) under the null hypothesis
    (sd = sqrt(2 dof)); cells expected fewer than 5 times are pooled. Cells of probability 0 must stay empty."""
    assert observed[expected == 0].sum() == 0, "a continuation of probability 0 was generated"
    small = expected < 5
    observed = np.append(observed[~small], observed[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    statistic = (((observed - expected) ** 2) / np.maximum(expected, 1e-300))[expected > 0].sum()
    dof = np.count_nonzero(expected) - 1
    return float((statistic - dof) / np.sqrt(2 * dof))


SAMPLING_SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_k=2, top_p=0.9)]
RUNS, NEW_TOKENS, PROMPT = 1000, 3, np.array([0, 1])  # the broken variants below land 20+ sd out at 500 runs


def check_sampled_tokens_follow_the_target(options, k, runs=RUNS):
    """Generate NEW_TOKENS tokens `runs` times (a different seed each) and compare the counts of every
    continuation with the target's exact probabilities. A z-score above 5 has probability < 1e-4 for a
    correct sampler; the seeds are fixed, so the outcome is the same on every run."""
    target, draft, vocab = PrefixTableModel(3, seed=0), PrefixTableModel(3, seed=1), 3
    counts = np.zeros((vocab,) * NEW_TOKENS)
    for seed in range(runs):
        ids = speculative_generate(target, draft, PROMPT, NEW_TOKENS, draft_tokens=k, seed=seed, **options).ids
        counts[tuple(ids[len(PROMPT):])] += 1
    expected = runs * exact_continuation_probs(target, PROMPT, NEW_TOKENS, options)
    excess = chi_square_excess(counts.ravel(), expected.ravel())
    assert excess < 5, (f"speculative samples differ from the target's distribution: chi-square {excess:.1f} sd "
                        "above its mean")


@pytest.mark.parametrize("options, k", [(SAMPLING_SETTINGS[0], 3), (SAMPLING_SETTINGS[1], 1)],
                         ids=["tau=1,draft_tokens=3", "tau=0.7,top_k=2,top_p=0.9,draft_tokens=1"])
def test_sampled_tokens_follow_the_targets_distribution(options, k):
    check_sampled_tokens_follow_the_target(options, k)


@pytest.mark.parametrize("piece, bug", [("acceptance_probability", broken.acceptance_without_a_coin_flip),
                                        ("residual_distribution", broken.residual_that_is_the_target)])
def test_sampling_check_catches_the_broken_acceptance_rules(monkeypatch, piece, bug):
    monkeypatch.setattr(speculative, piece, bug)
    with pytest.raises(AssertionError):
        check_sampled_tokens_follow_the_target(SAMPLING_SETTINGS[0], k=3, runs=400)


# ======================================================================================= KVCache.truncate
@given(seed=st.integers(0, 2**16), positions=st.sampled_from(["learned", "sinusoidal", "rope"]),
       data=st.data())
def test_a_truncated_cache_continues_as_if_only_the_kept_tokens_were_fed(seed, positions, data):
    model = random_gpt(7, 10, seed, num_layers=2, positions=positions)
    first = np.array(data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=8)))
    keep = data.draw(st.integers(0, len(first)))
    rest = np.array(data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=10 - keep)))
    cache = model.new_cache(1)
    with tgl.no_grad():
        model(first[None], cache=cache)
        cache.truncate(keep)
        continued = model(rest[None], cache=cache).data
        fresh = model(np.concatenate([first[:keep], rest])[None]).data[:, keep:]
    assert cache.length == keep + len(rest)
    assert all(k.shape[2] == keep + len(rest) for k in cache.keys + cache.values)
    np.testing.assert_allclose(continued, fresh, rtol=1e-4, atol=1e-5)


@given(st.lists(st.booleans(), min_size=1, max_size=6), st.data())
def test_truncate_trims_the_padding_flags_with_the_keys(flags, data):
    model = random_gpt(5, 8, seed=0)
    cache = model.new_cache(1)
    with tgl.no_grad():
        model(np.zeros((1, len(flags)), dtype=np.int64), cache=cache, padding_mask=np.array([flags]))
    keep = data.draw(st.integers(0, len(flags)))
    cache.truncate(keep)
    np.testing.assert_array_equal(cache.padding, np.array([flags[:keep]]))
    cache.truncate(keep)  # truncating to the current length changes nothing
    assert cache.length == keep and cache.padding.shape == (1, keep)


@pytest.mark.parametrize("length", [-1, 4, 1.5, True])
def test_truncate_refuses_a_length_it_cannot_keep(length):
    model = random_gpt(5, 8, seed=0)
    cache = model.new_cache(1)
    with tgl.no_grad():
        model(np.zeros((1, 3), dtype=np.int64), cache=cache)
    with pytest.raises(ValueError, match="KVCache.truncate"):
        cache.truncate(length)


# =============================================================================== bad input, bookkeeping
def test_speculative_generate_explains_bad_input():
    target, prompt = random_gpt(6, 8, seed=0), np.array([1, 2])
    with pytest.raises(ValueError, match="same tokenizer"):
        speculative_generate(target, random_gpt(7, 8, seed=0), prompt, 3)
    with pytest.raises(TypeError, match="truncate"):
        speculative_generate(target, BigramLanguageModel(6), prompt, 3)
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        speculative_generate(target, target, prompt[None], 3)
    with pytest.raises(ValueError, match="max_context=8"):
        speculative_generate(target, target, np.zeros(9, dtype=np.int64), 3)
    with pytest.raises(ValueError, match="draft_tokens"):
        speculative_generate(target, target, prompt, 3, draft_tokens=0)
    with pytest.raises(ValueError, match="either seed or rng"):
        speculative_generate(target, target, prompt, 3, seed=0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="target_probs"):
        speculative_accept(np.ones((2, 3)) / 3, np.ones((2, 3)) / 3, [0, 1])
    with pytest.raises(ValueError, match="not logits"):
        speculative_accept(np.ones((2, 3)), np.ones((1, 3)) / 3, [0])


def test_both_models_run_in_eval_mode_and_get_their_modes_back():
    target, draft = random_gpt(6, 8, seed=0), random_gpt(6, 8, seed=1)
    target.train(), draft.eval()
    speculative_generate(target, draft, np.array([1]), 5, seed=0)
    assert target.training and not draft.training


def test_a_seed_fixes_the_sampled_tokens():
    target, draft = random_gpt(6, 8, seed=0), random_gpt(6, 8, seed=1)
    runs = [speculative_generate(target, draft, np.array([1]), 12, seed=5, temperature=0.9).ids for _ in range(2)]
    np.testing.assert_array_equal(*runs)


def test_the_sweep_reports_acceptance_and_speed_for_each_k():
    """The experiment's plumbing on untrained models (the trained run is the notebook's): greedy rows reproduce
    generate, every rate is a fraction, and a round yields at least one token per target pass."""
    target, draft = random_gpt(9, 32, seed=0, num_layers=2, embed_dim=16), random_gpt(9, 32, seed=1)
    val_ids = np.random.default_rng(0).integers(0, 9, 200)
    pair = {role: SimpleNamespace(model=model, val_ids=val_ids, config=SimpleNamespace(context_size=32))
            for role, model in (("target", target), ("draft", draft))}
    result = speculative_experiment.speculative_sweep(fast=True, pair=pair, draft_tokens=(2,), modes=("greedy",))
    row = result["modes"]["greedy"]
    measured = row["by_draft_tokens"][2]
    assert 0 <= measured["acceptance_rate"] <= 1 and measured["tokens_per_target_pass"] >= 1
    assert measured["identical_to_generate"] and measured["speedup"] > 0 and row["cost_ratio"] > 0
    assert speculative_experiment.predicted_speedup(1.0, 4, 0.0) == 5  # all kept, a free draft: k + 1 per pass
