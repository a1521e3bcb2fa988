"""Learning checks for instruction tuning, DPO and the toy REINFORCE (Q42's backing).

- Instruction examples: the loss mask covers exactly the response tokens (and the eos); the batched loss is the
  mean negative log-likelihood of the response tokens computed by hand from the logits, row by row.
- DPO: the loss is ln 2 whenever the policy equals the reference; its gradient is the closed form
  -beta * sigmoid(-beta * margin) / B on the chosen log-probability (negative: a step raises the chosen
  response) and the opposite on the rejected one; it matches central differences; sequence_log_probs is the hand
  sum of log-softmax entries; a DPO step on a GPT leaves the frozen reference bit-identical and raises the margin.
- REINFORCE: on a categorical policy, the expectation of the loss's gradient, computed exactly by enumerating
  the actions, is minus the gradient of the expected reward, whatever the baseline.
- The experiment: held-out requests never appear in training; a near miss differs from the answer in exactly one
  letter. Its fast mode: instruction tuning lifts held-out exact-match accuracy from 0 to most answers; DPO (at
  two betas) starts at ln 2, ranks held-out correct answers above near misses and keeps the answers, and drifts
  further from the reference at the smaller beta; REINFORCE raises the reward.
tests/broken_preference.py keeps a loss on the prompt tokens, a DPO with the reference signs swapped and a held-out
split that shares prompts with training.
"""
import math

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.autograd import no_grad
from tinygrad_llm.experiments.preference import near_miss, preference_tuning, train_and_held_out_requests
from tinygrad_llm.nn import GPT
from tinygrad_llm.optim import SGD
from tinygrad_llm.testing import gradcheck
from tinygrad_llm.transfer.dpo import (dpo_loss, dpo_step, frozen_reference, preference_batch,
                                       sequence_log_probs)
from tinygrad_llm.transfer.instruction_tuning import (build_example, collate, format_prompt, instruction_dataset,
                                                      instruction_loss, instruction_tokenizer, random_request)
from tinygrad_llm.transfer.reinforce import (MovingAverageBaseline, reinforce_loss, reinforce_step,
                                             target_character_reward)

import broken_preference as broken

pytestmark = pytest.mark.pretraining

UNSHRUNK = settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))  # a broken variant fails at once
TOKENIZER = instruction_tokenizer()
seeds = st.integers(0, 2**32 - 1)


def tiny_gpt(seed: int = 0, dtype=np.float64) -> GPT:
    tgl.manual_seed(seed)
    model = GPT(TOKENIZER.vocab_size, context_size=32, embed_dim=16, num_heads=2, num_layers=1)
    return model.double() if dtype == np.float64 else model


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def hand_response_log_probs(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the sum over masked tokens t of log softmax(logits[t - 1])[ids[t]], from the model's logits."""
    with no_grad():
        logits = model(ids).data
    table = log_softmax(logits.astype(np.float64))
    return np.array([sum(table[row, t - 1, ids[row, t]] for t in np.flatnonzero(mask[row])) for row in range(len(ids))])


# ------------------------------------------------------------------ instruction examples
@given(seeds)
def test_the_loss_mask_covers_exactly_the_response_and_its_eos(seed):
    prompt, response = random_request(np.random.default_rng(seed))
    ids, mask = build_example(prompt, response, TOKENIZER)
    assert ids.shape == mask.shape and mask.dtype == bool
    assert TOKENIZER.decode(ids[mask]) == response + "<|eos|>"
    assert TOKENIZER.decode(ids[~mask]) == "<|bos|>" + format_prompt(prompt)
    first_response = np.flatnonzero(mask)[0]
    assert mask[first_response:].all() and not mask[:first_response].any()  # one contiguous block at the end


def check_instruction_loss_is_the_response_nll(loss_fn):
    """The batched loss is the mean over every response token of the batch of -log p, computed by hand row by
    row from the unpadded examples: padding and prompt tokens contribute nothing."""
    model = tiny_gpt()

    @given(seeds, st.integers(1, 5))
    @UNSHRUNK
    def response_nll(seed, batch_size):
        examples = [build_example(*pair, TOKENIZER) for pair in instruction_dataset(batch_size, seed=seed % 1000)]
        per_row = [hand_response_log_probs(model, ids[None], mask[None])[0] for ids, mask in examples]
        expected = -sum(per_row) / sum(int(mask.sum()) for _, mask in examples)
        loss = loss_fn(model, collate(examples, TOKENIZER.pad_id)).item()
        assert loss == pytest.approx(expected, rel=1e-10)

    response_nll()


def test_the_instruction_loss_is_the_mean_nll_of_the_response_tokens():
    check_instruction_loss_is_the_response_nll(instruction_loss)


def test_collate_never_marks_padding():
    examples = [build_example(*pair, TOKENIZER) for pair in instruction_dataset(8, seed=3)]
    batch = collate(examples, TOKENIZER.pad_id)
    assert not batch.loss_mask[batch.ids == TOKENIZER.pad_id].any()
    assert batch.loss_mask.sum() == sum(mask.sum() for _, mask in examples)


def test_bad_instruction_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="build_example: the response .* is empty"):
        build_example("upper abc", "", TOKENIZER)
    ids = np.array([[1, 10, 11]])
    with pytest.raises(ValueError, match="sequence_log_probs: the mask is True at position 0"):
        sequence_log_probs(tiny_gpt(), ids, np.array([[True, True, False]]))
    with pytest.raises(ValueError, match="dpo_loss: beta must be > 0"):
        dpo_loss(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), beta=0)
    with pytest.raises(ValueError, match=r"dpo_loss: the four log-probabilities must be \(B,\)"):
        dpo_loss(np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2))


# ------------------------------------------------------------------ DPO
log_probs = st.integers(1, 8).flatmap(lambda n: st.tuples(*(st.lists(st.floats(-60, 0), min_size=n, max_size=n)
                                                              for _ in range(4))))
betas = st.floats(0.01, 10)


def check_dpo_loss_is_ln2_at_the_reference(loss_fn):
    @given(log_probs, betas)
    @UNSHRUNK
    def at_reference(values, beta):
        chosen, rejected = (tgl.tensor(v, dtype=np.float64) for v in values[:2])
        output = loss_fn(chosen, rejected, tgl.tensor(chosen.data), tgl.tensor(rejected.data), beta)
        assert output.loss.item() == pytest.approx(math.log(2), rel=1e-14, abs=0)
        np.testing.assert_array_equal(output.margins, 0)

    at_reference()


def test_the_dpo_loss_is_ln2_when_the_policy_is_the_reference():
    check_dpo_loss_is_ln2_at_the_reference(dpo_loss)


@given(log_probs, betas)
def test_the_dpo_gradient_raises_chosen_and_lowers_rejected(values, beta):
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = (
        tgl.tensor(v, dtype=np.float64, requires_grad=True) for v in values)
    output = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
    output.loss.backward()
    margin = (policy_chosen.data - reference_chosen.data) - (policy_rejected.data - reference_rejected.data)
    closed_form = -beta * np.exp(-np.logaddexp(0, beta * margin)) / len(margin)  # -beta * sigmoid(-beta m) / B
    close = dict(rtol=1e-9, atol=1e-14 * beta)  # the library forms sigmoid(z) - 1: a few ulps of 1 when it cancels
    np.testing.assert_allclose(policy_chosen.grad, closed_form, **close)
    np.testing.assert_allclose(policy_rejected.grad, -closed_form, **close)
    np.testing.assert_allclose(reference_chosen.grad, -closed_form, **close)
    assert (policy_chosen.grad <= 0).all() and (policy_rejected.grad >= 0).all()
    np.testing.assert_allclose(output.margins, beta * margin, rtol=1e-12, atol=1e-12)


@given(log_probs, st.floats(0.05, 2))
@settings(max_examples=10)
def test_the_dpo_gradient_matches_central_differences(values, beta):
    tensors = [tgl.tensor(v, dtype=np.float64, requires_grad=True) for v in values]
    assert gradcheck(lambda *t: dpo_loss(*t, beta=beta).loss, *tensors)


@given(seeds)
@settings(max_examples=10)
def test_sequence_log_probs_is_the_hand_sum_of_log_softmax_entries(seed):
    rng = np.random.default_rng(seed)
    model = tiny_gpt(seed % 7)
    ids = rng.integers(0, TOKENIZER.vocab_size, size=(rng.integers(1, 4), rng.integers(2, 12)))
    mask = rng.random(ids.shape) < 0.5
    mask[:, 0] = False
    log_p = sequence_log_probs(model, ids, mask)
    np.testing.assert_allclose(log_p.data, hand_response_log_probs(model, ids, mask), rtol=1e-10, atol=1e-12)
    log_p.sum().backward()
    assert all(p.grad is not None for p in model.parameters())  # connected to every parameter


def test_a_dpo_step_keeps_the_reference_and_raises_the_margin():
    policy = tiny_gpt(1)
    reference = frozen_reference(policy)
    frozen = {name: value.copy() for name, value in reference.state_dict().items()}
    pairs = instruction_dataset(6, seed=5)
    rng = np.random.default_rng(0)
    batch = preference_batch([(prompt, good, near_miss(good, rng)) for prompt, good in pairs], TOKENIZER)
    optimizer = SGD(policy.parameters(), lr=1e-3)
    first = dpo_step(policy, reference, optimizer, batch, beta=0.5)
    assert first.loss.item() == pytest.approx(math.log(2), rel=1e-14)
    second = dpo_step(policy, reference, optimizer, batch, beta=0.5)
    assert second.margins.mean() > 0 and second.loss.item() < first.loss.item()
    for name, value in reference.state_dict().items():
        np.testing.assert_array_equal(value, frozen[name], err_msg=f"the reference's {name} changed")
    assert all(p.grad is None and not p.requires_grad for p in reference.parameters())


# ------------------------------------------------------------------ REINFORCE
@given(seeds, st.integers(2, 6), st.floats(-3, 3))
def test_the_reinforce_gradient_is_the_exact_score_function_expectation(seed, actions, baseline):
    """E_a[grad of the one-sample loss] over a ~ softmax(theta), by enumerating every action, equals
    -grad E[R] = -p * (R - p.R), for any baseline (the baseline's term has expectation 0)."""
    rng = np.random.default_rng(seed)
    theta, rewards = rng.standard_normal(actions), rng.random(actions)
    probs = np.exp(log_softmax(theta))
    expected_gradient = np.zeros(actions)
    for action in range(actions):
        logits = tgl.tensor(theta, dtype=np.float64, requires_grad=True)
        reinforce_loss(logits.log_softmax()[np.array([action])], rewards[[action]], baseline).backward()
        expected_gradient += probs[action] * logits.grad
    np.testing.assert_allclose(expected_gradient, -probs * (rewards - probs @ rewards), atol=1e-12)


def test_the_moving_average_baseline_uses_only_earlier_batches():
    baseline = MovingAverageBaseline(decay=0.75)
    assert baseline.update([1.0, 3.0]) == 2.0  # the first batch is its own baseline
    assert baseline.update([6.0]) == 2.0  # then the average of earlier batches only
    assert baseline.value == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)


@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) == 1))
def test_the_target_character_reward_is_its_fraction(rows):
    rewards = target_character_reward(np.array(rows), 2)
    np.testing.assert_allclose(rewards, [row.count(2) / len(row) for row in rows])


def test_a_reinforce_step_is_one_policy_gradient_step():
    policy = tiny_gpt(2, np.float32)
    before = {name: value.copy() for name, value in policy.state_dict().items()}
    result = reinforce_step(policy, SGD(policy.parameters(), lr=1e-2), TOKENIZER.encode("\n"),
                            int(TOKENIZER.encode("e")[0]), MovingAverageBaseline(), np.random.default_rng(0),
                            num_samples=4, max_new_tokens=5)
    assert 0 <= result["mean_reward"] <= 1 and result["baseline"] == result["mean_reward"]
    assert any(not np.array_equal(value, before[name]) for name, value in policy.state_dict().items()) or \
        result["loss"] == 0  # every sample equally good: zero advantage, nothing to learn


# ------------------------------------------------------------------ broken variants
@pytest.mark.broken
def test_the_loss_check_catches_a_loss_on_the_prompt_tokens():
    with pytest.raises(AssertionError):
        check_instruction_loss_is_the_response_nll(broken.instruction_loss_on_every_token)


@pytest.mark.broken
def test_the_ln2_check_catches_swapped_reference_signs():
    with pytest.raises(AssertionError):
        check_dpo_loss_is_ln2_at_the_reference(broken.dpo_loss_with_reference_signs_swapped)


@pytest.mark.broken
def test_the_held_out_check_catches_requests_that_were_trained_on():
    with pytest.raises(AssertionError):
        check_held_out_requests_are_never_trained_on(broken.train_and_held_out_requests_that_overlap)


# ------------------------------------------------------------------ the experiment
@given(seeds)
def test_a_near_miss_changes_exactly_one_letter_and_keeps_its_case(seed):
    rng = np.random.default_rng(seed)
    _, response = random_request(rng)
    miss = near_miss(response, rng)
    changed = [i for i, (a, b) in enumerate(zip(response, miss)) if a != b]
    assert len(miss) == len(response) and len(changed) == 1
    assert miss[changed[0]].isupper() == response[changed[0]].isupper()


def check_held_out_requests_are_never_trained_on(split):
    @given(st.integers(0, 10_000))
    @settings(UNSHRUNK, max_examples=10)
    def disjoint(seed):
        train, held_out = split(300, 50, seed)
        assert len(held_out) == 50 and train
        assert not {prompt for prompt, _ in train} & {prompt for prompt, _ in held_out}

    disjoint()


def test_held_out_requests_are_never_trained_on():
    check_held_out_requests_are_never_trained_on(train_and_held_out_requests)


@pytest.fixture(scope="module")
def fast_results():
    return preference_tuning(fast=True, seed=0)


def test_instruction_tuning_teaches_the_format_and_the_answers(fast_results):
    result = fast_results["instruction_tuning"]
    assert result["accuracy_before"] == 0.0 and result["accuracy_after"] >= 0.7  # 0.95 / 0.76 / 1.00 at seeds 0-2
    assert result["last_loss"] < result["first_loss"] / 10


def test_dpo_starts_at_ln2_and_learns_the_planted_preference(fast_results):
    for beta, result in fast_results["dpo"].items():
        assert result["first_loss"] == pytest.approx(math.log(2), rel=1e-6)  # float32 model
        curve = result["held_out_curve"]
        assert curve[0]["margin"] == 0 and curve[0]["accuracy"] == 0  # the policy starts as the reference
        assert result["held_out_margin"] > 0 and result["held_out_preference_accuracy"] >= 0.7, beta
        assert result["rejected_log_ratio"] < result["chosen_log_ratio"]
        assert result["accuracy_after"] >= 0.5  # the answers survive preference tuning


def test_a_smaller_beta_lets_dpo_drift_further_from_the_reference(fast_results):
    """Both responses' log-ratios move further at beta 0.1 than at 1 (the loss at 0.1 stays near ln 2 and keeps
    pushing), and at beta 1 the greedy answers stay about as good as the reference's (seeds 0-2 all hold)."""
    small, large = fast_results["dpo"][0.1], fast_results["dpo"][1.0]
    assert small["chosen_log_ratio"] < large["chosen_log_ratio"]
    assert small["rejected_log_ratio"] < large["rejected_log_ratio"]
    assert large["accuracy_after"] >= large["accuracy_before"] - 0.1


def test_reinforce_raises_the_mean_reward(fast_results):
    result = fast_results["reinforce"]
    assert result["last_mean_reward"] > result["first_mean_reward"]
    assert all(0 <= r <= 1 for r in result["rewards"])
