"""Chapter 12 experiment: the logit lens and linear probes on a trained character GPT, each against the same
GPT untrained (Q32).

A small GPT is trained on the embedded corpus; a second one of the same configuration keeps its random
initialisation. On the validation text, for both:

    logit lens   the probability each layer's readout gives the true next character, and how often the
                 readout's most likely character is the true one (layer 0: the embeddings, L: the model);
    probes       at every layer, a linear probe for "the PREVIOUS character is a space". The current
                 character rides the residual stream in any model, trained or not; the previous one gets
                 there only if attention moved it, which is what the untrained control measures.

Every function returns plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import numpy as np

from ..data import evaluation_windows
from ..interpretability.logit_lens import logit_lens, target_probabilities, top_tokens
from ..interpretability.probes import previous_token_labels, probe_with_controls
from ..random import manual_seed
from ..training import TrainConfig, build_model, train_language_model


def experiment_config(fast: bool = True, seed: int = 0, **sizes) -> TrainConfig:
    """Fast: width 48, 2 layers, 30 kB of text, 300 steps; full: width 96, 4 layers, 300 kB, 1500 steps.
    `sizes` overrides any of max_chars, steps, embed_dim, num_layers, context_size (e.g. a smaller demo)."""
    size = (dict(max_chars=30_000, steps=300, embed_dim=48, num_layers=2, context_size=32) if fast else
            dict(max_chars=300_000, steps=1500, embed_dim=96, num_layers=4, context_size=64))
    unknown = set(sizes) - set(size)
    if unknown:
        raise TypeError(f"experiment_config: unknown sizes {sorted(unknown)}; the sizes are {sorted(size)}")
    size.update(sizes)
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_heads=4, batch_size=16, lr=3e-3,
                       min_lr=3e-4, warmup_steps=size["steps"] // 20, eval_every=size["steps"], eval_batches=4,
                       seed=seed, **size)


def logit_lens_profile(model, inputs: np.ndarray, targets: np.ndarray) -> dict:
    """Per layer (0 = embeddings): mean probability of the true next token, and top-1 accuracy."""
    readouts = logit_lens(model, inputs)
    return {"target_probability": target_probabilities(readouts, targets).mean(axis=(1, 2)).tolist(),
            "top1_accuracy": (top_tokens(readouts)[..., 0] == targets).mean(axis=(1, 2)).tolist()}


def inside_the_gpt(fast: bool = True, seed: int = 0, windows: int = 96, **sizes) -> dict:
    """Train the GPT (sizes: see experiment_config), then measure it and its untrained twin (look_inside)."""
    return look_inside(train_language_model(experiment_config(fast, seed, **sizes), progress=False), windows)


def look_inside(run, windows: int = 96) -> dict:
    """A trained run (train_language_model's result) -> the logit-lens profiles and probe accuracies of its
    model and of an untrained twin (same configuration, seed + 1) on `windows` validation windows."""
    config = run.config
    trained = run.model.eval()
    manual_seed(config.seed + 1)
    untrained = build_model(config, run.tokenizer.vocab_size).eval()
    inputs, targets = evaluation_windows(run.val_ids, config.context_size)
    inputs, targets = inputs[:windows], targets[:windows]
    space = run.tokenizer.encode(" ")[0]
    labels = previous_token_labels(inputs, space)
    probes = [probe_with_controls(trained, untrained, inputs, labels, layer, seed=config.seed)
              for layer in range(config.num_layers + 1)]
    return {
        "num_layers": config.num_layers,
        "windows": len(inputs),
        "trained_lens": logit_lens_profile(trained, inputs, targets),
        "untrained_lens": logit_lens_profile(untrained, inputs, targets),
        "previous_is_space_probe": {key: [probe[key] for probe in probes] for key in probes[0]},
    }
