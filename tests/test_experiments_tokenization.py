"""Chapter 4 (Q06, Q07) experiments in fast mode: what the notebook shows at full size must hold in CI too.

Each experiment runs once per module (fixtures) and several tests read its metrics. Thresholds were calibrated
once against full-size runs (`fast=False`) and fast runs on a 2-core machine; the measured values are recorded
next to each assertion.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.autograd import no_grad
from tinygrad_llm.data import ByteBPETokenizer, pad_batch
from tinygrad_llm.experiments import tokenization as T
from tinygrad_llm.nn import GPT
from tinygrad_llm.random import manual_seed

pytestmark = pytest.mark.tokenization


@pytest.fixture(scope="module")
def costs():
    return T.tokens_per_character(fast=True)


@pytest.fixture(scope="module")
def oov():
    return T.whitespace_oov()


@pytest.fixture(scope="module")
def normalisation():
    return T.normalisation_effect(fast=True)


@pytest.fixture(scope="module")
def padding():
    return T.padding_masks()


@pytest.fixture(scope="module")
def duplication():
    return T.duplication_effect(fast=True)


@pytest.fixture(scope="module")
def minhash():
    return T.minhash_quality(fast=True)


# ------------------------------------------------------------------------------------------------ Q06.1 BPE cost
def test_tokens_per_character_falls_monotonically_as_merges_increase(costs):
    # Measured on held-out lines, fast (0/100/200/300 merges): all 1.41 1.13 1.01 0.96, zh 2.60 2.40 2.13 2.08,
    # en 1.02 0.71 0.63 0.58; full (0/100/500/1000): all 1.41 1.17 1.06 0.92, zh 2.60 2.57 2.54 2.17.
    for language in ("all", "en", "zh"):
        values = costs[language]
        assert all(later < earlier for earlier, later in zip(values, values[1:])), (language, values)


def test_byte_level_bpe_needs_no_unk_and_round_trips_chinese_and_emoji(costs):
    assert costs["unk_ids"] == 0 and costs["round_trips"]
    # With no merges a Chinese character costs its UTF-8 bytes: 3, less the ASCII digits and spaces among them.
    assert 2.5 < costs["zh"][0] <= 3.0 and costs["en"][0] == pytest.approx(1.0, abs=0.05)


def test_the_same_sentences_cost_more_tokens_in_chinese_once_merges_favour_english(costs):
    # Measured zh/en token ratio on the parallel lines: fast 0.85 -> 1.18, full 0.85 -> 1.42.
    assert costs["zh_over_en_tokens"][0] < 1 < costs["zh_over_en_tokens"][-1]


@given(st.text(alphabet="ab c,你好", max_size=60), st.integers(0, 10), st.integers(0, 10))
def test_a_shorter_bpe_run_learns_a_prefix_of_a_longer_ones_merges(text, fewer, more):
    """The experiment trains once with the most merges and truncates; this is why that is the same thing."""
    fewer, more = sorted((fewer, more))
    assert ByteBPETokenizer.train(text, fewer).merges == ByteBPETokenizer.train(text, more).merges[:fewer]


# ------------------------------------------------------------------------------------------------ Q06.2 whitespace
def test_whitespace_words_leave_chinese_almost_entirely_out_of_vocabulary(oov):
    # Measured (same in both modes): zh word OOV 1.00 (25 of 25 test "words"), en 0.50; byte BPE unk 0 for both.
    assert oov["zh"]["word_oov_rate"] >= 0.9
    assert oov["en"]["word_oov_rate"] < oov["zh"]["word_oov_rate"]
    assert oov["zh"]["bpe_unk_rate"] == oov["en"]["bpe_unk_rate"] == 0.0
    assert oov["zh"]["char_oov_rate"] > 0.1  # a closed character alphabet has gaps too (measured 0.35)


# ------------------------------------------------------------------------------------------------ Q06.3 M15
def test_normalised_text_loses_characters_and_its_samples_have_no_capitals_or_punctuation(normalisation):
    raw, normalised = normalisation["runs"]["raw"], normalisation["runs"]["normalised"]
    # Measured, fast: 26% of characters deleted, 1.8% of characters change case; full 27% and 1.8%.
    assert normalisation["deleted_share"] > 0.15 and normalisation["case_changed_share"] > 0.01
    assert normalised["sample_uppercase_share"] == 0.0 and normalised["sample_punctuation_share"] == 0.0
    assert normalised["uppercase_in_vocab"] == 0
    # Measured raw samples, fast: uppercase 3.0% of letters, punctuation 6.9%; full 2.1% and 8.0%.
    assert raw["sample_uppercase_share"] > 0.005 and raw["sample_punctuation_share"] > 0.02
    assert normalised["unreadable_raw_share"] > 0.05 and raw["unreadable_raw_share"] == 0.0  # measured 8.4%


# ------------------------------------------------------------------------------------------------ Q06.4 padding
def test_with_masks_padding_leaves_real_positions_unchanged_and_without_them_it_does_not(padding):
    diff = padding["diff"]
    # Measured max |difference| (float32): encoder 4.8e-7 masked vs 0.66 unmasked; decoder with left padding and
    # rotary positions 7.5e-8 vs 0.22.
    for setup in ("encoder", "decoder, left"):
        assert diff[setup]["masked"] <= 1e-6, setup
        assert diff[setup]["unmasked"] > 1e-2, setup
    assert diff["decoder, right"]["unmasked"] <= 1e-6  # causality already hides pads appended on the right
    assert diff["decoder, left, learned positions"]["masked"] > 1e-2  # left padding shifts absolute positions
    assert padding["left_pad_outputs_finite"]


@given(st.lists(st.integers(1, 8), min_size=1, max_size=3), st.integers(0, 2**31 - 1))
def test_masked_left_padding_never_moves_a_rotary_decoders_real_logits(lengths, seed):
    """The experiment's claim for any batch: left-pad, mask, and each row's real logits match the row alone."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, 20, size=n) for n in lengths]
    manual_seed(0)
    gpt = GPT(20, context_size=8, embed_dim=16, num_heads=2, num_layers=1, positions="rope")
    batch = pad_batch(sequences, pad_id=0, side="left")
    with no_grad():
        padded = gpt(batch.ids, padding_mask=batch.padding_mask).data
        for row, sequence in enumerate(sequences):
            np.testing.assert_allclose(padded[row][~batch.padding_mask[row]], gpt(sequence[None]).data[0], atol=1e-6)


def test_pad_targets_must_be_ignored_in_the_loss(padding):
    loss = padding["loss"]
    assert loss["pads_ignored"] == pytest.approx(loss["unpadded"], abs=1e-5)
    assert abs(loss["pads_counted"] - loss["unpadded"]) > 1e-3  # measured 3.62 vs 3.73


def test_a_query_with_no_visible_key_gives_zeros_not_nan(padding):
    assert np.array_equal(padding["fully_masked_rows"], np.zeros((2, 8)))


# ------------------------------------------------------------------------------------------------ Q07 duplication
def test_the_duplicated_run_regurgitates_more(duplication):
    duplicated, deduplicated = duplication["runs"]["duplicated"], duplication["runs"]["deduplicated"]
    assert duplication["dedup_keeps_each_line_once"]
    # Measured exact regurgitation of the repeated lines, fast: 0.95 vs 0.00; full 0.88 vs 0.00. Lines seen once:
    # 0.00 in both runs.
    assert duplicated["repeated"]["exact"] > deduplicated["repeated"]["exact"] + 0.3
    assert duplicated["repeated"]["exact"] > duplicated["seen_once"]["exact"]


def test_duplicates_widen_the_train_validation_gap_at_the_same_compute(duplication):
    duplicated, deduplicated = duplication["runs"]["duplicated"], duplication["runs"]["deduplicated"]
    # Measured gap, fast: 1.23 vs 0.59 nats; full 0.86 vs 0.32. Val PPL fast 10.6 vs 8.9, full 6.13 vs 5.05.
    assert duplicated["gap"] > deduplicated["gap"]
    assert duplicated["val_ppl"] > deduplicated["val_ppl"]


# ------------------------------------------------------------------------------------------------ Q07 MinHash
def test_minhash_recall_is_at_least_0_9_for_pairs_with_jaccard_at_least_0_8(minhash):
    # Measured (decision threshold 0.75, LSH 32 bands x 4 rows): recall 1.00, precision 0.77 in both modes; LSH
    # compares 2.4% (fast) / 1.1% (full) of the pairs and misses no true pair.
    assert minhash["positives"] > 20
    assert minhash["pipeline"]["recall"] >= 0.9
    assert minhash["lsh_recall_of_candidates"] >= 0.95
    assert minhash["lsh_compared_share"] < 0.2


def test_minhash_errors_match_the_binomial_prediction(minhash):
    # Measured share of pairs within 3 sqrt(J (1 - J) / k): 0.997 (fast and full).
    assert minhash["within_3_std"] > 0.98
