"""Chapter 12 experiment: find the induction circuit of a two-layer attention-only model, then prove it by
patching (Q32).

1. Train the model (interpretability/attention_only_model.py) as a language model on the induction task
   (interpretability/induction_task.py). It learns to copy: the repeated half becomes predictable while
   the rest stays at chance.
2. Attention maps nominate the circuit: the head with the highest induction score (and every head whose
   score passes INDUCTION_THRESHOLD), and the layer-0 head with the highest previous-token score.
3. Patching tests the nomination: heads output what they did on the corrupted twin (no first copy to
   read), one at a time and together. The previous-token head feeds every induction head (its output is
   what their keys match on), so patching it alone breaks copying. Layer 1 often grows several induction
   heads that back each other up: patching one of them may then cost little, all of them together a lot.
   Attention maps only nominate: when two layer-0 heads have similar previous-token scores, the patching
   table is what says which one the induction heads read.

Every number in the returned dict is measured; `fast=True` is the CI size.
"""
from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..interpretability.activation_patching import (ablate_each_head, attention_patterns, copying_accuracy,
                                                    copying_log_probability, head_outputs, induction_scores,
                                                    patch_each_head, patch_heads, previous_token_scores)
from ..interpretability.attention_only_model import AttentionOnlyTransformer
from ..interpretability.induction_task import induction_batch
from ..nn.functional import cross_entropy
from ..optim import AdamW
from ..random import manual_seed

INDUCTION_THRESHOLD = 0.5  # a head counts as an induction head if it puts half its attention where copying needs it


def experiment_config(fast: bool = True, **overrides) -> dict:
    """Fast: 6-token prefixes, 24 tokens, 600 steps; full: 8-token prefixes, 30 tokens, 2000 steps.

    The filler varies the distance between the copies (7 or 11 possible distances): with only two or three,
    layer 0 learned to attend to each candidate distance instead, a positional shortcut with no induction
    head at all. Two heads per layer: with four, the previous-token job was split over two layer-0 heads."""
    task = (dict(vocab_size=24, prefix_length=6, filler_tokens=6) if fast else
            dict(vocab_size=30, prefix_length=8, filler_tokens=10))
    config = dict(task, embed_dim=32, num_heads=2, steps=600 if fast else 2000, batch_size=128, lr=1e-2)
    unknown = set(overrides) - set(config)
    if unknown:
        raise TypeError(f"experiment_config: unknown settings {sorted(unknown)}; the settings are {sorted(config)}")
    return {**config, **overrides}


def train_induction_model(config: dict, seed: int = 0) -> tuple[AttentionOnlyTransformer, list[float]]:
    """A fresh model trained with AdamW on fresh induction batches (next-token loss at every position, the
    unpredictable ones included, as a language model is trained). Returns the model (in eval mode) and the
    loss of every step."""
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    task = {key: config[key] for key in ("vocab_size", "prefix_length", "filler_tokens")}
    length = 2 * config["prefix_length"] + config["filler_tokens"]
    model = AttentionOnlyTransformer(config["vocab_size"], length, config["embed_dim"], config["num_heads"])
    optimizer = AdamW(model.parameters(), lr=config["lr"])
    losses = []
    for _ in range(config["steps"]):
        ids = induction_batch(config["batch_size"], rng=rng, **task).ids
        loss = cross_entropy(model(ids)[:, :-1], ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def induction_heads(fast: bool = True, seed: int = 0, eval_rows: int = 256, **overrides) -> dict:
    """Train (settings: experiment_config, with `overrides`), then find_induction_circuit."""
    config = experiment_config(fast, **overrides)
    model, losses = train_induction_model(config, seed)
    return find_induction_circuit(model, config, losses, seed, eval_rows)


def find_induction_circuit(model: AttentionOnlyTransformer, config: dict, losses: list[float], seed: int = 0,
                           eval_rows: int = 256) -> dict:
    """Nominate the circuit of a trained model from attention maps, and measure copying accuracy when heads
    are patched from the corrupted twin or mean-ablated, on `eval_rows` fresh sequences (rng seed + 1)."""
    batch = induction_batch(eval_rows, config["vocab_size"], config["prefix_length"], config["filler_tokens"],
                            np.random.default_rng(seed + 1))
    with no_grad():
        clean_logits, corrupted_logits = model(batch.ids).numpy(), model(batch.corrupted).numpy()
    unpredictable = ~batch.predictable
    unpredictable[:, 0] = False

    patterns = attention_patterns(model, batch.ids)
    induction, previous_token = induction_scores(patterns, batch.ids), previous_token_scores(patterns)
    induction_head = tuple(int(i) for i in np.unravel_index(np.argmax(induction), induction.shape))
    all_induction_heads = [tuple(int(i) for i in head) for head in np.argwhere(induction > INDUCTION_THRESHOLD)]
    previous_token_head = (0, int(np.argmax(previous_token[0])))

    accuracy_drop = patch_each_head(model, batch.ids, batch.corrupted, batch.predictable)
    corrupted_heads = head_outputs(model, batch.corrupted)

    def accuracy_with_patched(heads):
        return copying_accuracy(patch_heads(model, batch.ids, heads, corrupted_heads), batch.ids, batch.predictable)

    return {
        "config": config,
        "first_loss": losses[0], "final_loss": float(np.mean(losses[-20:])),
        "chance_accuracy": 1 / config["vocab_size"],
        "repeated_half_accuracy": copying_accuracy(clean_logits, batch.ids, batch.predictable),
        "unpredictable_accuracy": copying_accuracy(clean_logits, batch.ids, unpredictable),
        "corrupted_accuracy": copying_accuracy(corrupted_logits, batch.ids, batch.predictable),
        "induction_scores": induction.tolist(),
        "previous_token_scores": previous_token.tolist(),
        "induction_head": induction_head,
        "induction_heads": all_induction_heads,
        "previous_token_head": previous_token_head,
        "layer_0_head_patching_matters_most": (0, int(np.argmax(accuracy_drop[0]))),
        "patch_accuracy_drop": accuracy_drop.tolist(),
        "patch_log_probability_drop": patch_each_head(model, batch.ids, batch.corrupted, batch.predictable,
                                                      metric=copying_log_probability).tolist(),
        "mean_ablation_accuracy_drop": ablate_each_head(model, batch.ids, batch.predictable, "mean").tolist(),
        "zero_ablation_accuracy_drop": ablate_each_head(model, batch.ids, batch.predictable, "zero").tolist(),
        "induction_head_patched_accuracy": accuracy_with_patched([induction_head]),
        "previous_token_head_patched_accuracy": accuracy_with_patched([previous_token_head]),
        "induction_heads_patched_accuracy": accuracy_with_patched(all_induction_heads),
        "circuit_patched_accuracy": accuracy_with_patched(all_induction_heads + [previous_token_head]),
    }
