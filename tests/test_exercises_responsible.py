"""The chapter 14 exercises (Huber's loss and gradient, an FGSM step, the fairness gaps, DP-SGD's clipping and noise,
the RDP of one sampled-Gaussian step, a banned-n-gram processor): the references agree with the library's own
implementations, other correct styles pass, and classic wrong answers are rejected by the property that names their
bug, with a message that says why. The wrong answers are real functions, named after the bug (spot-the-bug
material). Several are right on one slice of the inputs (a constant delta is right at delta = 2, noise without sigma
at sigma = 1, dividing by the batch when it equals the expected one): the graders draw across slices so that none
of them passes.
"""

import math

import numpy as np
import pytest

import tinygrad_llm.exercises as ex

pytestmark = [pytest.mark.responsible, pytest.mark.exercises]

RESPONSIBLE_EXERCISES = ["huber_loss_and_gradient", "fgsm_step", "fairness_gaps", "clip_and_noise",
                         "gaussian_rdp_one_step", "banned_ngram_processor"]

# ---- huber_loss_and_gradient -----------------------------------------------------------------------------


def huber_constant_delta_outside(errors, delta):
    inside = np.abs(errors) <= delta
    return np.where(inside, 0.5 * errors**2, delta), np.where(inside, errors, 0.0)


def huber_flat_outside_like_a_truncated_quadratic(errors, delta):
    clipped = np.clip(errors, -delta, delta)
    return 0.5 * clipped**2, np.where(np.abs(errors) <= delta, errors, 0.0)


def huber_linear_part_without_minus_half_delta(errors, delta):
    inside = np.abs(errors) <= delta
    return np.where(inside, 0.5 * errors**2, delta * np.abs(errors)), np.clip(errors, -delta, delta)


def huber_gradient_is_the_error(errors, delta):
    inside = np.abs(errors) <= delta
    return np.where(inside, 0.5 * errors**2, delta * (np.abs(errors) - 0.5 * delta)), errors.copy()


def huber_gradient_without_the_sign(errors, delta):
    inside = np.abs(errors) <= delta
    loss = np.where(inside, 0.5 * errors**2, delta * (np.abs(errors) - 0.5 * delta))
    return loss, np.where(inside, errors, delta)


# ---- fgsm_step -------------------------------------------------------------------------------------------


def fgsm_along_the_gradient_not_its_sign(x, gradient, epsilon, low, high):
    return np.clip(x + epsilon * gradient, low, high)


def fgsm_descends_the_loss(x, gradient, epsilon, low, high):
    return np.clip(x - epsilon * np.sign(gradient), low, high)


def fgsm_without_the_valid_range(x, gradient, epsilon, low, high):
    return x + epsilon * np.sign(gradient)


# ---- fairness_gaps ---------------------------------------------------------------------------------------

def _rates(predictions, labels, group):
    ids = np.unique(group)
    return ([predictions[group == g].mean() for g in ids],
            [predictions[(group == g) & (labels == 1)].mean() for g in ids])


def fairness_first_group_minus_second(predictions, labels, group):
    selection, tpr = _rates(predictions, labels, group)
    return float(selection[0] - selection[1]), float(tpr[0] - tpr[1])


def fairness_groups_zero_and_one_only(predictions, labels, group):
    selection = [predictions[group == g].sum() / np.sum(group == g) for g in (0, 1)]
    tpr = [predictions[(group == g) & (labels == 1)].sum() / np.sum((group == g) & (labels == 1)) for g in (0, 1)]
    return float(abs(selection[0] - selection[1])), float(abs(tpr[0] - tpr[1]))


def fairness_selected_counted_over_everyone(predictions, labels, group):
    selection = [predictions[group == g].sum() / len(predictions) for g in np.unique(group)]
    _, tpr = _rates(predictions, labels, group)
    return float(max(selection) - min(selection)), float(max(tpr) - min(tpr))


def fairness_tpr_over_every_member(predictions, labels, group):
    selection, _ = _rates(predictions, labels, group)
    gap = float(max(selection) - min(selection))
    return gap, gap


# ---- clip_and_noise --------------------------------------------------------------------------------------

def _clip_rows(gradients, max_norm):
    norms = np.linalg.norm(gradients, axis=1, keepdims=True)
    return gradients * np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))


def dp_clips_the_summed_gradient(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    total = per_example_gradients.sum(axis=0)
    total = total * min(1.0, max_norm / max(np.linalg.norm(total), 1e-12))
    noise = rng.normal(0.0, noise_multiplier * max_norm, total.shape)
    return (total + noise) / expected_batch_size


def dp_clips_each_coordinate(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    clipped = np.clip(per_example_gradients, -max_norm, max_norm)
    noise = rng.normal(0.0, noise_multiplier * max_norm, clipped.shape[1])
    return (clipped.sum(axis=0) + noise) / expected_batch_size


def dp_divides_by_the_actual_batch(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    clipped = _clip_rows(per_example_gradients, max_norm)
    return (clipped.sum(axis=0) + rng.normal(0.0, noise_multiplier * max_norm, clipped.shape[1])) / len(clipped)


def dp_noise_without_sigma(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    clipped = _clip_rows(per_example_gradients, max_norm)
    return (clipped.sum(axis=0) + rng.normal(0.0, max_norm, clipped.shape[1])) / expected_batch_size


def dp_noise_added_after_averaging(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    clipped = _clip_rows(per_example_gradients, max_norm)
    return clipped.sum(axis=0) / expected_batch_size + rng.normal(0.0, noise_multiplier * max_norm, clipped.shape[1])


def dp_noise_from_the_global_generator(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    clipped = _clip_rows(per_example_gradients, max_norm)
    noise = np.random.normal(0.0, noise_multiplier * max_norm, clipped.shape[1])
    return (clipped.sum(axis=0) + noise) / expected_batch_size


def dp_uniform_noise_of_the_right_std(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
    clipped = _clip_rows(per_example_gradients, max_norm)
    half_width = math.sqrt(3) * noise_multiplier * max_norm  # the std of U(-a, a) is a / sqrt(3)
    return (clipped.sum(axis=0) + rng.uniform(-half_width, half_width, clipped.shape[1])) / expected_batch_size


# ---- gaussian_rdp_one_step -------------------------------------------------------------------------------

def _log_terms(sample_rate, noise_multiplier, order, exponent_scale):
    k = np.arange(order + 1)
    log_binomial = np.array([math.lgamma(order + 1) - math.lgamma(j + 1) - math.lgamma(order - j + 1) for j in k])
    with np.errstate(divide="ignore", invalid="ignore"):
        return log_binomial + (order - k) * np.log1p(-sample_rate) + k * np.log(sample_rate) + (k * k - k) / (
            2 * exponent_scale)


def _log_sum_exp(terms):
    largest = terms.max()
    return largest + np.log(np.exp(terms - largest).sum())


def rdp_sigma_not_squared(sample_rate, noise_multiplier, order):
    return float(_log_sum_exp(_log_terms(sample_rate, noise_multiplier, order, noise_multiplier)) / (order - 1))


def rdp_sigma_not_squared_but_right_at_q_one(sample_rate, noise_multiplier, order):
    if sample_rate == 1:
        return order / (2 * noise_multiplier**2)
    return rdp_sigma_not_squared(sample_rate, noise_multiplier, order)


def rdp_without_dividing_by_order_minus_one(sample_rate, noise_multiplier, order):
    if sample_rate == 1:
        return order * (order - 1) / (2 * noise_multiplier**2)
    return float(_log_sum_exp(_log_terms(sample_rate, noise_multiplier, order, noise_multiplier**2)))


def rdp_summing_the_terms_directly(sample_rate, noise_multiplier, order):
    k = np.arange(order + 1)
    binomial = np.array([math.comb(order, j) for j in k], dtype=np.float64)
    exponentials = np.exp((k * k - k) / (2 * noise_multiplier**2))  # overflows to inf for large orders
    terms = binomial * (1 - sample_rate) ** (order - k) * sample_rate**k * exponentials
    return float(np.log(terms.sum()) / (order - 1))


# ---- banned_ngram_processor ------------------------------------------------------------------------------

def ban_the_last_token_everywhere(ids, logits, banned_ngrams):
    logits = logits.copy()
    for ngram in banned_ngrams:
        logits[:, ngram[-1]] = -np.inf
    return logits


def ban_the_first_token_of_the_ngram(ids, logits, banned_ngrams):
    logits = logits.copy()
    for *prefix, last in banned_ngrams:
        if len(prefix) <= ids.shape[1]:
            rows = np.all(ids[:, ids.shape[1] - len(prefix):] == np.array(prefix, dtype=ids.dtype), axis=1)
            logits[rows, ([*prefix, last])[0]] = -np.inf
    return logits


def ban_when_the_prefix_appears_anywhere(ids, logits, banned_ngrams):
    logits = logits.copy()
    for *prefix, last in banned_ngrams:
        for row, text in enumerate(ids.tolist()):
            if any(text[start:start + len(prefix)] == prefix for start in range(len(text) - len(prefix) + 1)):
                logits[row, last] = -np.inf
    return logits


def ban_with_a_negative_slice(ids, logits, banned_ngrams):
    logits = logits.copy()
    for *prefix, last in banned_ngrams:
        if len(prefix) <= ids.shape[1]:
            logits[np.all(ids[:, -len(prefix):] == np.array(prefix, dtype=ids.dtype), axis=1), last] = -np.inf
    return logits


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("huber_loss_and_gradient", huber_constant_delta_outside, "continuous at |e| = delta"),
    ("huber_loss_and_gradient", huber_linear_part_without_minus_half_delta, "continuous at |e| = delta"),
    ("huber_loss_and_gradient", huber_flat_outside_like_a_truncated_quadratic, "grows linearly"),
    ("huber_loss_and_gradient", huber_gradient_is_the_error, "clip(e, -delta, delta)"),
    ("huber_loss_and_gradient", huber_gradient_without_the_sign, "clip(e, -delta, delta)"),
    ("fgsm_step", fgsm_along_the_gradient_not_its_sign, "moves by exactly epsilon"),
    ("fgsm_step", fgsm_descends_the_loss, "ascent, not descent"),
    ("fgsm_step", fgsm_without_the_valid_range, "valid range"),
    ("fairness_gaps", fairness_first_group_minus_second, "however the groups are numbered"),
    ("fairness_gaps", fairness_groups_zero_and_one_only, "however the groups are numbered"),
    ("fairness_gaps", fairness_selected_counted_over_everyone, "rates, not counts"),
    ("fairness_gaps", fairness_tpr_over_every_member, "truly positive only"),
    ("clip_and_noise", dp_clips_the_summed_gradient, "clipped rows"),
    ("clip_and_noise", dp_clips_each_coordinate, "clipped rows"),
    ("clip_and_noise", dp_divides_by_the_actual_batch, "EXPECTED batch size"),
    ("clip_and_noise", dp_noise_from_the_global_generator, "same seed"),
    ("clip_and_noise", dp_noise_without_sigma, "sigma = 0 adds no noise"),
    ("clip_and_noise", dp_noise_added_after_averaging, "the noise is N(0"),
    ("clip_and_noise", dp_uniform_noise_of_the_right_std, "the noise is N(0"),
    ("gaussian_rdp_one_step", rdp_sigma_not_squared, "plain Gaussian mechanism"),
    ("gaussian_rdp_one_step", rdp_without_dividing_by_order_minus_one, "plain Gaussian mechanism"),
    ("gaussian_rdp_one_step", rdp_sigma_not_squared_but_right_at_q_one, "at order 2"),
    ("gaussian_rdp_one_step", rdp_summing_the_terms_directly, "orders 128 to 256"),
    ("banned_ngram_processor", ban_the_last_token_everywhere, "only after its prefix"),
    ("banned_ngram_processor", ban_when_the_prefix_appears_anywhere, "only after its prefix"),
    ("banned_ngram_processor", ban_the_first_token_of_the_ngram, "completing token gets -inf"),
    ("banned_ngram_processor", ban_with_a_negative_slice, "1-gram"),
]

# What a few failure messages must say: the fix, not only the symptom.
TEACHES_THE_FIX = {huber_linear_part_without_minus_half_delta: "subtract delta^2 / 2", fgsm_descends_the_loss: "UP",
                   fairness_groups_zero_and_one_only: "any ints", dp_clips_the_summed_gradient: "not any one example",
                   rdp_summing_the_terms_directly: "log-sum-exp", ban_the_last_token_everywhere: "LAST n - 1 tokens"}


def test_the_responsible_exercises_are_registered_in_teaching_order():
    names = [name for name, _ in ex.list_exercises()]
    assert [name for name in names if name in RESPONSIBLE_EXERCISES] == RESPONSIBLE_EXERCISES
    assert names.index("expected_improvement") < names.index("huber_loss_and_gradient")  # after chapter 13
    assert names.index("banned_ngram_processor") < names.index("online_softmax")  # before chapter 15


def test_every_responsible_exercise_has_at_least_two_wrong_answers():
    for name in RESPONSIBLE_EXERCISES:
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# The reference, starter and wrong-answer checks run in tests/test_exercises.py over every registered exercise.


def test_failure_messages_teach_the_fix():
    exercise_of = {wrong: name for name, wrong, _ in WRONG_ANSWERS}
    for wrong, phrase in TEACHES_THE_FIX.items():
        assert phrase in str(ex.get_exercise(exercise_of[wrong]).grade(wrong)), wrong.__name__


def test_a_wrong_answer_right_on_one_slice_is_still_caught():
    """The slice a bug hides in: a constant delta outside equals delta^2 / 2 at delta = 2, and noise without sigma is
    right at sigma = 1. Each passes there, and the graders draw beyond that slice."""
    reference = ex.get_exercise("huber_loss_and_gradient").reference
    just_beyond = np.array([2.0 + 1e-9])
    np.testing.assert_allclose(huber_constant_delta_outside(just_beyond, 2.0)[0], reference(just_beyond, 2.0)[0],
                               rtol=1e-8)
    gradients = np.ones((2, 3))
    at_sigma_one = [function(gradients, 1.0, 1.0, 2.0, np.random.default_rng(0))
                    for function in (dp_noise_without_sigma, ex.get_exercise("clip_and_noise").reference)]
    np.testing.assert_array_equal(*at_sigma_one)
    assert not ex.get_exercise("huber_loss_and_gradient").grade(huber_constant_delta_outside)
    assert not ex.get_exercise("clip_and_noise").grade(dp_noise_without_sigma)


# ---- the references agree with the library ---------------------------------------------------------------

def test_huber_reference_equals_the_library_loss_and_its_autograd_gradient():
    from tinygrad_llm.nn import functional as F
    from tinygrad_llm.tensor import Tensor
    reference = ex.get_exercise("huber_loss_and_gradient").reference
    rng = np.random.default_rng(0)
    for delta in (0.1, 1.0, 7.0):
        prediction, target = rng.normal(0, 3 * delta, 50), rng.normal(0, delta, 50)
        tensor = Tensor(prediction, requires_grad=True)
        F.huber_loss(tensor, target, delta, reduction="sum").backward()
        loss, gradient = reference(prediction - target, delta)
        np.testing.assert_allclose(loss, F.huber_loss(Tensor(prediction), target, delta, reduction="none").data,
                                   rtol=1e-12)
        np.testing.assert_allclose(gradient, tensor.grad, rtol=1e-12)


def test_fgsm_reference_equals_the_library_attack_on_a_classifier():
    from tinygrad_llm.nn.layers import Linear
    from tinygrad_llm.responsible.adversarial import fgsm, loss_and_input_gradient
    reference = ex.get_exercise("fgsm_step").reference
    model = Linear(4, 3)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (16, 4)), rng.integers(0, 3, 16)
    _, gradient = loss_and_input_gradient(model, x, y)
    for epsilon in (0.05, 0.3):
        attacked = fgsm(model, x, y, epsilon, bounds=(0.0, 1.0)).inputs
        np.testing.assert_allclose(reference(x, gradient, epsilon, 0.0, 1.0), attacked, rtol=0, atol=1e-15)


def test_fairness_reference_equals_the_library_metrics():
    from tinygrad_llm.responsible.fairness import demographic_parity_difference, equal_opportunity_difference
    reference = ex.get_exercise("fairness_gaps").reference
    rng = np.random.default_rng(0)
    for groups in ((0, 1), (2, 5, 9)):
        group, labels, predictions = rng.choice(groups, 300), rng.integers(0, 2, 300), rng.integers(0, 2, 300)
        assert reference(predictions, labels, group) == pytest.approx(
            (demographic_parity_difference(predictions, group),
             equal_opportunity_difference(predictions, labels, group)), abs=1e-15)


def test_clip_and_noise_reference_equals_the_library_privatize_draw_for_draw():
    from tinygrad_llm.responsible.dp_sgd import privatize
    reference = ex.get_exercise("clip_and_noise").reference
    gradients = np.random.default_rng(0).normal(0, 2, (8, 5))
    for max_norm, sigma, expected in ((1.0, 0.0, 8.0), (0.5, 1.3, 6.4), (10.0, 2.0, 12.0)):
        library = privatize({"w": gradients}, max_norm, sigma, expected, np.random.default_rng(1))["w"]
        np.testing.assert_allclose(reference(gradients, max_norm, sigma, expected, np.random.default_rng(1)), library,
                                   rtol=1e-12, atol=1e-15)


def test_rdp_reference_equals_the_library_accountant_across_scales():
    from tinygrad_llm.responsible.rdp_accountant import sampled_gaussian_rdp
    reference = ex.get_exercise("gaussian_rdp_one_step").reference
    for q in (0.001, 0.01, 0.3, 1.0):
        for sigma in (0.5, 1.1, 4.0, 30.0):
            for order in (2, 3, 17, 64, 256):
                assert reference(q, sigma, order) == pytest.approx(sampled_gaussian_rdp(q, sigma, order), rel=1e-9,
                                                                   abs=1e-15), (q, sigma, order)


def test_banned_ngram_reference_equals_the_library_processor():
    from tinygrad_llm.responsible.restricted_decoding import ban_ngrams
    reference = ex.get_exercise("banned_ngram_processor").reference
    rng = np.random.default_rng(0)
    banned = [[1, 2], [3], [0, 0, 2]]
    for length in (0, 1, 2, 6):
        ids, logits = rng.integers(0, 4, (20, length)), rng.normal(size=(20, 4))
        np.testing.assert_array_equal(reference(ids, logits, banned), ban_ngrams(banned)(ids, logits))


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """Huber as the library writes it (through min(|e|, delta)), FGSM by clipping the step, the gaps with
    bincount, DP-SGD with a loop over rows and standard normals, the RDP in Python floats with its own log-sum-exp,
    and the n-gram ban as a loop over rows comparing lists."""

    def huber_through_min(errors, delta):
        absolute = np.abs(errors)
        quadratic = np.minimum(absolute, delta)
        return 0.5 * quadratic**2 + delta * (absolute - quadratic), np.where(absolute <= delta, errors,
                                                                             delta * np.sign(errors))

    def fgsm_by_clipping_the_step(x, gradient, epsilon, low, high):
        return x + np.clip(epsilon * np.sign(gradient), low - x, high - x)

    def gaps_by_bincount(predictions, labels, group):
        _, index = np.unique(group, return_inverse=True)
        selection = np.bincount(index, weights=predictions) / np.bincount(index)
        positives = labels == 1
        tpr = np.bincount(index[positives], weights=predictions[positives]) / np.bincount(index[positives])
        return float(np.ptp(selection)), float(np.ptp(tpr))

    def clip_and_noise_row_by_row(per_example_gradients, max_norm, noise_multiplier, expected_batch_size, rng):
        total = np.zeros(per_example_gradients.shape[1])
        for row in per_example_gradients:
            norm = np.sqrt(row @ row)
            total += row if norm <= max_norm else row * (max_norm / norm)
        noise = noise_multiplier * max_norm * rng.standard_normal(per_example_gradients.shape[1])
        return (total + noise) / expected_batch_size

    def rdp_in_python_floats(sample_rate, noise_multiplier, order):
        log_terms = [math.lgamma(order + 1) - math.lgamma(k + 1) - math.lgamma(order - k + 1)
                     + (order - k) * (math.log(1 - sample_rate) if k < order else 0.0) + k * math.log(sample_rate)
                     + k * (k - 1) / (2 * noise_multiplier**2)
                     for k in range(order + 1) if k == order or sample_rate < 1]  # at q = 1 only k = order is left
        largest = max(log_terms)
        return (largest + math.log(sum(math.exp(term - largest) for term in log_terms))) / (order - 1)

    def ban_row_by_row(ids, logits, banned_ngrams):
        out = np.array(logits, dtype=np.float64)
        for row, text in enumerate(ids.tolist()):
            for ngram in banned_ngrams:
                prefix = ngram[:-1]
                if len(text) >= len(prefix) and (not prefix or text[-len(prefix):] == prefix):
                    out[row, ngram[-1]] = float("-inf")
        return out

    for name, function in (("huber_loss_and_gradient", huber_through_min), ("fgsm_step", fgsm_by_clipping_the_step),
                           ("fairness_gaps", gaps_by_bincount), ("clip_and_noise", clip_and_noise_row_by_row),
                           ("gaussian_rdp_one_step", rdp_in_python_floats), ("banned_ngram_processor", ban_row_by_row)):
        result = ex.get_exercise(name).grade(function)
        assert result, f"{function.__name__}: {result}"
