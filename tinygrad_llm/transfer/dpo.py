"""Direct Preference Optimisation (DPO, Rafailov et al. 2023) written from scratch on the library's autograd.

Data: pairs of responses to one prompt, one preferred ("chosen", y_w) over the other ("rejected", y_l). Two
models: the policy pi being trained, and a frozen reference pi_ref (a copy of the policy before DPO, usually
the instruction-tuned model). The loss for one pair is

    -log sigmoid( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

where log pi(y|x) is the summed log-probability of the response tokens (sequence_log_probs). The bracket is a
difference of two "implicit rewards" r(y) = beta * (log pi(y|x) - log pi_ref(y|x)): how much more likely the
policy makes a response than the reference did. Minimising the loss pushes the chosen response's implicit
reward above the rejected one's. Facts worth checking (tests/test_preference_tuning.py does):
- at the start the policy IS the reference, every implicit reward is 0 and the loss is exactly ln 2;
- d loss / d log pi(y_w) = -beta * sigmoid(-beta * margin) < 0 and d loss / d log pi(y_l) is its opposite,
  so a step raises the chosen response and lowers the rejected one, and pairs the model already ranks
  well (large margin) get little weight;
- beta sets how far the policy may drift from the reference: the loss is the logistic (Bradley-Terry)
  likelihood of the preferences under a reward whose optimum, with a KL penalty of weight beta towards
  pi_ref, is exactly this implicit reward. That is DPO's point: RLHF's reward model and PPO loop collapse into
  one classification-style loss on the policy, with no sampling during training.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..nn import functional as F
from ..tensor import Tensor
from .instruction_tuning import IGNORE_INDEX, InstructionBatch, build_example, collate, next_token_targets


def sequence_log_probs(model, ids, response_mask) -> Tensor:
    """(B,) summed log p(token | the tokens before it) over the tokens where response_mask is True, connected to
    the model's parameters (backward reaches them). ids and response_mask are (B, T); the mask follows
    build_example's convention (True at the response tokens, the first token never)."""
    inputs, targets = next_token_targets(ids, response_mask, "sequence_log_probs")
    token_nll = F.cross_entropy(model(inputs), targets, ignore_index=IGNORE_INDEX, reduction="none")  # 0 if ignored
    return -token_nll.sum(axis=1)


@dataclass
class DPOOutput:
    loss: Tensor  # scalar, the mean over pairs
    chosen_rewards: np.ndarray  # (B,) beta * (log pi(y_w) - log pi_ref(y_w))
    rejected_rewards: np.ndarray  # (B,) beta * (log pi(y_l) - log pi_ref(y_l))

    @property
    def margins(self) -> np.ndarray:
        """chosen minus rejected implicit reward, per pair: what the loss pushes up."""
        return self.chosen_rewards - self.rejected_rewards

    @property
    def accuracy(self) -> float:
        """The fraction of pairs whose chosen response has the strictly higher implicit reward (0 at the start,
        when every reward is 0)."""
        return float(np.mean(self.margins > 0))


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float = 0.1) -> DPOOutput:
    """The DPO loss averaged over pairs, from four (B,) sequence log-probabilities (Tensors or arrays; the
    reference ones are normally constants computed under no_grad), plus the implicit rewards.

    -log sigmoid(z) is computed as binary cross-entropy of the logit z against the label 1, i.e. log(1 + e^-z)
    through a log-sum-exp: finite for any z, where log(sigmoid(z)) would give log(0) for a very negative z.
    """
    if not beta > 0:
        raise ValueError(f"dpo_loss: beta must be > 0 (it scales the implicit reward; ~0.1 is usual), got {beta!r}")
    given = (policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    dtype = next((x.dtype for x in given if isinstance(x, Tensor)), np.float64)  # arrays follow the policy's dtype
    terms = [x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=dtype)) for x in given]
    shapes = {t.shape for t in terms}
    if len(shapes) != 1 or len(shapes.pop()) != 1:
        raise ValueError(f"dpo_loss: the four log-probabilities must be (B,) arrays of one length, one entry per "
                         f"pair, got shapes {[t.shape for t in terms]}")
    pc, pr, rc, rr = terms[0], terms[1], terms[2], terms[3]
    chosen_log_ratio, rejected_log_ratio = pc - rc, pr - rr
    logits = (chosen_log_ratio - rejected_log_ratio) * beta
    loss = F.binary_cross_entropy_with_logits(logits, np.ones(logits.shape, dtype=logits.dtype))
    return DPOOutput(loss, beta * np.asarray(chosen_log_ratio.data, np.float64),
                     beta * np.asarray(rejected_log_ratio.data, np.float64))


@dataclass
class PreferenceBatch:
    chosen: InstructionBatch
    rejected: InstructionBatch


def preference_batch(triples, tokenizer) -> PreferenceBatch:
    """(prompt, chosen response, rejected response) triples -> the two padded batches, masked on the responses."""
    chosen = collate([build_example(prompt, good, tokenizer) for prompt, good, _ in triples], tokenizer.pad_id)
    rejected = collate([build_example(prompt, bad, tokenizer) for prompt, _, bad in triples], tokenizer.pad_id)
    return PreferenceBatch(chosen, rejected)


def frozen_reference(model):
    """A deep copy of `model` in eval mode whose parameters require no gradient: the reference pi_ref. It is a
    copy, not the same object, because the policy's parameters change in place at every step."""
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None
    return reference


def evaluate_dpo(policy, reference, batch: PreferenceBatch, beta: float = 0.1) -> DPOOutput:
    """The DPO loss and rewards of a batch with a graph through the policy only (the reference runs under
    no_grad): call .loss.backward() to train, or read the numbers."""
    with no_grad():
        reference_chosen = sequence_log_probs(reference, batch.chosen.ids, batch.chosen.loss_mask).data
        reference_rejected = sequence_log_probs(reference, batch.rejected.ids, batch.rejected.loss_mask).data
    return dpo_loss(sequence_log_probs(policy, batch.chosen.ids, batch.chosen.loss_mask),
                    sequence_log_probs(policy, batch.rejected.ids, batch.rejected.loss_mask),
                    reference_chosen, reference_rejected, beta)


def dpo_step(policy, reference, optimizer, batch: PreferenceBatch, beta: float = 0.1) -> DPOOutput:
    """One optimisation step of the policy on the DPO loss of a batch; the reference is read, never changed.
    Returns the output as it was before the step (its loss is ln 2 on the first step)."""
    optimizer.zero_grad()
    output = evaluate_dpo(policy, reference, batch, beta)
    output.loss.backward()
    optimizer.step()
    return output
