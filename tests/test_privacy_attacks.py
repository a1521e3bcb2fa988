"""Privacy attacks (Q37, M58): the ROC curve and AUC held to the pairwise definition (and to scikit-learn where
installed), their invariances, the attack's advantage; canary planting, batched sentence scoring held to scoring one
sentence alone, rank and exposure; the experiment's fast mode (the overfit model leaks more than the DP model; the
planted PIN ranks better than in the control). The checks also run against tests/broken_privacy_attacks.py."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import broken_privacy_attacks as broken
from tinygrad_llm.autograd import no_grad
from tinygrad_llm.data import CharTokenizer
from tinygrad_llm.experiments.privacy_attacks import canary_exposure, membership_attack
from tinygrad_llm.nn import functional as F
from tinygrad_llm.nn.gpt import GPT
from tinygrad_llm.random import manual_seed
from tinygrad_llm.responsible import canary
from tinygrad_llm.responsible.membership_inference import (advantage_bound, auc_by_pairs, best_threshold_advantage,
                                                           loss_threshold_attack, roc_auc, roc_curve)

pytestmark = pytest.mark.responsible


def draw_labels_and_scores(seed, size, distinct_scores):
    """Labels with both classes present; integer scores from a small range, so ties are common."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size)
    labels[:2] = (1, 0)
    return rng.permutation(labels), rng.integers(0, distinct_scores, size).astype(float)


# ------------------------------------------------------------------ ROC and AUC
def check_auc_is_the_pairwise_probability(auc_function, seed, size, distinct_scores):
    labels, scores = draw_labels_and_scores(seed, size, distinct_scores)
    assert auc_function(labels, scores) == pytest.approx(auc_by_pairs(labels, scores), abs=1e-12)


@settings(max_examples=20)
@given(seed=st.integers(0, 10**6), size=st.integers(2, 60), distinct_scores=st.integers(1, 8))
def test_auc_is_the_probability_a_member_outscores_a_non_member_ties_half(seed, size, distinct_scores):
    check_auc_is_the_pairwise_probability(roc_auc, seed, size, distinct_scores)


def test_the_pairwise_check_catches_an_auc_that_splits_ties_by_input_order():
    with pytest.raises(AssertionError):
        for seed in range(20):
            check_auc_is_the_pairwise_probability(broken.roc_auc_splitting_ties, seed, size=30, distinct_scores=3)


@settings(max_examples=20)
@given(seed=st.integers(0, 10**6), size=st.integers(2, 60), distinct_scores=st.integers(1, 50))
def test_auc_and_roc_are_invariant_to_a_strictly_increasing_transform_and_flip_with_the_labels(seed, size,
                                                                                               distinct_scores):
    labels, scores = draw_labels_and_scores(seed, size, distinct_scores)
    transformed = 3 * scores**3 + scores - 7  # strictly increasing, exact in float64 for these integers
    fpr, tpr, _ = roc_curve(labels, scores)
    fpr_t, tpr_t, _ = roc_curve(labels, transformed)
    np.testing.assert_array_equal(fpr, fpr_t)
    np.testing.assert_array_equal(tpr, tpr_t)
    assert roc_auc(labels, transformed) == roc_auc(labels, scores)
    assert roc_auc(1 - labels, scores) == pytest.approx(1 - roc_auc(labels, scores), abs=1e-12)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize("seed", range(4))
def test_auc_is_one_half_when_members_and_non_members_score_alike(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=4000)
    labels = np.r_[np.ones(2000, int), np.zeros(2000, int)]
    null_std = math.sqrt((2000 + 2000 + 1) / (12 * 2000 * 2000))  # the Mann-Whitney statistic's spread under H0
    assert abs(roc_auc(labels, scores) - 0.5) < 4 * null_std


@settings(max_examples=20)
@given(seed=st.integers(0, 10**6), size=st.integers(2, 40), distinct_scores=st.integers(1, 8))
def test_the_advantage_is_the_best_tpr_minus_fpr_over_every_threshold(seed, size, distinct_scores):
    labels, scores = draw_labels_and_scores(seed, size, distinct_scores)
    members = labels == 1
    by_counting = max(np.mean(scores[members] >= t) - np.mean(scores[~members] >= t)
                      for t in np.r_[np.inf, scores])
    advantage, threshold = best_threshold_advantage(labels, scores)
    assert advantage == pytest.approx(by_counting, abs=1e-12)
    assert np.mean(scores[members] >= threshold) - np.mean(scores[~members] >= threshold) == pytest.approx(advantage)


def test_roc_and_auc_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    for seed in range(5):
        labels, scores = draw_labels_and_scores(seed, 80, 12)
        assert roc_auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
        fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
        ours_fpr, ours_tpr, _ = roc_curve(labels, scores)
        np.testing.assert_allclose(ours_fpr, fpr)
        np.testing.assert_allclose(ours_tpr, tpr)


def test_the_loss_threshold_attack_calls_the_lower_loss_a_member():
    result = loss_threshold_attack(member_losses=[0.1, 0.2], non_member_losses=[0.5, 0.9])
    assert result["auc"] == 1.0 and result["advantage"] == 1.0 and 0.2 <= result["loss_threshold"] < 0.5


def test_the_advantage_bound_is_zero_without_leakage_and_grows_with_epsilon():
    assert advantage_bound(0.0, 0.0) == 0.0 and advantage_bound(math.inf, 0.0) == 1.0
    bounds = [advantage_bound(epsilon, 1e-5) for epsilon in (0.1, 1.0, 4.0, 10.0)]
    assert bounds == sorted(bounds) and bounds[-1] <= 1.0


@pytest.mark.parametrize("labels, scores, needle", [([1, 1], [0.1, 0.2], "one non-member"),
                                                    ([1, 2], [0.1, 0.2], "0/1"),
                                                    ([1, 0], [0.1], "one length"),
                                                    ([1, 0], [0.1, np.nan], "finite")])
def test_bad_labels_or_scores_raise_a_clear_error(labels, scores, needle):
    with pytest.raises(ValueError, match=needle):
        roc_auc(labels, scores)


# ------------------------------------------------------------------ canary and exposure
def test_exposure_is_log2_of_the_candidates_at_rank_one_and_zero_at_the_last():
    assert canary.exposure(1, 10**4) == pytest.approx(math.log2(10**4))
    assert canary.exposure(10**4, 10**4) == 0.0
    assert canary.exposure(5000, 10**4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rank must be in"):
        canary.exposure(0, 10)


def check_ties_never_pass_for_leakage(rank_function):
    assert rank_function(np.zeros(10**4), 4821) == 10**4  # a model that cannot tell the PINs apart leaks nothing


def test_tied_candidates_rank_the_secret_last_and_the_check_catches_the_opposite():
    check_ties_never_pass_for_leakage(canary.secret_rank)
    with pytest.raises(AssertionError):
        check_ties_never_pass_for_leakage(broken.secret_rank_with_ties_in_its_favour)
    assert canary.secret_rank([0.0, -1.0, -2.0, -1.0], 0) == 1
    assert canary.secret_rank([0.0, -1.0, -2.0, -1.0], 3) == 3


def test_pin_candidates_are_every_four_digit_string():
    candidates = canary.pin_candidates(4)
    assert len(set(candidates)) == 10**4 and all(len(c) == 4 and c.isdigit() for c in candidates)
    assert candidates[0] == "0000" and "4821" in candidates


@settings(max_examples=10)
@given(seed=st.integers(0, 10**6), copies=st.integers(0, 5), num_lines=st.integers(5, 12))
def test_plant_canary_adds_exactly_the_copies_as_lines_and_nothing_else(seed, copies, num_lines):
    text = "\n".join(f"line {i}" for i in range(num_lines))
    planted = canary.plant_canary(text, "my PIN is 4821", copies, np.random.default_rng(seed))
    lines = planted.split("\n")
    assert lines.count("my PIN is 4821") == copies
    assert "\n".join(line for line in lines if line != "my PIN is 4821") == text


def log_likelihood_alone(model, tokenizer, sentence, context):
    """The simple version: one sentence, one forward pass, the sentence's tokens' log-probabilities summed."""
    ids = np.r_[tokenizer.encode(context), tokenizer.encode(sentence)]
    with no_grad():
        log_probs = F.log_softmax(model(ids[None, :-1]), axis=-1).data[0].astype(np.float64)
    positions = np.arange(len(ids) - 1)[-len(tokenizer.encode(sentence)):]
    return float(log_probs[positions, ids[positions + 1]].sum())


@settings(max_examples=6)
@given(seed=st.integers(0, 10**6), batch_size=st.integers(1, 4), context=st.sampled_from(["\n", "PIN:"]))
def test_batched_sentence_scores_equal_scoring_each_sentence_alone(seed, batch_size, context):
    rng = np.random.default_rng(seed)
    tokenizer = CharTokenizer.train("my PIN is 0123456789:\n")
    sentences = ["my PIN is " + "".join(rng.choice(list("0123456789"), rng.integers(1, 5))) for _ in range(7)]
    manual_seed(seed)
    model = GPT(tokenizer.vocab_size, context_size=20, embed_dim=8, num_heads=2, num_layers=1, positions="sinusoidal")
    batched = canary.sentence_log_likelihoods(model, tokenizer, sentences, context, batch_size=batch_size)
    alone = [log_likelihood_alone(model, tokenizer, sentence, context) for sentence in sentences]
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-4)


def test_sentences_longer_than_the_model_sees_raise_a_clear_error():
    tokenizer = CharTokenizer.train("my PIN is 0123456789\n")
    model = GPT(tokenizer.vocab_size, context_size=8, embed_dim=8, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="the model sees 8"):
        canary.sentence_log_likelihoods(model, tokenizer, ["my PIN is 4821"])


# ------------------------------------------------------------------ the experiment, fast mode
def test_the_overfit_model_leaks_membership_and_the_dp_model_much_less():
    result = membership_attack(fast=True)
    overfit, private = result["runs"]["overfit"], result["runs"]["dp_sigma=2.0"]
    assert overfit["auc"] > private["auc"] + 0.1
    assert overfit["train_accuracy"] > overfit["test_accuracy"]  # memorised, hence the loss gap the attack reads
    assert overfit["epsilon"] == math.inf and math.isfinite(private["epsilon"])
    assert private["advantage"] <= private["advantage_bound"]
    for run in result["runs"].values():
        assert run["fpr"][0] == run["tpr"][0] == 0.0 and run["fpr"][-1] == run["tpr"][-1] == 1.0


def test_the_planted_pin_ranks_better_than_in_the_model_that_never_saw_it():
    result = canary_exposure(fast=True)
    control, planted = result["runs"]["control"], result["runs"]["planted"]
    assert planted["rank"] < control["rank"]
    assert planted["exposure"] > planted["baseline_mean_exposure"]
    for run in (control, planted):
        assert run["num_candidates"] == 10**4 and 1 <= run["rank"] <= 10**4
        assert run["exposure"] == pytest.approx(math.log2(10**4) - math.log2(run["rank"]))
