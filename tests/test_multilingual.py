"""Many languages (Q30): language B as a relabelling of A, the planted sentiment task, and the transfer table."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.experiments import multilingual as experiment
from tinygrad_llm.transfer.multilingual import (A_VOCAB_SIZE, ANCHOR_ORDER, DIGITS, HIGH_RATINGS, INTENSIFIERS,
                                                NEGATORS, PAD, POSITIVE, PUNCTUATION, RATING_POSITION, WORD_ID, WORDS,
                                                Relabelling, anchor_ids, keyword_sentiment, review_corpus)

pytestmark = pytest.mark.pretraining

ID_WORD = {i: w for w, i in WORD_ID.items()}


@given(num_anchors=st.integers(0, len(ANCHOR_ORDER)), seed=st.integers(0, 2**16))
def test_the_relabelling_is_a_bijection_that_fixes_the_anchors(num_anchors, seed):
    anchors = anchor_ids(num_anchors)
    relabelling = Relabelling(A_VOCAB_SIZE, anchors, seed)
    a_ids = np.arange(A_VOCAB_SIZE)
    b_ids = relabelling.to_b(a_ids)
    assert len(set(b_ids.tolist())) == A_VOCAB_SIZE  # one-to-one
    assert relabelling.joint_size == 2 * A_VOCAB_SIZE - len(anchors) - 1  # PAD is shared too
    fixed = {PAD, *anchors}
    for a, b in zip(a_ids, b_ids):
        if a in fixed:
            assert a == b
        else:
            assert A_VOCAB_SIZE <= b < relabelling.joint_size  # a new word: no spelling shared with A
    np.testing.assert_array_equal(relabelling.to_a(b_ids), a_ids)


@given(seed=st.integers(0, 2**16), num_anchors=st.integers(0, len(ANCHOR_ORDER)))
def test_relabelling_a_text_and_back_restores_it(seed, num_anchors):
    ids, _ = review_corpus(20, 16, seed)
    relabelling = Relabelling(A_VOCAB_SIZE, anchor_ids(num_anchors), seed + 1)
    b_text = relabelling.to_b(ids)
    np.testing.assert_array_equal(relabelling.to_a(b_text), ids)
    shared = np.isin(ids, (PAD,) + anchor_ids(num_anchors))
    np.testing.assert_array_equal(b_text[shared], ids[shared])
    assert (b_text[~shared] >= A_VOCAB_SIZE).all()


def test_relabelling_errors_name_the_valid_ids():
    relabelling = Relabelling(A_VOCAB_SIZE, anchor_ids(2), 0)
    with pytest.raises(ValueError, match="language A's"):
        relabelling.to_b([A_VOCAB_SIZE])
    with pytest.raises(ValueError, match="language B's"):
        relabelling.to_a([WORD_ID["good"]])  # an A word that is not an anchor does not exist in B
    with pytest.raises(ValueError, match="anchors must be ids of language A"):
        Relabelling(A_VOCAB_SIZE, [A_VOCAB_SIZE + 3])
    with pytest.raises(ValueError, match="num_anchors must be in"):
        anchor_ids(len(ANCHOR_ORDER) + 1)


def test_only_punctuation_and_rating_digits_are_ever_anchors():
    anchors = {ID_WORD[i] for i in anchor_ids(len(ANCHOR_ORDER))}
    assert anchors == set(PUNCTUATION + DIGITS)
    assert {ID_WORD[i] for i in anchor_ids(len(PUNCTUATION))} == set(PUNCTUATION)  # the mood-free anchors first
    assert len(WORDS) == len(set(WORDS))


@given(prefix=st.lists(st.sampled_from(["the", "film", "was", "bad", "very", "i", "liked", ","]), max_size=5),
       keyword=st.sampled_from(POSITIVE), negator=st.sampled_from(NEGATORS), intensify=st.booleans())
def test_keyword_sentiment_is_positive_unless_the_keyword_is_negated(prefix, keyword, negator, intensify):
    middle = ["so"] if intensify else []
    assert keyword_sentiment(prefix + middle + [keyword, "."]) == 1
    assert keyword_sentiment(prefix + [negator] + middle + [keyword, "."]) == 0


def test_the_corpus_labels_follow_the_planted_rule_and_are_not_degenerate():
    ids, labels = review_corpus(500, 16, 0)
    for row, label in zip(ids, labels):
        assert label == keyword_sentiment(ID_WORD[i] for i in row if i != PAD)
    assert 0.3 < labels.mean() < 0.7
    with pytest.raises(ValueError, match="context_size"):
        review_corpus(5, 4, 0)


@given(seed=st.integers(0, 2**16))
def test_every_review_has_one_shape_so_only_its_words_carry_the_label(seed):
    ids, _ = review_corpus(50, 16, seed)
    optional = np.isin(ids, [WORD_ID[w] for w in NEGATORS + INTENSIFIERS])
    assert ((ids != PAD).sum(axis=1) - optional.sum(axis=1) == 11).all()  # the rating and ten words, always
    assert np.isin(ids[:, RATING_POSITION], [WORD_ID[d] for d in DIGITS]).all()
    assert not np.isin(ids[:, RATING_POSITION + 1:], [WORD_ID[d] for d in DIGITS]).any()


def test_the_rating_digit_follows_the_mood_that_colours_the_words():
    ids, _ = review_corpus(2000, 16, 0)
    high = np.isin(ids[:, RATING_POSITION], [WORD_ID[d] for d in HIGH_RATINGS])
    has_positive = np.isin(ids, [WORD_ID[w] for w in POSITIVE]).any(axis=1)
    assert has_positive[high].mean() > 0.8 and has_positive[~high].mean() < 0.2  # mood_strength 0.9 either way


@given(seed=st.integers(0, 2**16), num_anchors=st.integers(0, len(ANCHOR_ORDER)))
def test_labelled_reviews_show_the_mask_and_no_rating_in_either_language(seed, num_anchors):
    ids, _ = review_corpus(20, 16, seed)
    relabelling = Relabelling(A_VOCAB_SIZE, anchor_ids(num_anchors), seed)
    mask_id = relabelling.joint_size
    for text in (ids, relabelling.to_b(ids)):
        hidden = experiment.hide_ratings(text, mask_id)
        assert (hidden[:, RATING_POSITION] == mask_id).all()
        np.testing.assert_array_equal(hidden[:, RATING_POSITION + 1:], text[:, RATING_POSITION + 1:])
        assert not np.isin(hidden, relabelling.to_b([WORD_ID[d] for d in DIGITS])).any()
        assert not np.isin(hidden, [WORD_ID[d] for d in DIGITS]).any()


def test_transfer_run_names_the_valid_pretrainings():
    with pytest.raises(ValueError, match="pretraining must be one of"):
        experiment.transfer_run(8, "bilingual", {}, seed=0)


def test_transfer_sizes_override_only_known_sizes():
    assert experiment.transfer_sizes(True, pretrain_steps=7)["pretrain_steps"] == 7
    assert experiment.transfer_sizes(False)["pretrain_steps"] > experiment.transfer_sizes(True)["pretrain_steps"]
    with pytest.raises(ValueError, match="transfer_sizes: unknown sizes \\['steps'\\]"):
        experiment.transfer_sizes(True, steps=7)


@pytest.fixture(scope="module")
def transfer_table():
    return experiment.cross_lingual_transfer(fast=True)


def test_the_transfer_table_holds_one_sane_row_per_setting(transfer_table):
    """Structure and sanity only: at this size the B accuracies do not separate robustly across seeds (see the
    experiment's docstring), so no claim about transfer is asserted here."""
    runs = transfer_table["runs"]
    assert [(r["num_anchors"], r["pretraining"]) for r in runs] == [
        (0, "joint"), (len(ANCHOR_ORDER), "joint"), (len(ANCHOR_ORDER), "none")]
    for run in runs:
        assert 0.0 <= run["accuracy_a"] <= 1.0 and 0.0 <= run["accuracy_b"] <= 1.0 and 0.5 <= run["majority_b"] <= 1.0
        assert run["accuracy_a"] > run["majority_b"] - 0.05, run  # the probe is no worse than a constant guess
        assert (run["final_mlm_loss"] is None) == (run["pretraining"] == "none")
    for pretrained in runs[:2]:
        assert pretrained["final_mlm_loss"] < np.log(A_VOCAB_SIZE), pretrained  # better than a uniform guess over A
