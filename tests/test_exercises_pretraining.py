"""The chapter 11 exercises (masked-LM corruption, the LoRA forward pass and merge, the DPO loss, TransE's score and
loss, reservoir sampling, multimodal fusion): the references agree with the library's own implementations, other
correct styles pass, and classic wrong answers are rejected by the property that names their bug, with a message that
says why. The wrong answers are real functions, named after the bug (spot-the-bug material).
"""

import math

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.pretraining import OnePassStream, interaction_contrast, reservoir_chi_square
from tinygrad_llm.tensor import Tensor

pytestmark = [pytest.mark.pretraining, pytest.mark.exercises]

PRETRAINING_EXERCISES = ["mlm_mask", "lora_forward_and_merge", "dpo_loss", "transe_scores_and_loss",
                         "reservoir_sample", "concat_mlp_fusion"]

# ---- mlm_mask --------------------------------------------------------------------------------------------


def _mlm(ids, padding, mask_id, select_u, action_u, random_ids, *, skip_padding=True, split=True, score_all=False):
    """The corruption with a switch per classic bug; each wrong answer below flips one."""
    selected = (select_u < 0.15) & (~padding if skip_padding else True)
    randomised = selected & (action_u >= 0.8) & (action_u < 0.9) if split else np.zeros_like(selected)
    masked = selected & (action_u < 0.8) if split else selected
    inputs = np.where(masked, mask_id, np.where(randomised, random_ids, ids))
    return inputs, ids.copy() if score_all else np.where(selected, ids, -100)


def mlm_targets_on_every_position(ids, padding, mask_id, select_u, action_u, random_ids):
    return _mlm(ids, padding, mask_id, select_u, action_u, random_ids, score_all=True)


def mlm_every_selected_becomes_mask(ids, padding, mask_id, select_u, action_u, random_ids):
    return _mlm(ids, padding, mask_id, select_u, action_u, random_ids, split=False)


def mlm_selects_padding(ids, padding, mask_id, select_u, action_u, random_ids):
    return _mlm(ids, padding, mask_id, select_u, action_u, random_ids, skip_padding=False)


# ---- lora_forward_and_merge ------------------------------------------------------------------------------

def lora_without_alpha_over_r(x, W, b, A, B, alpha):
    return x @ W.T + b + (x @ A.T) @ B.T, W + B @ A


def lora_merge_as_A_transpose_B_transpose(x, W, b, A, B, alpha):
    scale = alpha / A.shape[0]
    return x @ W.T + b + scale * (x @ A.T) @ B.T, W + scale * (A.T @ B.T)


def lora_merged_without_the_scale(x, W, b, A, B, alpha):
    scale = alpha / A.shape[0]
    return x @ W.T + b + scale * (x @ A.T) @ B.T, W + B @ A


# ---- dpo_loss --------------------------------------------------------------------------------------------

def dpo_reference_signs_swapped(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    margin = beta * ((policy_chosen + reference_chosen) - (policy_rejected + reference_rejected))
    return float(np.mean(np.logaddexp(0.0, -margin)))


def dpo_without_beta(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return float(np.mean(np.logaddexp(0.0, -margin)))


def dpo_naive_log_sigmoid(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return float(np.mean(-np.log(1 / (1 + np.exp(-margin)))))


# ---- transe_scores_and_loss ------------------------------------------------------------------------------

def _transe(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm, *, relation_sign=1.0,
            hinge=True, square_root=True):
    def score(h, t):
        difference = h + relation_sign * relations - t
        if norm == 1:
            return -np.abs(difference).sum(-1)
        return -np.sqrt((difference ** 2).sum(-1)) if square_root else -(difference ** 2).sum(-1)

    true_scores, corrupted_scores = score(heads, tails), score(corrupted_heads, corrupted_tails)
    terms = margin - true_scores + corrupted_scores
    return true_scores, corrupted_scores, float(np.mean(np.maximum(terms, 0.0) if hinge else terms))


def transe_h_minus_r_minus_t(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm):
    return _transe(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm, relation_sign=-1.0)


def transe_loss_without_the_hinge(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm):
    return _transe(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm, hinge=False)


def transe_l2_without_the_square_root(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm):
    return _transe(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm, square_root=False)


# ---- reservoir_sample ------------------------------------------------------------------------------------

def _reservoir(stream, capacity, rng, enters):
    """Fill, then let item number n (from 1) replace slot `enters(n, capacity, rng)` when that is not None."""
    sample = []
    for seen, item in enumerate(stream, start=1):
        if len(sample) < capacity:
            sample.append(item)
            continue
        slot = enters(seen, capacity, rng)
        if slot is not None:
            sample[slot] = item
    return sample


def reservoir_replaces_at_every_item(stream, capacity, rng):
    return _reservoir(stream, capacity, rng, lambda seen, capacity, rng: int(rng.integers(capacity)))


def reservoir_keeps_the_first_items(stream, capacity, rng):
    return _reservoir(stream, capacity, rng, lambda seen, capacity, rng: None)


def reservoir_counts_from_zero(stream, capacity, rng):
    def enters(seen, capacity, rng):
        slot = int(rng.integers(seen - 1))  # the 0-based index: capacity / (n - 1), off by one
        return slot if slot < capacity else None

    return _reservoir(stream, capacity, rng, enters)


# ---- concat_mlp_fusion -----------------------------------------------------------------------------------

def fusion_without_a_nonlinearity(text, image, W1, b1, W2, b2):
    return (np.concatenate([text, image], axis=1) @ W1.T + b1) @ W2.T + b2


def fusion_relu_on_each_modality_first(text, image, W1, b1, W2, b2):
    features = np.concatenate([np.maximum(text, 0.0), np.maximum(image, 0.0)], axis=1)
    return (features @ W1.T + b1) @ W2.T + b2


def fusion_late_sum_of_per_modality_logits(text, image, W1, b1, W2, b2):
    text_columns = text.shape[1]
    text_hidden = np.maximum(text @ W1[:, :text_columns].T + b1 / 2, 0.0)
    image_hidden = np.maximum(image @ W1[:, text_columns:].T + b1 / 2, 0.0)
    return text_hidden @ W2.T + image_hidden @ W2.T + b2



# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("mlm_mask", mlm_targets_on_every_position, "only the selected positions"),
    ("mlm_mask", mlm_every_selected_becomes_mask, "80/10/10"),
    ("mlm_mask", mlm_selects_padding, "padding is never selected"),
    ("lora_forward_and_merge", lora_without_alpha_over_r, "scaled by alpha / r"),
    ("lora_forward_and_merge", lora_merge_as_A_transpose_B_transpose, "shapes"),
    ("lora_forward_and_merge", lora_merged_without_the_scale, "merging keeps the function"),
    ("dpo_loss", dpo_reference_signs_swapped, "ln 2"),
    ("dpo_loss", dpo_without_beta, "beta multiplies"),
    ("dpo_loss", dpo_naive_log_sigmoid, "large margins"),
    ("transe_scores_and_loss", transe_h_minus_r_minus_t, "exact translation"),
    ("transe_scores_and_loss", transe_loss_without_the_hinge, "max(0"),
    ("transe_scores_and_loss", transe_l2_without_the_square_root, "Euclidean length"),
    ("reservoir_sample", reservoir_replaces_at_every_item, "same probability"),
    ("reservoir_sample", reservoir_keeps_the_first_items, "same probability"),
    ("reservoir_sample", reservoir_counts_from_zero, "same probability"),
    ("concat_mlp_fusion", fusion_without_a_nonlinearity, "M51"),
    ("concat_mlp_fusion", fusion_relu_on_each_modality_first, "M51"),
    ("concat_mlp_fusion", fusion_late_sum_of_per_modality_logits, "M51"),
]


def test_the_pretraining_exercises_are_registered_in_teaching_order():
    names = [name for name, _ in ex.list_exercises()]
    assert [name for name in names if name in PRETRAINING_EXERCISES] == PRETRAINING_EXERCISES
    assert names.index("float16_spacing") < names.index("mlm_mask")  # after chapter 10
    assert names.index("concat_mlp_fusion") < names.index("online_softmax")  # before chapter 15


def test_every_pretraining_exercise_has_at_least_two_wrong_answers():
    for name in PRETRAINING_EXERCISES:
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# The reference, starter and wrong-answer checks run in tests/test_exercises.py over every registered exercise.


def test_failure_messages_teach_the_fix():
    """The 'Why:' line of a few classic bugs names the concept, not just the numbers."""
    expectations = [("mlm_mask", mlm_targets_on_every_position, "copying"),
                    ("dpo_loss", dpo_naive_log_sigmoid, "nan or inf"),
                    ("transe_scores_and_loss", transe_h_minus_r_minus_t, "h + r = t"),
                    ("reservoir_sample", reservoir_keeps_the_first_items, "capacity / n"),
                    ("concat_mlp_fusion", fusion_without_a_nonlinearity, "g(text) + k(image)")]
    for name, wrong, phrase in expectations:
        assert phrase in str(ex.get_exercise(name).grade(wrong)), name


# ---- the references agree with the library ---------------------------------------------------------------

def test_mlm_reference_equals_the_library_masking_given_the_same_random_numbers():
    """mask_tokens draws the selection uniforms, then the action uniforms, then one replacement per randomised
    position; feeding the same numbers to the exercise reproduces its inputs and targets exactly."""
    from tinygrad_llm.transfer.masking import mask_tokens
    mlm_mask = ex.get_exercise("mlm_mask").reference
    vocab_size, mask_id, shape = 30, 29, (4, 64)
    for seed in range(3):
        ids = np.random.default_rng(100 + seed).integers(0, mask_id, shape)
        padding = np.zeros(shape, dtype=bool)
        padding[:, 50:] = True
        library = mask_tokens(ids, mask_id, vocab_size, np.random.default_rng(seed), padding_mask=padding)
        rng = np.random.default_rng(seed)
        select_u, action_u = rng.random(shape), rng.random(shape)
        randomised = ~padding & (select_u < 0.15) & (action_u >= 0.8) & (action_u < 0.9)
        random_ids = np.zeros(shape, dtype=np.int64)
        random_ids[randomised] = rng.choice(np.arange(mask_id), size=int(randomised.sum()))
        inputs, targets = mlm_mask(ids, padding, mask_id, select_u, action_u, random_ids)
        np.testing.assert_array_equal(inputs, library.inputs)
        np.testing.assert_array_equal(targets, library.targets)


def test_lora_reference_equals_the_library_layer_before_and_after_merging():
    from tinygrad_llm.nn.layers import Linear
    from tinygrad_llm.transfer.lora import LoRALinear
    rng = np.random.default_rng(0)
    layer = LoRALinear(Linear(6, 4), rank=2, alpha=8.0)
    layer.base.weight.data[...] = rng.normal(size=(4, 6))
    layer.base.bias.data[...] = rng.normal(size=4)
    layer.lora_B.data[...] = rng.normal(size=(4, 2))
    x = rng.normal(size=(3, 6))
    arrays = [np.array(p.data, dtype=np.float64) for p in (layer.base.weight, layer.base.bias, layer.lora_A,
                                                            layer.lora_B)]
    y, merged = ex.get_exercise("lora_forward_and_merge").reference(x, *arrays, 8.0)
    tolerance = 1e-4 if layer.base.weight.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(layer(Tensor(x.astype(layer.base.weight.dtype))).data, y, rtol=tolerance, atol=tolerance)
    layer.merge()
    np.testing.assert_allclose(layer.base.weight.data, merged, rtol=tolerance, atol=tolerance)


def test_dpo_reference_equals_the_library_loss_and_is_ln_2_at_the_reference():
    from tinygrad_llm.transfer.dpo import dpo_loss as library_dpo_loss
    reference = ex.get_exercise("dpo_loss").reference
    rng = np.random.default_rng(0)
    for scale, beta in [(5.0, 0.1), (50.0, 0.5), (5000.0, 1.0)]:
        log_probs = -np.abs(rng.normal(0, scale, (4, 8)))
        expected = library_dpo_loss(*log_probs, beta=beta).loss.item()
        assert reference(*log_probs, beta) == pytest.approx(expected, rel=1e-9)
        assert math.isfinite(reference(*log_probs, beta))
    chosen, rejected = rng.normal(-20, 5, 6), rng.normal(-20, 5, 6)
    assert reference(chosen, rejected, chosen, rejected, 0.1) == pytest.approx(math.log(2), abs=1e-15)


def test_transe_reference_equals_the_library_score_and_margin_loss():
    from tinygrad_llm.transfer.knowledge_graph import margin_ranking_loss, transe_score
    reference = ex.get_exercise("transe_scores_and_loss").reference
    rng = np.random.default_rng(0)
    h, r, t, h_bad, t_bad = rng.normal(size=(5, 7, 3))
    for norm in (1, 2):
        true_scores, bad_scores, loss = reference(h, r, t, h_bad, t_bad, 1.5, norm)
        library_true = transe_score(Tensor(h), Tensor(r), Tensor(t), norm=norm)
        library_bad = transe_score(Tensor(h_bad), Tensor(r), Tensor(t_bad), norm=norm)
        np.testing.assert_allclose(true_scores, library_true.data, rtol=1e-12)
        np.testing.assert_allclose(bad_scores, library_bad.data, rtol=1e-12)
        assert loss == pytest.approx(margin_ranking_loss(library_true, library_bad, 1.5).item(), rel=1e-12)


def test_reservoir_reference_keeps_what_the_library_buffer_keeps_with_the_same_generator():
    from tinygrad_llm.transfer.continual import ReservoirBuffer
    reference = ex.get_exercise("reservoir_sample").reference
    for capacity, length, seed in [(1, 10, 0), (4, 30, 1), (8, 5, 2), (5, 200, 3)]:
        buffer = ReservoirBuffer(capacity, np.random.default_rng(seed))
        buffer.extend(range(length))
        assert reference(OnePassStream(length), capacity, np.random.default_rng(seed)) == buffer.items


def test_the_chi_square_bar_passes_the_reference_and_fails_a_reservoir_biased_by_one_count():
    reference = ex.get_exercise("reservoir_sample").reference
    for sampler, passes in [(reference, True), (reservoir_counts_from_zero, False)]:
        rng, counts = np.random.default_rng(7), np.zeros(12)
        for _ in range(2000):
            counts[sampler(OnePassStream(12), 6, rng)] += 1
        statistic, bar = reservoir_chi_square(counts, 2000, 6)
        assert (statistic < bar) == passes, (sampler.__name__, statistic, bar)


def test_a_stream_can_be_read_once_only():
    stream = OnePassStream(3)
    assert list(stream) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="read once"):
        list(stream)
    assert not hasattr(stream, "__len__")


def test_fusion_reference_is_the_library_concat_mlp_and_the_library_linear_concat_has_zero_contrast():
    from tinygrad_llm.autograd import no_grad
    from tinygrad_llm.transfer.multimodal import ConcatMLPFusion, LinearConcatFusion, make_multimodal_xor
    from tinygrad_llm.transfer.multimodal import interaction_contrast as library_contrast
    reference = ex.get_exercise("concat_mlp_fusion").reference
    data = make_multimodal_xor(n=8, rng=0)
    model = ConcatMLPFusion(16, 8, dim=4, hidden=6)
    first, second = model.fusion[0], model.fusion[2]  # Linear, ReLU, Linear
    with no_grad():
        text, image = model.text_encoder(data.tokens).data, model.image_encoder(data.images).data
        logits = model(data.tokens, data.images).data
    weights = [np.asarray(p.data, np.float64) for p in (first.weight, first.bias, second.weight, second.bias)]
    np.testing.assert_allclose(reference(text.astype(np.float64), image.astype(np.float64), *weights), logits,
                               rtol=1e-4, atol=1e-5)
    halves = (data.tokens[:4], data.tokens[4:]), (data.images[:4], data.images[4:])
    np.testing.assert_allclose(library_contrast(LinearConcatFusion(16, 8, dim=4, hidden=6), *halves), 0.0, atol=1e-5)


def test_two_hidden_units_fit_xor_and_the_contrast_tells_additive_from_nonlinear():
    """Hand-set weights: the concat-MLP fusion gets the four XOR corners right, while any additive model has
    contrast 0 and so cannot (XOR's contrast is -2)."""
    fusion = ex.get_exercise("concat_mlp_fusion").reference
    text, image = np.array([[0.0], [0.0], [1.0], [1.0]]), np.array([[0.0], [1.0], [0.0], [1.0]])
    W1, b1 = np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([0.0, -1.0])  # relu(t + i) - 2 relu(t + i - 1) = XOR
    W2, b2 = np.array([[-1.0, 2.0], [1.0, -2.0]]), np.zeros(2)
    logits = fusion(text, image, W1, b1, W2, b2)
    np.testing.assert_array_equal(logits.argmax(axis=1), [0, 1, 1, 0])
    corners = {"t0": text[:1], "t1": text[2:3], "i0": image[:1], "i1": image[1:2],
               "W1": W1, "b1": b1, "W2": W2, "b2": b2}
    assert np.abs(interaction_contrast(fusion, corners, "contrast")[0]).max() > 1
    assert np.abs(interaction_contrast(fusion_without_a_nonlinearity, corners, "contrast")[0]).max() == 0


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """Masking through index arrays, LoRA through an explicit delta weight, DPO with a branchy stable softplus,
    TransE with explicit sums, a reservoir that draws a float first, fusion with split weights."""
    def mlm_by_indexing(ids, padding, mask_id, select_u, action_u, random_ids):
        inputs, targets = ids.copy(), np.full_like(ids, -100)
        for position in zip(*np.nonzero(~padding & (select_u <= 0.15))):
            targets[position] = ids[position]
            if action_u[position] < 0.8:
                inputs[position] = mask_id
            elif action_u[position] < 0.9:
                inputs[position] = random_ids[position]
        return inputs, targets

    def lora_with_delta(x, W, b, A, B, alpha):
        merged = W + (alpha / len(A)) * np.einsum("or,ri->oi", B, A)
        return x @ merged.T + b, merged

    def dpo_with_branches(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
        m = beta * (policy_chosen - policy_rejected - reference_chosen + reference_rejected)
        softplus = np.where(m > 0, np.log1p(np.exp(-np.abs(m))), -m + np.log1p(np.exp(-np.abs(m))))
        return softplus.mean()

    def transe_with_sums(heads, relations, tails, corrupted_heads, corrupted_tails, margin, norm):
        def distance(h, t):
            d = np.abs(h + relations - t)
            return d.sum(axis=1) if norm == 1 else np.sqrt((d * d).sum(axis=1))
        good, bad = -distance(heads, tails), -distance(corrupted_heads, corrupted_tails)
        return good, bad, np.clip(margin - good + bad, 0, None).mean()

    def reservoir_with_a_float(stream, capacity, rng):
        sample = []
        for index, item in enumerate(stream):
            if index < capacity:
                sample.append(item)
            elif rng.random() < capacity / (index + 1):
                sample[rng.integers(capacity)] = item
        return np.array(sample, dtype=np.int64)

    def fusion_with_split_weights(text, image, W1, b1, W2, b2):
        hidden = text @ W1[:, :text.shape[1]].T + image @ W1[:, text.shape[1]:].T + b1
        return np.where(hidden > 0, hidden, 0.0) @ W2.T + b2

    for name, function in (("mlm_mask", mlm_by_indexing), ("lora_forward_and_merge", lora_with_delta),
                           ("dpo_loss", dpo_with_branches), ("transe_scores_and_loss", transe_with_sums),
                           ("reservoir_sample", reservoir_with_a_float),
                           ("concat_mlp_fusion", fusion_with_split_weights)):
        result = ex.get_exercise(name).grade(function)
        assert result, f"{name}: {result}"
