"""Fairness (Q36, M57): per-sample-weighted cross-entropy, the group-gap metrics, the mitigations, and the
accuracy-fairness experiment. The loss checks also run against tests/broken_fairness.py and must catch it."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import broken_fairness as broken
from tinygrad_llm.experiments.fairness import fairness_mitigations
from tinygrad_llm.nn import functional as F
from tinygrad_llm.responsible import fairness
from tinygrad_llm.tensor import Tensor
from tinygrad_llm.testing.gradcheck import gradcheck

pytestmark = pytest.mark.responsible


def sample_weighted_cross_entropy(logits, target, sample_weight):
    return F.cross_entropy(logits, target, sample_weight=sample_weight)


def draw_problem(seed: int, num_examples: int, num_classes: int):
    """float64 logits (a leaf that wants gradients), class ids, and positive per-example weights."""
    rng = np.random.default_rng(seed)
    logits = Tensor(rng.standard_normal((num_examples, num_classes)) * 2, requires_grad=True)
    target = rng.integers(0, num_classes, num_examples)
    weights = rng.uniform(0.1, 5.0, num_examples)
    return logits, target, weights


def loss_and_gradient(loss_fn, logits, target, weights):
    logits.grad = None
    loss = loss_fn(logits, target, weights)
    loss.backward()
    return loss.item(), logits.grad.copy()


problems = st.tuples(st.integers(0, 2**31), st.integers(1, 12), st.integers(2, 5))


# ---------------------------------------------------------------------------- checks of a weighted loss
def check_unit_weights_give_plain_cross_entropy(loss_fn):
    @given(problems)
    @settings(max_examples=10)
    def property_(problem):
        logits, target, _ = draw_problem(*problem)
        plain = loss_and_gradient(lambda z, y, w: F.cross_entropy(z, y), logits, target, None)
        weighted = loss_and_gradient(loss_fn, logits, target, np.ones(len(target)))
        np.testing.assert_allclose(weighted[0], plain[0], rtol=1e-12)
        np.testing.assert_allclose(weighted[1], plain[1], rtol=1e-10, atol=1e-14)

    property_()


def check_scaling_all_weights_changes_nothing(loss_fn):
    @given(problems, st.floats(1e-3, 1e3))
    @settings(max_examples=10)
    def property_(problem, scale):
        logits, target, weights = draw_problem(*problem)
        original = loss_and_gradient(loss_fn, logits, target, weights)
        scaled = loss_and_gradient(loss_fn, logits, target, weights * scale)
        np.testing.assert_allclose(scaled[0], original[0], rtol=1e-10)
        np.testing.assert_allclose(scaled[1], original[1], rtol=1e-8, atol=1e-14)

    property_()


def check_loss_is_the_weighted_mean_of_example_losses(loss_fn):
    """sum(w * l) / sum(w), with l each example's own cross-entropy: the definition, example by example."""
    @given(problems)
    @settings(max_examples=10)
    def property_(problem):
        logits, target, weights = draw_problem(*problem)
        per_example = F.cross_entropy(logits, target, reduction="none").data
        assert loss_fn(logits, target, weights).item() == pytest.approx(weights @ per_example / weights.sum(),
                                                                        rel=1e-10)

    property_()


LOSS_CHECKS = [check_unit_weights_give_plain_cross_entropy, check_scaling_all_weights_changes_nothing,
               check_loss_is_the_weighted_mean_of_example_losses]


@pytest.mark.parametrize("check", LOSS_CHECKS, ids=lambda check: check.__name__)
def test_sample_weighted_cross_entropy_passes_its_checks(check):
    check(sample_weighted_cross_entropy)


@pytest.mark.broken
def test_the_checks_catch_sample_weights_passed_as_class_weights():
    with pytest.raises(AssertionError):
        check_loss_is_the_weighted_mean_of_example_losses(broken.cross_entropy_with_sample_weights_as_class_weights)
    # ...while the two weaker checks alone would let it through: unit and uniformly scaled weights look right.
    check_unit_weights_give_plain_cross_entropy(broken.cross_entropy_with_sample_weights_as_class_weights)
    check_scaling_all_weights_changes_nothing(broken.cross_entropy_with_sample_weights_as_class_weights)


@given(problems, st.booleans())
@settings(max_examples=8)
def test_sample_weighted_gradient_matches_finite_differences_with_class_weights_and_padding(problem, pad):
    logits, target, weights = draw_problem(*problem)
    if pad and len(target) > 1:  # (all positions ignored is a separate convention: the mean is 0)
        target[0] = -100  # an ignored position: no loss, no gradient, no share of the normaliser
    class_weight = np.linspace(0.5, 2.0, logits.shape[1])
    gradcheck(lambda z: F.cross_entropy(z, target, weight=class_weight, sample_weight=weights), logits)
    kept = target != -100
    per_example = F.cross_entropy(logits, target, weight=class_weight, reduction="none").data
    expected = (weights * per_example).sum() / (weights[kept] * class_weight[target[kept]]).sum()
    assert F.cross_entropy(logits, target, weight=class_weight, sample_weight=weights).item() == \
        pytest.approx(expected, rel=1e-10)


def test_weights_in_the_wrong_argument_raise_errors_that_name_m57():
    logits, target, weights = draw_problem(0, 6, 3)
    with pytest.raises(ValueError, match=r"sample_weight=.*M57"):
        F.cross_entropy(logits, target, weight=weights)
    with pytest.raises(ValueError, match=r"sample_weight must have the targets' shape \(6,\).*M57"):
        F.cross_entropy(logits, target, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        F.cross_entropy(logits, target, sample_weight=-weights)


# ---------------------------------------------------------------------------- metrics
def test_metrics_match_hand_counts():
    # group 0: labels 1 1 0 0, predictions 1 0 1 0 -> selection 2/4, TPR 1/2, FPR 1/2
    # group 1: labels 1 0 0,   predictions 1 1 1   -> selection 3/3, TPR 1/1, FPR 2/2
    group = np.array([0, 0, 0, 0, 1, 1, 1])
    labels = np.array([1, 1, 0, 0, 1, 0, 0])
    predictions = np.array([1, 0, 1, 0, 1, 1, 1])
    assert fairness.selection_rates(predictions, group) == {0: 0.5, 1: 1.0}
    assert fairness.true_positive_rates(predictions, labels, group) == {0: 0.5, 1: 1.0}
    assert fairness.false_positive_rates(predictions, labels, group) == {0: 0.5, 1: 1.0}
    report = fairness.fairness_report(predictions, labels, group)
    assert report == {"accuracy": 3 / 7, "demographic_parity_difference": 0.5,
                      "equal_opportunity_difference": 0.5, "equalized_odds_difference": 0.5}
    # Predicting the labels exactly: equal TPR (1) and FPR (0), whatever the base rates.
    assert fairness.equalized_odds_difference(labels, labels, group) == 0.0
    assert fairness.demographic_parity_difference(labels, group) == pytest.approx(0.5 - 1 / 3)


def grouped_labels(seed: int, num_examples: int, num_groups: int):
    """Random labels and groups in which every (group, label) cell is occupied."""
    rng = np.random.default_rng(seed)
    cells = np.array([(g, y) for g in range(num_groups) for y in (0, 1)])
    extra = cells[rng.integers(0, len(cells), num_examples)]
    group, labels = np.concatenate([cells, extra]).T
    return labels, group


@given(st.integers(0, 2**31), st.integers(0, 60), st.integers(2, 4))
def test_reweighing_makes_the_group_independent_of_the_label(seed, num_examples, num_groups):
    labels, group = grouped_labels(seed, num_examples, num_groups)
    weights = fairness.reweighing_weights(labels, group)
    for rate in fairness.weighted_positive_rates(labels, group, weights).values():
        assert rate == pytest.approx(labels.mean(), rel=1e-12)  # P_w(y=1 | g) = P(y=1) for every group
    assert weights.sum() == pytest.approx(len(labels))  # ...and each group keeps its share of the data
    for g in range(num_groups):
        assert weights[group == g].sum() == pytest.approx((group == g).sum())


def test_mitigation_helpers_behave():
    labels, group = grouped_labels(0, 4000, 2)
    weights = fairness.reweighing_weights(labels, group)
    drawn = fairness.resample_indices(np.where(np.arange(len(labels)) % 2 == 0, weights, 0.0), seed=1)
    assert (drawn % 2 == 0).all() and len(drawn) == len(labels)  # weight 0: never drawn
    drawn = fairness.resample_indices(weights, num_samples=20000, seed=1)
    rates = fairness.selection_rates(labels[drawn], group[drawn])
    assert abs(rates[0] - rates[1]) < 0.05  # independence holds in expectation only
    assert fairness.balanced_class_weights(np.array([0, 0, 0, 1])).tolist() == [4 / 6, 2.0]
    scores = np.random.default_rng(2).random(1000)
    thresholds = fairness.per_group_thresholds(scores, group[:1000], 0.3)
    decisions = fairness.apply_group_thresholds(scores, group[:1000], thresholds)
    for rate in fairness.selection_rates(decisions, group[:1000]).values():
        assert rate == pytest.approx(0.3, abs=0.01)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="no example has group 1 and label 1"):
        fairness.reweighing_weights(np.array([0, 1, 0]), np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="group 1 has no positive labels"):
        fairness.true_positive_rates(np.array([1, 0]), np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="0/1 decisions"):
        fairness.selection_rates(np.array([0.2, 0.9]), np.array([0, 1]))
    with pytest.raises(ValueError, match="one entry per example"):
        fairness.selection_rates(np.array([0, 1, 1]), np.array([0, 1]))


# ---------------------------------------------------------------------------- the experiment
@pytest.fixture(scope="module")
def experiment():
    return fairness_mitigations(fast=True)


def test_planted_bias_is_planted(experiment):
    assert experiment["minority_fraction"] == pytest.approx(0.1, abs=0.02)
    rates = experiment["train_positive_rate_by_group"]
    assert rates[0] - rates[1] > 0.2


def test_reweighing_and_resampling_close_the_gap_and_class_weights_do_not(experiment):
    methods = experiment["methods"]
    plain_gap = methods["plain"]["demographic_parity_difference"]
    for name in ("reweighing", "resampling"):
        gap = methods[name]["demographic_parity_difference"]
        assert gap < 0.8 * plain_gap
        assert gap < methods["class_weights"]["demographic_parity_difference"]
        assert methods[name]["equal_opportunity_difference"] < methods["plain"]["equal_opportunity_difference"]
    assert methods["group_thresholds"]["demographic_parity_difference"] < 0.5 * plain_gap
    # The trade-off: equalising selection rates costs accuracy against the (biased) held-out labels.
    assert methods["group_thresholds"]["accuracy"] < methods["plain"]["accuracy"]
    for report in methods.values():
        assert 0.6 < report["accuracy"] <= methods["plain"]["accuracy"] + 0.02
