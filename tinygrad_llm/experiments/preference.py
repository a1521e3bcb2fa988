"""Chapter 11 experiment (Q42's backing): pretrain -> instruction-tune -> preference-tune a small character GPT.

1. Pretraining: a small GPT learns the embedded corpus as a plain language model (its vocabulary also covers
   the instruction format, so one model serves every stage).
2. Instruction tuning: next-token training on "Q: <request>\\nA: <answer><|eos|>" examples with the loss on the
   answer only. Measured: exact-match accuracy of the greedy answers to held-out requests, before and after.
3. DPO from the instruction-tuned model (the reference is a frozen copy of it): each pair is the correct
   answer (chosen) against a near miss, the same answer with one character changed (rejected). Measured: the
   first loss (ln 2, since the policy starts equal to the reference), the mean implicit-reward margin and the
   preference accuracy on the training pairs and on held-out pairs, and the answer accuracy before and after.
4. REINFORCE from the pretrained model: completions of a newline are rewarded by their fraction of one target
   character. Measured: the mean reward of the first and of the last steps.

Every function returns plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np

from ..autograd import no_grad
from ..data.corpus import load_text
from ..optim import AdamW
from ..random import manual_seed
from ..training import TrainConfig, prepare_text_data, train_language_model
from ..transfer.dpo import dpo_step, evaluate_dpo, frozen_reference, preference_batch
from ..transfer.instruction_tuning import (WORD_LETTERS, build_example, collate, instruction_dataset,
                                           instruction_loss, instruction_tokenizer, response_accuracy)
from ..transfer.reinforce import MovingAverageBaseline, reinforce_step

REWARDED_CHARACTER = "e"


def base_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """The pretrained base: width 32 (fast) or 64, 2 layers, context 32; 60 steps on 10 kB of text (fast) or 1000
    steps on 200 kB."""
    size = (dict(max_chars=10_000, steps=60, embed_dim=32) if fast else
            dict(max_chars=200_000, steps=1000, embed_dim=64))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_layers=2, num_heads=4, context_size=32,
                       batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=size["steps"] // 20, weight_decay=0.1,
                       eval_every=size["steps"], eval_batches=2, seed=seed, **size)


def pretrain_base(config: TrainConfig):
    """(model, tokenizer): a GPT trained on the corpus with a vocabulary that also covers the instruction format."""
    text = load_text(config.corpus)[: config.max_chars or None]
    data = prepare_text_data(config, instruction_tokenizer(text))
    run = train_language_model(config, progress=False, data=data)
    return run.model, data.tokenizer


def instruction_tune(model, tokenizer, pairs, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Instruction-tune `model` in place on random batches of (prompt, response) pairs; returns the losses."""
    examples = [build_example(prompt, response, tokenizer) for prompt, response in pairs]
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, 2])
    losses = []
    model.train()
    for _ in range(steps):
        batch = collate([examples[i] for i in rng.choice(len(examples), batch_size)], tokenizer.pad_id)
        optimizer.zero_grad()
        loss = instruction_loss(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def near_miss(response: str, rng: np.random.Generator) -> str:
    """The response with one character replaced by a different one of the same kind (digit or letter): a
    plausible wrong answer."""
    position = rng.integers(len(response))
    kind = "0123456789" if response[position].isdigit() else (WORD_LETTERS.upper() if response[position].isupper()
                                                              else WORD_LETTERS)
    replacement = rng.choice([c for c in kind if c != response[position]])
    return response[:position] + replacement + response[position + 1:]


def preference_triples(pairs, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, correct answer, near miss) for every (prompt, answer) pair: the planted preference is correctness."""
    rng = np.random.default_rng([seed, 3])
    return [(prompt, response, near_miss(response, rng)) for prompt, response in pairs]


def train_dpo(policy, tokenizer, train_triples, held_out_triples, steps: int, batch_size: int, lr: float,
              beta: float, seed: int) -> dict:
    """DPO from `policy` against a frozen copy of it; returns the per-step losses and margins on the training
    batches, and the margin and preference accuracy on all training pairs and on held-out pairs at the end."""
    reference = frozen_reference(policy)
    optimizer = AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, 4])
    losses, margins = [], []
    policy.train()
    for _ in range(steps):
        batch = preference_batch([train_triples[i] for i in rng.choice(len(train_triples), batch_size)], tokenizer)
        output = dpo_step(policy, reference, optimizer, batch, beta)
        losses.append(output.loss.item())
        margins.append(float(output.margins.mean()))
    with no_grad():
        final = {name: evaluate_dpo(policy.eval(), reference, preference_batch(triples, tokenizer), beta)
                 for name, triples in (("train", train_triples), ("held_out", held_out_triples))}
    return {"losses": losses, "margins": margins,
            **{f"{name}_margin": float(out.margins.mean()) for name, out in final.items()},
            **{f"{name}_preference_accuracy": out.accuracy for name, out in final.items()}}


def train_reinforce(policy, tokenizer, steps: int, num_samples: int, max_new_tokens: int, lr: float,
                    seed: int) -> list[float]:
    """REINFORCE on completions of a newline rewarded by their fraction of REWARDED_CHARACTER; returns the
    mean reward of every step's samples."""
    optimizer = AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    baseline, rng = MovingAverageBaseline(0.9), np.random.default_rng([seed, 5])
    prompt, target = tokenizer.encode("\n"), int(tokenizer.encode(REWARDED_CHARACTER)[0])
    policy.train()
    return [reinforce_step(policy, optimizer, prompt, target, baseline, rng, num_samples, max_new_tokens)["mean_reward"]
            for _ in range(steps)]


def preference_tuning(fast: bool = True, seed: int = 0) -> dict:
    """The whole pipeline (module docstring); every figure is measured in this call."""
    config = base_config(fast, seed)
    manual_seed(seed)
    base, tokenizer = pretrain_base(config)
    sizes = dict(pairs=2000 if fast else 5000, sft_steps=300 if fast else 1500, dpo_steps=30 if fast else 200,
                 rl_steps=20 if fast else 100)
    train_pairs = instruction_dataset(sizes["pairs"], seed=seed)
    held_out = instruction_dataset(100 if fast else 300, seed=seed + 1000)

    model = copy.deepcopy(base)  # instruction-tuned from here on; the base itself goes to REINFORCE
    accuracy_before = response_accuracy(model, tokenizer, held_out)
    sft_losses = instruction_tune(model, tokenizer, train_pairs, sizes["sft_steps"], 32, 3e-3, seed)
    accuracy_after = response_accuracy(model, tokenizer, held_out)

    dpo = train_dpo(model, tokenizer, preference_triples(train_pairs, seed), preference_triples(held_out, seed + 1),
                    sizes["dpo_steps"], 16, 1e-3, 0.1, seed)
    accuracy_after_dpo = response_accuracy(model, tokenizer, held_out)

    rewards = train_reinforce(base, tokenizer, sizes["rl_steps"], 16, 8, 1e-3, seed)
    window = max(1, len(rewards) // 5)
    return {
        "instruction_tuning": {"accuracy_before": accuracy_before, "accuracy_after": accuracy_after,
                               "first_loss": sft_losses[0], "last_loss": float(np.mean(sft_losses[-10:]))},
        "dpo": {**dpo, "first_loss": dpo["losses"][0], "accuracy_before": accuracy_after,
                "accuracy_after": accuracy_after_dpo},
        "reinforce": {"rewards": rewards, "first_mean_reward": float(np.mean(rewards[:window])),
                      "last_mean_reward": float(np.mean(rewards[-window:])), "character": REWARDED_CHARACTER},
        "base_config": asdict(config),
    }
