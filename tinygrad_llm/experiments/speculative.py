"""Chapter 9 experiment: speculative decoding on trained models, acceptance rate and wall-clock speed (Q20).

`train_pair` trains a target GPT and a much smaller draft GPT on the same characters of the embedded corpus
(one TextData, so one tokenizer). `speculative_sweep` then continues validation prompts with plain cached
`generate` of the target and with `speculative_generate` for k = 1, 2, 4, 8 draft tokens per round, greedy
and sampled, and reports for each k:

    acceptance_rate          drafted tokens the target kept
    tokens_per_target_pass   new tokens per target forward pass (plain generate: exactly 1)
    tokens_per_s, speedup    wall-clock throughput, and its ratio to plain generate on the same prompts
    predicted_speedup        (1 - a^(k+1)) / ((1 - a)(k c + 1)), with a the measured acceptance rate and c
                             the draft's cost per token relative to the target's: what the round would buy
                             if verifying k + 1 tokens cost the same as generating one
    identical_to_generate    greedy only: the tokens equal plain generate's

What to expect on this machine. The speedup needs c small: a draft far cheaper than the target. In this
library a forward pass of a small GPT is dominated by Python and per-op overhead (dozens of autograd ops
per block, each costing microseconds whatever the width), not by reading weights, so a 1-block draft is
nowhere near as cheap relative to the target as its parameter count suggests (`cost_ratio` is c as
measured), and a target pass over k + 1 tokens costs more than a pass over one. With c that large the
predicted gain stays near or below 1 however well the draft guesses: read the measured speedup against
that prediction, not against k + 1. Large models on a GPU are the
opposite case: a decode step reads every weight to do little arithmetic, so a pass over k + 1 tokens costs
about as much as one, and c is about the ratio of the parameter counts; the same formula with that c and
these acceptance rates gives the gain there. The acceptance rate itself does not depend on the machine:
it measures how often the small model agrees with the large one, and the chance that a whole round is
accepted falls with k, so a large k mostly drafts tokens that are thrown away.

Timings depend on what else runs: each ratio is measured within one call, the contestants take turns
(benchmarks/timing.time_interleaved), and `other_load` says how busy the machine was meanwhile.
"""
from __future__ import annotations

import numpy as np

from ..benchmarks.timing import OtherLoad, time_interleaved
from ..generation import generate, speculative_generate
from ..metrics import evaluate_language_model
from ..training import TrainConfig, train_language_model
from ..training.text_data import prepare_text_data

DRAFT_TOKENS = (1, 2, 4, 8)
MODES = {"greedy": dict(temperature=0.0), "sampled (tau = 0.8)": dict(temperature=0.8)}


def pair_configs(fast: bool = True, seed: int = 0) -> tuple[TrainConfig, TrainConfig]:
    """(target, draft): the same text and context, the draft one block of width 32 (fast: 16) against the
    target's four of 128 (fast: two of 48). Full: a few minutes on 2 cores in all; fast: seconds."""
    shared = (dict(max_chars=20_000, steps=200, context_size=32, eval_every=100, eval_batches=4) if fast else
              dict(max_chars=300_000, steps=1500, context_size=64, eval_every=250, eval_batches=8))
    common = dict(model="gpt", corpus="embedded", tokenizer="char", batch_size=16, lr=3e-3, min_lr=3e-4,
                  warmup_steps=shared["steps"] // 20, seed=seed, **shared)
    target = TrainConfig(embed_dim=48 if fast else 128, num_layers=2 if fast else 4, num_heads=4, **common)
    draft = TrainConfig(embed_dim=16 if fast else 32, num_layers=1, num_heads=2, **common)
    return target, draft


def train_pair(fast: bool = True, seed: int = 0) -> dict:
    """{"target": TrainingRun, "draft": TrainingRun}, trained on one TextData so they share the tokenizer."""
    target_config, draft_config = pair_configs(fast, seed)
    data = prepare_text_data(target_config)
    return {"target": train_language_model(target_config, progress=False, data=data),
            "draft": train_language_model(draft_config, progress=False, data=data)}


def predicted_speedup(acceptance_rate: float, draft_tokens: int, cost_ratio: float) -> float:
    """Expected tokens per round, (1 - a^(k+1)) / (1 - a) (each draft kept with probability a, independently),
    over the round's cost in target steps, k c + 1 (k draft steps at c each, one verify pass counted as one
    step). a = 1 gives k + 1 tokens per round."""
    a, k = acceptance_rate, draft_tokens
    tokens_per_round = k + 1 if a >= 1 else (1 - a ** (k + 1)) / (1 - a)
    return tokens_per_round / (k * cost_ratio + 1)


def speculative_sweep(fast: bool = True, seed: int = 0, pair: dict | None = None,
                      draft_tokens=DRAFT_TOKENS, modes=tuple(MODES)) -> dict:
    """The table described in the module docstring, plus each model's size and validation perplexity and
    the per-token time of plain generate with each model alone (their ratio is c)."""
    pair = pair if pair is not None else train_pair(fast, seed)
    target, draft = pair["target"].model, pair["draft"].model
    val_ids, context = pair["target"].val_ids, pair["target"].config.context_size
    new_tokens, repeats, num_prompts = (24, 2, 2) if fast else (96, 3, 4)
    prompts = [val_ids[i * context:i * context + 16] for i in range(num_prompts)]

    def plain(model, options):
        return lambda: [generate(model, prompt, new_tokens, seed=seed, **options) for prompt in prompts]

    def speculative(k, options):
        return lambda: [speculative_generate(target, draft, prompt, new_tokens, draft_tokens=k, seed=seed, **options)
                        for prompt in prompts]

    generated = new_tokens * num_prompts
    results = {}
    with OtherLoad() as load:
        for mode in modes:
            options = MODES[mode]
            contestants = {"target": plain(target, options), "draft": plain(draft, options),
                           **{k: speculative(k, options) for k in draft_tokens}}
            timings = time_interleaved(contestants, repeats=repeats, target_run_s=0.0)
            seconds = {name: timing.min_s for name, timing in timings.items()}
            cost_ratio = seconds["draft"] / seconds["target"]
            plain_ids = contestants["target"]()
            rows = {}
            for k in draft_tokens:
                runs = contestants[k]()
                drafted, accepted = sum(r.drafted for r in runs), sum(r.accepted for r in runs)
                rate = accepted / drafted if drafted else float("nan")
                rows[k] = {"acceptance_rate": rate,
                           "tokens_per_target_pass": generated / sum(r.target_forward_passes for r in runs),
                           "tokens_per_s": generated / seconds[k], "speedup": seconds["target"] / seconds[k],
                           "predicted_speedup": predicted_speedup(rate, k, cost_ratio)}
                if options["temperature"] == 0:
                    rows[k]["identical_to_generate"] = all(np.array_equal(run.ids, ids)
                                                           for run, ids in zip(runs, plain_ids))
            results[mode] = {"plain_tokens_per_s": generated / seconds["target"],
                             "draft_tokens_per_s": generated / seconds["draft"], "cost_ratio": cost_ratio,
                             "by_draft_tokens": rows}
    models = {role: {"parameters": run.model.num_parameters(),
                     "val_perplexity": evaluate_language_model(run.model, val_ids, context)["perplexity"]}
              for role, run in pair.items()}
    return {"models": models, "new_tokens": new_tokens, "prompts": num_prompts, "modes": results,
            "other_load": load.fraction}
