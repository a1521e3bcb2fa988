"""Fine-tuning a pretrained masked LM (Q27, M48): parameters outside the trainable set stay bit-identical, a new
head loaded with strict=False is the only thing from_pretrained leaves fresh, the rating-slot probe of what a
base learned is symmetric, and the experiment's fast mode returns its tables with sane numbers (a frozen trunk
forgets nothing, a large learning rate forgets much more than a tiny one)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.experiments.fine_tuning import (TRAINABLE, FineTuningSetup, fine_tune, fine_tuning_experiment,
                                                   labelled_reviews, rating_slot_accuracy, trainable_parameters)
from tinygrad_llm.experiments.masked_lm import MASK_ID, VOCAB_SIZE, build_masked_lm, masked_lm_config, review_texts
from tinygrad_llm.nn import TransformerEncoder
from tinygrad_llm.transfer.heads import ModelWithHead, SequenceClassificationHead
from tinygrad_llm.transfer.multilingual import HIGH_RATINGS, LOW_RATINGS, RATING_POSITION, WORD_ID
from tinygrad_llm.transfer.pretrained import from_pretrained, save_pretrained

pytestmark = pytest.mark.pretraining


def small_classifier(seed: int) -> ModelWithHead:
    tgl.manual_seed(seed)
    base = TransformerEncoder(VOCAB_SIZE, context_size=16, embed_dim=16, num_heads=2, num_layers=2)
    return ModelWithHead(base, SequenceClassificationHead.for_base(base, pooling="mean"))


@given(st.integers(0, 2**16), st.sampled_from(TRAINABLE), st.sampled_from([1e-4, 1e-2]))
@settings(max_examples=6, deadline=None)
def test_only_the_trainable_parameters_move_and_the_rest_stay_bit_identical(seed, trainable, lr):
    classifier = small_classifier(seed)
    ids, labels = labelled_reviews(16, seed)
    before = {name: p.data.copy() for name, p in classifier.named_parameters()}
    trained = {id(p) for p in trainable_parameters(classifier, trainable)}
    fine_tune(classifier, ids, labels, steps=2, lr=lr, trainable=trainable, batch_size=8, seed=seed)
    for name, p in classifier.named_parameters():
        if id(p) in trained:
            continue
        assert np.array_equal(p.data, before[name]), f"{name} moved although {trainable!r} freezes it"
    moved = [name for name, p in classifier.named_parameters() if not np.array_equal(p.data, before[name])]
    assert any(name.startswith("head.") for name in moved)
    assert all(name.startswith("head.") for name in moved) == (trainable == "frozen")


def test_top_block_trains_the_last_block_final_norm_and_head_only():
    classifier = small_classifier(0)
    names = {id(p): name for name, p in classifier.named_parameters()}
    chosen = sorted(names[id(p)] for p in trainable_parameters(classifier, "top_block"))
    assert all(name.startswith(("base.blocks.1.", "base.final_norm.", "head.")) for name in chosen)
    assert any(name.startswith("base.blocks.1.") for name in chosen)
    with pytest.raises(ValueError, match="trainable must be one of"):
        trainable_parameters(classifier, "bottom_block")


def test_labelled_reviews_mask_the_rating_digit():
    ids, labels = labelled_reviews(50, 0)
    assert (ids[:, RATING_POSITION] == MASK_ID).all()
    assert set(np.unique(labels)) <= {0, 1}


@given(st.integers(0, 2**16))
@settings(max_examples=4, deadline=None)
def test_rating_slot_accuracy_flips_when_every_rating_changes_kind(seed):
    """The probe masks the digit, so its guesses do not depend on it: turning every high rating into a low one
    and back must turn its accuracy a into 1 - a (0.5 is what a base that learned no mood scores on average)."""
    tgl.manual_seed(seed)
    masked_lm = build_masked_lm(masked_lm_config(fast=True, seed=seed))
    texts = review_texts(40, seed)
    swap = {WORD_ID[high]: WORD_ID[low] for high, low in zip(HIGH_RATINGS, LOW_RATINGS)}
    swap.update({low: high for high, low in swap.items()})
    swapped = texts.copy()
    swapped[:, RATING_POSITION] = [swap[digit] for digit in texts[:, RATING_POSITION]]
    assert rating_slot_accuracy(masked_lm, swapped) == pytest.approx(1 - rating_slot_accuracy(masked_lm, texts))


def test_a_setup_cell_starts_from_the_same_weights_whatever_ran_before(tmp_path):
    """The fresh head (and the from-scratch base) are drawn after manual_seed(seed): a cell's result must not
    depend on how many random numbers earlier cells used."""
    setup = FineTuningSetup(tmp_path, fast=True, seed=3, pretraining_steps=2, fine_tuning_steps=2)
    assert setup.pretraining_config.steps == 2 and setup.steps == 2
    for pretrained in (True, False):
        first = setup.classifier(pretrained).state_dict()
        tgl.manual_seed(12345)  # what an unrelated cell might do in between
        second = setup.classifier(pretrained).state_dict()
        assert all(np.array_equal(first[name], second[name]) for name in first)
    assert setup.run(32, lr=1e-2) == setup.run(32, lr=1e-2)


@pytest.fixture(scope="module")
def experiment():
    return fine_tuning_experiment(fast=True)


def test_from_pretrained_with_a_new_head_leaves_only_the_head_fresh(tmp_path):
    masked_lm = build_masked_lm(masked_lm_config(fast=True))
    path = save_pretrained(masked_lm, tmp_path / "mlm.npz")
    classifier, report = from_pretrained(path, head="sequence_classification", strict=False, num_classes=2,
                                         pooling="mean")
    assert report.missing_keys and all(key.startswith("head.classifier.") for key in report.missing_keys)
    assert report.unexpected_keys and all(key.startswith("head.") for key in report.unexpected_keys)
    for name, value in masked_lm.base.state_dict().items():
        np.testing.assert_array_equal(classifier.base.state_dict()[name], value)


def test_fine_tuning_experiment_tables_are_complete_and_sane(experiment):
    curve, sweep, frozen = experiment["label_count_curve"], experiment["learning_rate_sweep"], experiment["freezing"]
    assert {(cell["labels"], cell["pretrained"]) for cell in curve} == {(32, True), (32, False), (512, True),
                                                                       (512, False)}
    assert [cell["lr"] for cell in sweep] == [1e-5, 1e-2]
    assert [cell["trainable"] for cell in frozen] == ["frozen", "top_block"]
    for cell in curve + sweep + frozen:
        assert 0 <= cell["accuracy"] <= 1
    for cell in sweep + frozen:
        assert np.isfinite(cell["mlm_loss"])
    assert all(cell["lr"] == 1e-2 and 0 <= cell["val_accuracy"] <= 1 for cell in curve)
    assert 0 <= experiment["rating_slot_accuracy"] <= 1 and 0.5 <= experiment["majority"] <= 1
    # a tiny learning rate barely moves the base; a large one forgets much more of the masked-LM objective (M48)
    assert sweep[1]["forgetting"] > sweep[0]["forgetting"] + 0.5
    # a frozen trunk keeps the pretrained base exactly, so its masked-LM loss is the pretrained one
    assert frozen[0]["mlm_loss"] == pytest.approx(sweep[0]["mlm_loss"] - sweep[0]["forgetting"], abs=1e-9)
