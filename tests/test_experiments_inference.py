"""Chapter 9 (Q17's perplexity, Q19, Q21) experiments in fast mode: what the notebook shows at full size must hold
in CI too.

One small GPT is trained once per module and every experiment reads it. Thresholds were calibrated against a
full-size run (`fast=False`) and fast runs on a 2-core machine; the measured values are recorded next to each
assertion. Timings are printed by the notebook and never asserted. The decoding rules themselves, the chi-square
property of sampling, the cached/uncached equivalence on arbitrary models and the perplexity formulas are checked in
test_sampling.py, test_generate.py and test_perplexity.py; this file checks the experiments' claims.
"""
import math

import pytest

from tinygrad_llm.experiments import inference as I

pytestmark = pytest.mark.inference


@pytest.fixture(scope="module")
def run():
    return I.train_model(fast=True)


@pytest.fixture(scope="module")
def sampling(run):
    return I.sampling_comparison(fast=True, run=run)


@pytest.fixture(scope="module")
def kv_cache(run):
    return I.kv_cache_speedup(fast=True, run=run)


# ------------------------------------------------------------------------------------------------ Q17: perplexity
def test_perplexity_starts_near_the_vocabulary_size_and_training_lowers_it_far_below(run):
    result = I.perplexity_from_scratch(fast=True, run=run)
    vocab, ppl = result["vocab_size"], result["perplexity"]
    assert ppl["uniform"] == pytest.approx(vocab, rel=1e-9)
    # Measured untrained/V: fast 89.0/91, full 104.2/107 (both within 3%).
    assert abs(math.log(ppl["untrained GPT"] / vocab)) < 0.1
    assert result["curve_perplexity"][0] == pytest.approx(ppl["untrained GPT"], rel=0.1)
    # Measured trained PPL: fast 13.2, full 3.9.
    assert ppl["trained GPT"] < ppl["untrained GPT"] / 5


def test_per_token_perplexity_ranks_tokenizers_backwards_and_bits_per_byte_does_not(run):
    results = I.tokenizer_dependence(fast=True, run=run)["results"]
    char, bpe = results["char bigram (counts)"], results["BPE bigram (counts)"]
    # Measured per token: fast char 13.1 vs BPE 75.5, full 12.3 vs 38.0.
    assert bpe["perplexity_per_token"] > 2 * char["perplexity_per_token"]
    # Measured bits per byte: fast char 3.71 vs BPE 3.13, full 3.61 vs 1.96.
    assert bpe["bits_per_byte"] < char["bits_per_byte"]
    assert bpe["bytes"] == pytest.approx(char["bytes"], abs=8)  # the same text, less the first token's bytes


# ------------------------------------------------------------------------------------------------ Q19: decoding
def test_distinct_2_rises_with_temperature(sampling):
    results = sampling["results"]
    ladder = [results[label]["distinct_2"] for label in ("greedy", "tau = 0.5", "tau = 0.8", "tau = 1.0", "tau = 1.2")]
    # Measured fast: 0.027, 0.145, 0.277, 0.385, 0.513; full: 0.037, 0.067, 0.102, 0.137, 0.177.
    assert all(colder < hotter for colder, hotter in zip(ladder, ladder[1:])), ladder


def test_greedy_text_has_lower_nll_than_tau_1_2(sampling):
    results = sampling["results"]
    # Measured NLL (nats/token) greedy vs tau = 1.2: fast 1.35 vs 3.11, full 0.64 vs 1.81.
    assert results["greedy"]["nll"] < 0.6 * results["tau = 1.2"]["nll"]


# ------------------------------------------------------------------------------------------------ Q21: the KV cache
def test_cached_and_uncached_generation_give_identical_outputs(kv_cache):
    assert kv_cache["identical_tokens"], "sampled tokens differ with and without the cache (trained model)"
    assert kv_cache["timing_tokens_identical"], "greedy tokens differ with and without the cache (timing model)"
    # Measured max |logit difference|: fast 1.9e-6, full 1.4e-5 (float32 sums in a different order).
    assert kv_cache["max_logit_difference"] < 1e-4


def test_the_cache_size_matches_2_L_T_d_per_sequence(kv_cache):
    layers, width, batch = kv_cache["num_layers"], kv_cache["embed_dim"], kv_cache["batch_size"]
    float32_bytes = 4
    expected = [batch * 2 * layers * length * width * float32_bytes for length in kv_cache["cache_lengths"]]
    assert kv_cache["cache_bytes"] == expected == kv_cache["formula_bytes"]
    assert len(set(kv_cache["cache_lengths"])) >= 3
