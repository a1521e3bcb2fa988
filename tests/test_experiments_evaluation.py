"""Chapter 8 (Q17, Q18) experiments in fast mode: what the notebook shows at full size must hold in CI too.

Each experiment runs once per module (fixtures). Thresholds were calibrated against full-size runs (`fast=False`)
and fast runs on a 2-core machine; the measured values are recorded next to each assertion.
"""
import math

import pytest

from tinygrad_llm.experiments import evaluation as E

pytestmark = pytest.mark.evaluation


@pytest.fixture(scope="module")
def bleu():
    return E.bleu_worked_example(fast=True)


@pytest.fixture(scope="module")
def training():
    return E.perplexity_and_bleu_during_training(fast=True)


@pytest.fixture(scope="module")
def slices():
    return E.weak_slice_error_analysis(fast=True)


# ------------------------------------------------------------------------------------------------ Q17: BLEU
def test_worked_example_bleu_numbers_match_to_4_decimals(bleu):
    assert round(bleu["correct"]["score"], 4) == 0.6771
    assert round(bleu["swapped"]["score"], 4) == 0.6606  # M33: the order matters
    assert bleu["short_unsmoothed"] == 0.0
    assert round(bleu["short_floor_0.1"], 4) == 0.5623  # "0.562 with epsilon = 0.1": nltk method1 / 'floor'


def test_the_steps_multiply_back_to_the_score(bleu):
    for case in ("correct", "swapped", "short_steps"):
        steps = bleu[case]
        mean = math.exp(sum(math.log(p) for p in steps["precisions"]) / len(steps["precisions"]))
        assert steps["score"] == pytest.approx(steps["brevity_penalty"] * mean, rel=1e-12)
    assert bleu["correct"]["brevity_penalty"] < 1.0 == bleu["swapped"]["brevity_penalty"]


def test_corpus_bleu_is_not_the_mean_of_sentence_bleus(bleu):
    # Measured: corpus 0.7367, mean of sentence BLEUs 0.3386 (the 3-token pair alone scores 0).
    assert bleu["corpus_bleu"] > bleu["mean_sentence_bleu"] + 0.2


# ------------------------------------------------------------------------------------------------ Q17: PPL
def test_perplexity_starts_near_the_vocabulary_size_and_falls(training):
    vocab, perplexity = training["vocab_size"], training["perplexity"]
    # Measured: fast V = 91, PPL 89.0 at step 0 -> 14.0 after 240 steps; full V = 105, PPL 89.2 -> 6.9 (800).
    assert 0.8 * vocab < perplexity[0] < 1.2 * vocab
    assert perplexity[-1] < 0.25 * perplexity[0]
    assert perplexity[-1] == min(perplexity)


def test_continuation_bleu_rises_with_training(training):
    # Measured: fast 0.055 untrained (noisy: 12 prompts of 24 characters) -> 0.115 after 240 steps;
    # full 0.156 -> 0.229 after 800 steps (32 prompts).
    assert training["bleu"][-1] > training["bleu"][0]
    assert all(0.0 <= b <= 1.0 for b in training["bleu"])


# ------------------------------------------------------------------------------------------------ Q18
def test_slicing_finds_the_planted_weak_slice(slices):
    by_slice = slices["evaluation_by_slice"]
    # Measured: fast legal 0.30 against 0.76-0.78 for the others (12 of the 20 highest losses are legal);
    # full legal 0.25 against 0.72-0.74 (6 of 20).
    assert slices["weakest_slice"] == E.WEAK_SLICE
    assert by_slice[E.WEAK_SLICE] < min(v for k, v in by_slice.items() if k != E.WEAK_SLICE) - 0.2
    assert slices["confusion_all"].sum() == slices["sizes"]["evaluation"]
    assert slices["worst_sources"].count(E.WEAK_SLICE) >= 5  # the highest-loss examples point to it too


def test_the_fix_gains_at_least_15_points_on_the_slice_on_fresh_data(slices):
    gains = E.gains_in_points(slices)
    # Measured: fast seed 0 +46.1 (reweighting), +48.7 (augmentation); fast seeds 1-3: +32, +18, +28;
    # full seed 0: +50.4, +50.8.
    assert gains["fix_slice_fresh"] >= 15
    assert gains["augment_slice_fresh"] >= 15


def test_training_on_evaluation_errors_inflates_that_set_only(slices):
    gains = E.gains_in_points(slices)
    # Measured: fast seed 0 error set +66.0, evaluation set +15.4, fresh +11.3; full: +55.7, +12.2, +10.5.
    assert gains["leak_error_set"] >= gains["leak_fresh"] + 20
    assert slices["leak_evaluation"]["after"] > slices["leak_fresh"]["after"]


def test_calibration_is_reported_on_fresh_data(slices):
    bins = slices["reliability_fresh"]
    assert bins["counts"].sum() == slices["sizes"]["fresh"]
    assert 0.0 <= slices["ece_fresh"] <= 1.0
