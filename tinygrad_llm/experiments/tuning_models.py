"""Chapter 13 (Q34): tuning the learning rate and width of two language models, the character MLP and a small
GPT, with random search, Bayesian optimisation and successive halving on the same budget of training steps.

Each trial is a real training run through `tune`'s objective (the validation loss at its last step). Random
search and BO run `trials` trials of `steps` steps each; successive halving starts as many configurations as
fit in the same total number of steps (most of them trained for steps / 9 and steps / 3 only). A method's best
loss is the best among its trials trained for the full `steps`, so all three are compared at the same length.

    tune_models(fast)   per model: each method's best loss, its trials and steps spent, and the loss of the
                        untuned defaults (lr 1e-3, the base width) for reference
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..training.config import TrainConfig
from ..training.text_data import prepare_text_data
from ..tuning.command import best_so_far, planned_trials, run_searcher, validation_loss_objective
from ..tuning.search_space import Categorical, IntUniform, LogUniform, MultipleOf, SearchSpace

METHODS = ("random", "bo", "halving")


def model_settings(fast: bool) -> dict:
    """Per model: the base TrainConfig (everything not searched) and the space of learning rate and width."""
    shared = dict(max_chars=5_000 if fast else 100_000, context_size=16 if fast else 32, batch_size=8 if fast else 12,
                  eval_batches=4 if fast else 20, eval_every=10_000, warmup_steps=0)
    lr = LogUniform(1e-4, 3e-2)
    return {
        "mlp": (TrainConfig(model="mlp", embed_dim=16, hidden_dim=64 if fast else 256, **shared),
                SearchSpace({"lr": lr, "hidden_dim": IntUniform(16, 256 if fast else 1024, log=True)})),
        "gpt": (TrainConfig(model="gpt", embed_dim=16 if fast else 64, num_heads=2 if fast else 4,
                            num_layers=1 if fast else 2, **shared),
                SearchSpace({"lr": lr, "num_heads": Categorical((2,) if fast else (4,)),
                             "embed_dim": MultipleOf("num_heads", 8 if fast else 32, 32 if fast else 256, log=True)})),
    }


def halving_configurations(space: SearchSpace, total_steps: int, max_budget: int, seed: int) -> int:
    """The most configurations successive halving can start without its trials' steps exceeding total_steps."""
    count = 1
    while sum(planned_trials("halving", space, count + 1, max_budget, seed)) <= total_steps:
        count += 1
    return count


def tune_models(fast: bool = True, seed: int = 0, trials: int | None = None, steps: int | None = None) -> dict:
    """Every method on every model with `trials` x `steps` training steps in all (fast: 6 x 27; full: 16 x 162;
    either can be overridden, e.g. for a notebook)."""
    trials = trials or (6 if fast else 16)
    steps = steps or (27 if fast else 162)
    result = {"trials": trials, "steps": steps, "total_steps": trials * steps, "models": {}}
    for model, (base, space) in model_settings(fast).items():
        base = dataclasses.replace(base, steps=steps, seed=seed)
        data = prepare_text_data(base)
        objective = validation_loss_objective(base, data)
        summary = {"uniform_loss": math.log(data.tokenizer.vocab_size),
                   "default_loss": objective({}, steps)}  # base's own lr (1e-3) and width
        for method in METHODS:
            count = halving_configurations(space, trials * steps, steps, seed) if method == "halving" else trials
            start = time.perf_counter()
            method_trials = run_searcher(method, objective, space, count, steps, seed)
            best = best_so_far(method_trials, steps)
            at_full = [t for t in method_trials if t.budget == steps]
            summary[method] = {
                "best_loss": float(best[-1]),
                "best_config": min(at_full, key=lambda t: t.loss).config,
                "best_so_far": best.tolist(),  # after each trial; against steps_so_far for the budget
                "steps_so_far": np.cumsum([t.budget for t in method_trials]).tolist(),
                "configurations": count,
                "evaluations": len(method_trials),
                "steps_spent": int(sum(t.budget for t in method_trials)),
                "seconds": time.perf_counter() - start,
                "trials": [t.as_dict() for t in method_trials],
            }
        result["models"][model] = summary
    return result
