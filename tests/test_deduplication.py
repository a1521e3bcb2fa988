"""Exact deduplication and MinHash (Q07): what a data pipeline's dedup step must guarantee."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.data.deduplication import (MinHash, exact_deduplicate, jaccard, lsh_candidate_pairs,
                                             near_duplicate_pairs, shingles)

pytestmark = pytest.mark.tokenization

# Few distinct lines, so drawn lists hold many repeats.
lines = st.lists(st.sampled_from(["a", "b", "the cat", "The cat", "the cat ", "", "猫", "😀"]) | st.text(max_size=4),
                 max_size=30)


# ------------------------------------------------------------------------------------------------ exact
@given(lines)
def test_exact_deduplication_keeps_first_occurrences_in_order(texts):
    kept = exact_deduplicate(texts)
    first_positions = [texts.index(text) for text in kept]
    assert first_positions == sorted(first_positions)  # in the original order
    assert set(kept) == set(texts) and len(kept) == len(set(texts))  # every text once, nothing invented
    assert kept == list(dict.fromkeys(texts))


@given(lines)
def test_exact_deduplication_is_idempotent(texts):
    once = exact_deduplicate(texts)
    assert exact_deduplicate(once) == once


def test_exact_deduplication_compares_exactly_and_names_bad_items():
    assert exact_deduplicate(["The cat", "the cat", "the cat ", "The cat"]) == ["The cat", "the cat", "the cat "]
    with pytest.raises(TypeError, match="item 1 is a bytes"):
        exact_deduplicate(["ok", b"bytes"])


# ------------------------------------------------------------------------------------------------ shingles
@given(st.text(min_size=1, max_size=40), st.integers(1, 6))
def test_character_shingles_are_the_overlapping_ngrams(text, size):
    grams = shingles(text, size)
    if len(text) <= size:
        assert grams == {text}  # a short text is one shingle of itself
    else:
        assert grams == {text[i:i + size] for i in range(len(text) - size + 1)}
        assert all(len(gram) == size for gram in grams)


def test_word_shingles_and_bad_arguments():
    assert shingles("a b c d", 3, unit="word") == {"a b c", "b c d"}
    assert shingles("  one   two ", 3, unit="word") == {"one two"}
    assert shingles("", 5) == set() and shingles("   ", 2, unit="word") == set()
    with pytest.raises(ValueError, match="unit must be one of"):
        shingles("text", 3, unit="sentence")
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        shingles("text", 0)


# ------------------------------------------------------------------------------------------------ MinHash
@st.composite
def overlapping_sets(draw):
    """Two sets with a shared part and private parts of any sizes (at least one element in all)."""
    elements = st.integers(-10**6, 10**6) | st.text(min_size=1, max_size=6)
    shared = draw(st.sets(elements, max_size=40))
    only_a = draw(st.sets(elements, max_size=40)) - shared
    only_b = draw(st.sets(elements, max_size=40)) - shared - only_a
    a, b = shared | only_a, shared | only_b
    if not a or not b:
        a, b = a | {"x"}, b | {"x"}
    return a, b


@given(overlapping_sets(), st.sampled_from([16, 64, 128, 256]))
def test_minhash_estimate_is_within_three_standard_deviations_of_the_true_jaccard(sets, num_hashes):
    """One estimate is a mean of k Bernoulli(J) draws: std sqrt(J (1 - J) / k). A single 3-sigma bound still
    fails for ~0.3% of draws by design, so each drawn pair is estimated with 5 independent seeds and the
    median error must be within 3 sigma (failing that by chance has probability ~1e-7 per pair)."""
    a, b = sets
    true = jaccard(a, b)
    errors = []
    for seed in range(5):
        minhash = MinHash(num_hashes, seed)
        errors.append(abs(MinHash.estimate_jaccard(minhash.signature(a), minhash.signature(b)) - true))
    assert np.median(errors) <= 3 * math.sqrt(true * (1 - true) / num_hashes) + 1e-12


@given(overlapping_sets())
def test_identical_sets_estimate_one_and_disjoint_sets_zero(sets):
    a, b = sets
    minhash = MinHash(64, seed=1)
    assert MinHash.estimate_jaccard(minhash.signature(a), minhash.signature(set(a))) == 1.0
    disjoint = {("other", x) for x in b}
    assert MinHash.estimate_jaccard(minhash.signature(a), minhash.signature(disjoint)) == 0.0


def test_minhash_is_unbiased_over_seeds():
    a, b = set(range(0, 60)), set(range(30, 90))  # J = 30 / 90
    estimates = [MinHash.estimate_jaccard(*MinHash(64, seed).signatures([a, b])) for seed in range(200)]
    standard_error = math.sqrt((1 / 3) * (2 / 3) / 64 / 200)
    assert abs(np.mean(estimates) - 1 / 3) < 4 * standard_error


def test_minhash_signature_is_deterministic_and_errors_are_clear():
    assert np.array_equal(MinHash(32, 7).signature({"a", "b"}), MinHash(32, 7).signature(["b", "a", "a"]))
    with pytest.raises(ValueError, match="the set is empty"):
        MinHash(8).signature(set())
    with pytest.raises(ValueError, match="num_hashes must be an int >= 1"):
        MinHash(0)
    with pytest.raises(ValueError, match="made by the same MinHash"):
        MinHash.estimate_jaccard(np.zeros(8), np.zeros(16))


# ------------------------------------------------------------------------------------------------ LSH
@given(st.integers(0, 2**31 - 1), st.sampled_from([(8, 1), (8, 2), (8, 4), (12, 3)]))
def test_lsh_candidates_are_exactly_the_pairs_agreeing_on_a_whole_band(seed, shape):
    num_hashes, bands = shape
    rows = num_hashes // bands
    signatures = np.random.default_rng(seed).integers(0, 2, size=(6, num_hashes))  # small values: many collisions
    expected = {(i, j) for i in range(6) for j in range(i + 1, 6)
                if any(np.array_equal(signatures[i, b * rows:(b + 1) * rows], signatures[j, b * rows:(b + 1) * rows])
                       for b in range(bands))}
    assert lsh_candidate_pairs(signatures, bands) == expected


def test_lsh_needs_bands_that_divide_the_signature():
    with pytest.raises(ValueError, match="k divisible by bands"):
        lsh_candidate_pairs(np.zeros((3, 10)), bands=4)


def test_near_duplicate_pairs_finds_an_edited_copy_and_skips_unrelated_and_empty_texts():
    original = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill."
    texts = [original, "", original.replace("quick", "quick,"), "Completely different words about compilers and lists."]
    found = near_duplicate_pairs(texts, threshold=0.8)
    assert list(found) == [(0, 2)]
    assert found[(0, 2)] == pytest.approx(jaccard(shingles(texts[0]), shingles(texts[2])), abs=0.15)
    with pytest.raises(ValueError, match="threshold must be in"):
        near_duplicate_pairs(texts, threshold=1.5)
