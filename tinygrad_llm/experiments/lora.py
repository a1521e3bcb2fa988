"""Chapter 11 experiment: LoRA against full fine-tuning at equal steps (Q27).

A small character GPT is pretrained on the embedded corpus. The new task is a "dialect" of the same text: every
vowel is replaced by the next one (a -> e -> i -> o -> u -> a, capitals too), so the grammar and the words' shapes
carry over and only which characters appear changes. Copies of the pretrained model are fine-tuned on the
dialect for the same number of steps, on the same batches:

    full fine-tuning   every weight trains (AdamW over all of them)
    LoRA r = 1, 4, 16  adapters on every Linear of the blocks (attention and MLP); everything else frozen;
                       alpha = 2 r, so the scale alpha / r is the same 2 for every rank

and each is scored on held-out dialect text (the task: loss and next-character accuracy) and on held-out
original text (what the model forgets), next to its trainable-parameter count and the bytes of AdamW state
read from the optimizer after training. The pretrained model, not fine-tuned, is the first row. Fine-tuning
takes 400 steps (fast: 60).

Every function returns plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np

from ..autograd import no_grad
from ..data import evaluation_windows, random_windows
from ..metrics import evaluate_language_model
from ..nn import functional as F
from ..optim import AdamW, clip_grad_norm_
from ..training import TrainConfig, prepare_text_data, train_language_model
from ..transfer.lora import apply_lora, optimizer_state_bytes, parameter_counts, trainable_parameters

VOWEL_SHIFT = dict(zip("aeiouAEIOU", "eiouaEIOUA"))
RANKS = (1, 4, 16)
LORA_TARGETS = ("attn.", "mlp_")
# Adapters start at zero and only a few numbers move, so LoRA is usually run with a larger learning rate than
# full fine-tuning; both values are this experiment's settings (pass others to compare).
LEARNING_RATES = {"full": 1e-3, "lora": 1e-2}


def pretraining_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """The base model: width 32, 2 layers, context 32, 200 steps on 20 kB (fast); width 64, 2 layers, context 32,
    1500 steps on 200 kB (full). Batches of 16 windows."""
    size = (dict(max_chars=20_000, steps=200, embed_dim=32, num_layers=2, context_size=32) if fast else
            dict(max_chars=200_000, steps=1500, embed_dim=64, num_layers=2, context_size=32))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_heads=4, batch_size=16, lr=3e-3,
                       min_lr=3e-4, warmup_steps=size["steps"] // 20, weight_decay=0.1, clip_norm=1.0,
                       eval_every=size["steps"], eval_batches=4, dropout=0.0, seed=seed, **size)


def shift_tokens(ids: np.ndarray, tokenizer, shift: dict = VOWEL_SHIFT) -> np.ndarray:
    """The token stream with every character of `shift` replaced by its image (a permutation of the vocabulary,
    so the dialect uses the pretrained model's tokenizer and nothing else)."""
    permutation = np.arange(tokenizer.vocab_size)
    for source, target in shift.items():
        (source_id,), (target_id,) = tokenizer.encode(source), tokenizer.encode(target)
        permutation[source_id] = target_id
    return permutation[ids]


def next_token_accuracy(model, ids: np.ndarray, context_size: int) -> float:
    """The fraction of positions in consecutive windows of `ids` where the most likely next token is the true one."""
    inputs, targets = evaluation_windows(ids, context_size)
    with no_grad():
        return float(np.mean(model(inputs).data.argmax(-1) == targets))


def fine_tune(model, train_ids: np.ndarray, config: TrainConfig, steps: int, lr: float, seed: int):
    """AdamW (no weight decay) over the model's trainable parameters for `steps` steps of random windows drawn
    from a generator seeded with `seed` (so every method sees the same batches); returns the optimizer."""
    parameters = trainable_parameters(model)
    optimizer = AdamW(parameters, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, 2])
    model.train()
    for _ in range(steps):
        inputs, targets = random_windows(train_ids, config.context_size, config.batch_size, rng)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        clip_grad_norm_(parameters, config.clip_norm)
        optimizer.step()
    return optimizer


def full_vs_lora(fast: bool = True, seed: int = 0, ranks=RANKS, learning_rates: dict | None = None,
                 pretrained=None, steps: int | None = None) -> dict:
    """Pretrain, then fine-tune copies on the vowel-shifted text (full and LoRA at each rank, equal steps and
    batches). Returns, per method: dialect loss and accuracy (the task), original-text loss (forgetting),
    trainable and total parameters, and the AdamW state in bytes.

    pretrained: a model already trained with pretraining_config(fast, seed), to start from instead of training
    one here (it is copied, never changed); steps: fine-tuning steps per method (default 400, fast 60)."""
    learning_rates = {**LEARNING_RATES, **(learning_rates or {})}
    config = pretraining_config(fast, seed)
    data = prepare_text_data(config)
    if pretrained is None:
        pretrained = train_language_model(config, progress=False, data=data).model
    pretrained.eval()
    dialect_train, dialect_val = (shift_tokens(ids, data.tokenizer) for ids in (data.train_ids, data.val_ids))
    steps = steps or (60 if fast else 400)

    def scores(model) -> dict:
        model.eval()
        return {"task_loss": evaluate_language_model(model, dialect_val, block_size=config.context_size)["loss"],
                "task_accuracy": next_token_accuracy(model, dialect_val, config.context_size),
                "original_loss": evaluate_language_model(model, data.val_ids, block_size=config.context_size)["loss"],
                **{f"{k}_parameters": v for k, v in parameter_counts(model).items() if k != "trainable_fraction"}}

    results = {"pretrained (no fine-tuning)": {**scores(pretrained), "trainable_parameters": 0,
                                               "optimizer_state_bytes": 0}}
    full = copy.deepcopy(pretrained)
    optimizer = fine_tune(full, dialect_train, config, steps, learning_rates["full"], seed)
    results["full fine-tuning"] = {**scores(full), "optimizer_state_bytes": optimizer_state_bytes(optimizer)}
    for rank in ranks:
        adapted = copy.deepcopy(pretrained)
        layers = apply_lora(adapted, rank=rank, alpha=2.0 * rank, targets=LORA_TARGETS)
        optimizer = fine_tune(adapted, dialect_train, config, steps, learning_rates["lora"], seed)
        results[f"LoRA r={rank}"] = {**scores(adapted), "optimizer_state_bytes": optimizer_state_bytes(optimizer),
                                     "adapted_layers": len(layers)}
    return {"results": results, "fine_tuning_steps": steps, "learning_rates": learning_rates,
            "shift": "".join(f"{a}->{b} " for a, b in VOWEL_SHIFT.items()).strip(),
            "pretraining_config": asdict(config)}
