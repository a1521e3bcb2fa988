"""Chapter 14 experiment (Q37, M58): a GPT trained privately against the same GPT trained plainly.

    private_against_plain(fast)   the same model, data, steps and seed trained four ways: plain (AdamW with the
                                  global clip), clipping alone (each window clipped to C = 1, no noise), and
                                  DP-SGD at two noise multipliers; the loss on the whole validation split and the
                                  epsilon each run reports (delta = 1 / the number of training windows)

It is `train --dp-sigma S --dp-clip 1` against `train`, at the CLI's own batch size. The noise on the
averaged gradient has std sigma * C / B, so at a batch of a dozen windows it is large next to the clipped signal:
the price of privacy shows up as loss, and grows with sigma while epsilon falls. Clipping alone already changes
training but buys nothing (epsilon stays infinite). Returns a dict of plain numbers; fast=True is the CI size.
"""
from __future__ import annotations

from dataclasses import replace

from ..metrics import evaluate_language_model
from ..training import TrainConfig, train_language_model


def private_against_plain(fast: bool = True, seed: int = 0, sigmas=(0.5, 1.0)) -> dict:
    """{"runs": {name: {"val_loss", "epsilon", "delta", "seconds"}}, ...} for the four settings above."""
    if fast:
        base = TrainConfig(max_chars=6000, context_size=16, batch_size=8, embed_dim=16, num_heads=2, num_layers=1,
                           steps=20, warmup_steps=2, eval_every=20, eval_batches=2, seed=seed)
    else:  # the CLI's default GPT (nanoGPT's CPU size) on the whole embedded corpus, for fewer steps
        base = TrainConfig(steps=500, warmup_steps=50, eval_every=250, seed=seed)
    settings = {"plain": base, "clipping_only": replace(base, dp_sigma=0.0, dp_clip=1.0)}
    settings.update({f"sigma={sigma}": replace(base, dp_sigma=sigma, dp_clip=1.0) for sigma in sigmas})
    runs = {}
    for name, config in settings.items():
        run = train_language_model(config, progress=False)
        held_out = evaluate_language_model(run.model, run.val_ids, config.context_size, batch_size=32)
        runs[name] = {"val_loss": held_out["loss"], "epsilon": run.final.get("epsilon"),
                      "delta": run.final.get("delta"), "noise_multiplier": config.dp_sigma, "seconds": run.seconds}
    return {"steps": base.steps, "batch_size": base.batch_size, "context_size": base.context_size,
            "max_chars": base.max_chars, "runs": runs}
