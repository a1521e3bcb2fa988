"""Chapter 13 (Q34): tuning the learning rate and width of two language models, the character MLP and a small
GPT, with random search, Bayesian optimisation and grid search on the same budget of training steps.

Each trial is a real training run through `tune`'s objective (the validation loss at its last step), of `steps`
steps. Random search and BO run `trials` trials; grid search runs the largest full grid that fits in `trials`
(4 x 4 for 16). Successive halving, which spends the same steps on more and shorter runs, is measured on its own
in notebook 13.

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
from ..tuning.command import best_so_far, run_searcher, validation_loss_objective
from ..tuning.search_space import Categorical, IntUniform, LogUniform, MultipleOf, SearchSpace
from ..tuning.trial import best_trial

METHODS = ("random", "bo", "grid")


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


def tune_models(fast: bool = True, seed: int = 0, trials: int | None = None, steps: int | None = None) -> dict:
    """Every method on every model with at most `trials` runs of `steps` steps (fast: 6 x 27; full: 16 x 162;
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
            start = time.perf_counter()
            method_trials = run_searcher(method, objective, space, trials, steps, seed)
            best = best_so_far(method_trials, steps)
            summary[method] = {
                "best_loss": float(best[-1]),
                "best_config": best_trial(method_trials).config,
                "best_so_far": best.tolist(),  # after each trial
                "steps_so_far": np.cumsum([t.budget for t in method_trials]).tolist(),
                "evaluations": len(method_trials),
                "steps_spent": int(sum(t.budget for t in method_trials)),
                "seconds": time.perf_counter() - start,
                "trials": [t.as_dict() for t in method_trials],
            }
        result["models"][model] = summary
    return result
