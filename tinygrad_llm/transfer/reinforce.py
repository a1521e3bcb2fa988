"""A toy REINFORCE on the GPT: raise the expected reward of sampled completions (Q42's backing, in place of RLHF).

The policy is the language model itself: a completion y of a prompt x is sampled token by token, scored by a
reward R(y) (a number, no gradient), and the parameters move along the score-function ("log-derivative")
estimate of the gradient of the expected reward:

    grad E_y[R(y)] = E_y[ R(y) grad log pi(y|x) ] = E_y[ (R(y) - b) grad log pi(y|x) ]

so the loss minimised is -mean over samples of (R - b) * log pi(y|x) with R and b held constant. Subtracting
a baseline b leaves the expectation unchanged (E[grad log pi] = grad sum pi = grad 1 = 0) but shrinks its
variance: a sample is pushed up only if it did better than usual. Here b is a moving average of past mean
rewards.

What this toy is, and what it is not. The reward here is a fixed rule (the fraction of one target character),
known exactly, and nothing stops the policy from drifting anywhere that scores well. RLHF as used for
InstructGPT and ChatGPT adds, on top of this same policy-gradient idea:
- a learned reward model, trained on many human comparisons of pairs of answers (a Bradley-Terry loss, as in
  DPO), which is imperfect and can be exploited ("reward hacking");
- PPO instead of plain REINFORCE: a clipped ratio between the new and the sampling policy, so several
  optimisation epochs reuse each batch of samples safely, and a learned value function as the baseline;
- a KL penalty towards the instruction-tuned reference model in the reward, so the policy keeps writing
  fluent text instead of collapsing onto whatever the reward model overrates;
- a starting point that is already instruction-tuned, and models and batches many orders of magnitude larger.
None of those are here: this shows only that sampling, scoring and weighting log-probabilities by the reward
moves a real language model's outputs towards higher reward.
"""
from __future__ import annotations

import numpy as np

from ..generation.generate import generate
from ..tensor import Tensor
from .dpo import sequence_log_probs


def reinforce_loss(log_probs: Tensor, rewards, baseline: float = 0.0) -> Tensor:
    """-mean((R - b) * log pi(y)) over samples: its gradient is the score-function estimate of -grad E[R].
    log_probs (N,) must be connected to the policy; rewards (N,) and the baseline are constants."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != log_probs.shape or rewards.ndim != 1:
        raise ValueError(f"reinforce_loss: rewards must have one entry per sample, the shape of log_probs "
                         f"{log_probs.shape}, got {rewards.shape}")
    advantages = (rewards - baseline).astype(log_probs.dtype)
    return -(log_probs * advantages).mean()


class MovingAverageBaseline:
    """b = decay * b + (1 - decay) * mean reward of the batch; the first batch sets it to its own mean.
    The baseline used for a batch is the one from BEFORE that batch, so it never depends on the samples it
    is compared with."""

    def __init__(self, decay: float = 0.9):
        if not 0 <= decay < 1:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay!r}")
        self.decay, self.value = decay, None

    def update(self, rewards) -> float:
        """Return the baseline for this batch of rewards, then fold their mean into it."""
        mean = float(np.mean(rewards))
        baseline = mean if self.value is None else self.value
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return baseline


def target_character_reward(completions: np.ndarray, target_id: int) -> np.ndarray:
    """(N,) the fraction of each completion's tokens that are target_id: a synthetic reward in [0, 1]."""
    return (np.asarray(completions) == target_id).mean(axis=1)


def sample_completions(model, prompt_ids, num_samples: int, max_new_tokens: int,
                       rng: np.random.Generator, temperature: float = 1.0):
    """(ids (N, P + n), completion mask (N, P + n) True at the n sampled tokens): num_samples completions of one
    prompt, drawn from the model's own distribution (temperature 1 keeps the samples on-policy, so their
    log-probabilities are those of the distribution they were drawn from)."""
    prompts = np.tile(np.asarray(prompt_ids, dtype=np.int64), (num_samples, 1))
    ids = generate(model, prompts, max_new_tokens, temperature=temperature, rng=rng)
    mask = np.zeros(ids.shape, bool)
    mask[:, prompts.shape[1]:] = True
    return ids, mask


def reinforce_step(policy, optimizer, prompt_ids, target_id: int, baseline: MovingAverageBaseline,
                   rng: np.random.Generator, num_samples: int = 16, max_new_tokens: int = 8) -> dict:
    """Sample completions, reward each by its fraction of target_id, take one policy-gradient step.
    Returns the batch's mean reward (measured before the step), the baseline used and the loss."""
    ids, mask = sample_completions(policy, prompt_ids, num_samples, max_new_tokens, rng)
    rewards = target_character_reward(ids[:, mask[0]], target_id)
    used_baseline = baseline.update(rewards)
    optimizer.zero_grad()
    loss = reinforce_loss(sequence_log_probs(policy, ids, mask), rewards, used_baseline)
    loss.backward()
    optimizer.step()
    return {"mean_reward": float(rewards.mean()), "baseline": used_baseline, "loss": loss.item()}
