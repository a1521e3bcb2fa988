"""Deliberately broken instruction- and preference-tuning pieces, each named after its bug;
test_preference_tuning.py proves that its checks catch every one."""
from tinygrad_llm.nn import functional as F
from tinygrad_llm.transfer.dpo import DPOOutput
from tinygrad_llm.transfer.instruction_tuning import IGNORE_INDEX, instruction_dataset


def instruction_loss_on_every_token(model, batch):
    """Next-token loss on the prompt as well as the response: the mean is dominated by the fixed template
    and the request, which the model is given at inference time and never has to produce."""
    targets = batch.ids[:, 1:].copy()
    targets[batch.ids[:, 1:] == 0] = IGNORE_INDEX  # padding (pad id 0) is still skipped; the prompt is not  # BUG
    return F.cross_entropy(model(batch.ids[:, :-1]), targets, ignore_index=IGNORE_INDEX)


def dpo_loss_with_reference_signs_swapped(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                                          beta=0.1):
    """Adds the reference log-probabilities instead of subtracting them: the "reward" is then no longer a
    log-ratio against the reference, the loss is not ln 2 at the start, and the policy is rewarded for what
    the reference already liked."""
    chosen, rejected = policy_chosen + reference_chosen, policy_rejected + reference_rejected  # BUG
    logits = (chosen - rejected) * beta
    loss = F.binary_cross_entropy_with_logits(logits, logits.data * 0 + 1)
    return DPOOutput(loss, beta * chosen.data, beta * rejected.data)


def train_and_held_out_requests_that_overlap(count, held_out_count, seed):
    """Draws the held-out requests independently of the training ones without removing the shared prompts: with
    1536 distinct prompts most held-out requests were trained on, and "held-out accuracy" measures recall."""
    held_out = instruction_dataset(held_out_count, seed=seed + 1000)
    return instruction_dataset(count, seed=seed), held_out  # BUG: no filtering of the held-out prompts
