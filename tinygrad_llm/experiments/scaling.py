"""Chapter 10 experiments: scaling laws on character GPTs (Q25).

`model_size_sweep` trains 2-layer character GPTs of growing width d on the same token budget (same batches,
same schedule, a learning rate scaled to the width) and fits L(N) = a N^-alpha + c to their validation
losses. `data_size_sweep` holds the model fixed and varies the number of training tokens. Both time the
training and compare it with the 6ND FLOPs it should cost: a step carries a fixed overhead whatever the
model's size (Python, building the autograd graph, launching many small kernels), which dominates the
smallest models, so the achieved FLOP/s grows with the model and stays below what the BLAS reaches on one
large matrix product. That is why 6ND predicts the wall time of large models, not of toys.

Every function returns plain numbers and lists; `fast=True` is the CI size.
"""
from __future__ import annotations

import numpy as np

from ..benchmarks.roofline import measure_peak_gflops
from ..metrics import evaluate_language_model
from ..nn import GPT
from ..scaling_laws import fit_power_law, training_flops
from ..training import TrainConfig, prepare_text_data, train_language_model

MODEL_WIDTHS = (16, 24, 32, 48, 64, 96, 128)
# Four widths, not three: the fit has three parameters (a, alpha, c), and three points would fit any curve.
FAST_MODEL_WIDTHS = (8, 16, 24, 32)
DATA_SWEEP_STEPS = (75, 150, 300, 600, 1200)
FAST_DATA_SWEEP_STEPS = (25, 50, 100, 200)


def peak_learning_rate(embed_dim: int, fast: bool) -> float:
    """0.32 / d, capped at 1e-2 (fast: 3e-3): wider models need smaller steps.

    Adam moves every weight by about lr per step, and a layer sums d inputs, so its output moves by about
    lr x d: keeping that fixed means lr proportional to 1/d (the muP rule for hidden layers). Measured over
    600 steps: one rate for all widths fails either way. At 3e-3, d = 16 and 32 reached 2.29 and 2.17 nats
    (1e-2: 2.22 and 1.95); at 1e-2, d = 64 and 128 reached 2.18 and 2.23 (3e-3: 1.85 and 1.62). The fast
    runs (150 steps) all stalled between 3.06 and 3.12 nats at 1e-2 (a unigram model scores 3.27) and
    learned at 3e-3, hence their lower cap.
    """
    return min(3e-3 if fast else 1e-2, 0.32 / embed_dim)


def sweep_config(embed_dim: int, steps: int, fast: bool, seed: int = 0) -> TrainConfig:
    """The one recipe every run of the sweeps shares; only the width (and its learning rate) and the number
    of steps change.

    A 2-layer character GPT with learned positions, context 64 and tied embeddings, batches of 16 windows,
    AdamW with warmup and a cosine decay that ends with the run (a run cut short of its schedule would look
    worse than it is). Full: the whole embedded corpus; fast: its first 100k characters.
    """
    lr = peak_learning_rate(embed_dim, fast)
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", max_chars=100_000 if fast else 0,
                       context_size=64, batch_size=16, embed_dim=embed_dim, num_layers=2, num_heads=4,
                       positions="learned", tie_weights=True, dropout=0.0, steps=steps,
                       warmup_steps=max(1, steps // 20), lr=lr, min_lr=lr / 10, weight_decay=0.1, clip_norm=1.0,
                       eval_every=steps, eval_batches=4, seed=seed)


def non_embedding_parameters(config: dict) -> int:
    """Parameters outside the token and position embeddings: the count Kaplan et al. fit their laws to,
    since a lookup table adds parameters but almost no compute."""
    d = config["embed_dim"]
    positions = config["context_size"] * d if config["positions"] == "learned" else 0
    return GPT.parameter_count(**config) - config["vocab_size"] * d - positions


def train_and_measure(config: TrainConfig, data) -> dict:
    """Train one run and return its size, validation loss over the whole validation split, tokens seen,
    training seconds (evaluations left out), 6ND and the FLOP/s that implies."""
    run = train_language_model(config, progress=False, data=data)
    model_config = run.model.config
    parameters = GPT.parameter_count(**model_config)
    tokens = config.steps * config.tokens_per_step
    seconds = run.history[-1]["train_seconds"]
    flops = float(training_flops(parameters, tokens))
    return {"embed_dim": config.embed_dim, "steps": config.steps, "parameters": parameters,
            "non_embedding_parameters": non_embedding_parameters(model_config), "tokens": tokens,
            "epochs": tokens / len(data.train_ids),
            "val_loss": evaluate_language_model(run.model, data.val_ids, block_size=config.context_size)["loss"],
            "train_seconds": seconds, "seconds_per_step": seconds / config.steps, "training_flops": flops,
            "achieved_gflops": flops / seconds / 1e9}


def step_time_split(rows: list) -> dict:
    """Fit seconds per step = fixed + (6 N x tokens per step) / rate across the runs: the fixed part is what a
    step costs whatever the model size, the rate is the FLOP/s the extra work runs at."""
    flops_per_step = np.array([row["training_flops"] / row["steps"] for row in rows])
    seconds_per_step = np.array([row["seconds_per_step"] for row in rows])
    seconds_per_flop, fixed = np.polyfit(flops_per_step, seconds_per_step, 1)
    return {"fixed_seconds_per_step": float(fixed), "marginal_gflops": float(1 / seconds_per_flop / 1e9),
            "fixed_share": (fixed / seconds_per_step).tolist()}


def power_law_summary(x, losses) -> dict:
    law = fit_power_law(x, losses)
    return {"a": law.a, "alpha": law.alpha, "c": law.c, "residual": law.residual}


def model_size_sweep(fast: bool = True, seed: int = 0) -> dict:
    """Q25: validation loss against parameter count N at a fixed token budget, and the fitted L(N).

    Widths 16-128 (fast: 8-32), 600 steps (fast: 150) of 16 windows of 64 tokens for every model, the same
    batches in the same order. Returns one row per width (see train_and_measure), the power law
    fitted to total and to non-embedding parameters, the split of step time into a fixed overhead and a
    FLOP-proportional part, and the BLAS's float32 matmul GFLOP/s on this machine for comparison.

    With one budget for all sizes, the largest models see the fewest tokens per parameter, so the curve
    bends sooner than a compute-optimal sweep's would; c absorbs that, and alpha is this budget's exponent.
    """
    widths, steps = (FAST_MODEL_WIDTHS, 150) if fast else (MODEL_WIDTHS, 600)
    data = prepare_text_data(sweep_config(widths[0], steps, fast, seed))
    rows = [train_and_measure(sweep_config(width, steps, fast, seed), data) for width in widths]
    losses = [row["val_loss"] for row in rows]
    return {"fast": fast, "widths": list(widths), "steps": steps, "tokens": rows[0]["tokens"],
            "vocab_size": data.tokenizer.vocab_size, "train_tokens": len(data.train_ids), "rows": rows,
            "fit": power_law_summary([row["parameters"] for row in rows], losses),
            "fit_non_embedding": power_law_summary([row["non_embedding_parameters"] for row in rows], losses),
            "step_time": step_time_split(rows), "blas_peak_gflops": measure_peak_gflops(n=1024, repeats=3)["gflops"]}


def data_size_sweep(fast: bool = True, seed: int = 0, embed_dim: int | None = None) -> dict:
    """Q25: validation loss of one model (d = 32; fast: 16) against the number of training tokens D.

    Each budget is its own run with its own complete schedule, from the same initial weights and batch order
    (so a longer run first sees exactly the batches a shorter one saw). Returns one row per budget, with
    `epochs`: how many times the training split the run's tokens amount to (past 1, data repeats), and
    L(D) = a D^-alpha + c fitted to the losses.
    """
    embed_dim = embed_dim or (16 if fast else 32)
    budgets = FAST_DATA_SWEEP_STEPS if fast else DATA_SWEEP_STEPS
    data = prepare_text_data(sweep_config(embed_dim, budgets[0], fast, seed))
    rows = [train_and_measure(sweep_config(embed_dim, steps, fast, seed), data) for steps in budgets]
    return {"fast": fast, "embed_dim": embed_dim, "parameters": rows[0]["parameters"],
            "train_tokens": len(data.train_ids), "rows": rows,
            "fit": power_law_summary([row["tokens"] for row in rows], [row["val_loss"] for row in rows])}
