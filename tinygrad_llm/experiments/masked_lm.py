"""Chapter 11 experiment: a small BERT-style masked LM against frequency baselines, and the M47 ablation (Q26).

A TransformerEncoder with a MaskedLMHead is pretrained on the embedded corpus (characters) twice, from the
same initialisation on the same batches and the same masks:

    masked LM              the loss on the selected 15% only (BERT)
    every position         the same corrupted inputs, scored at EVERY position against the original text,
                           so 85% of the loss asks to copy a token the model can see (M47)

Both are scored on the same masked validation windows (fixed seed) by masked-token accuracy: how often the
top prediction at a selected position is the original character. Baselines on those positions: the most
frequent training character (unigram) and the most likely character after the visible left neighbour
(bigram). Every function returns plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..data import random_windows
from ..nn import TransformerEncoder
from ..optim import clip_grad_norm_
from ..random import manual_seed
from ..training import TrainConfig, build_optimizer, prepare_text_data
from ..transfer.heads import MaskedLMHead, ModelWithHead
from ..transfer.masked_accuracy import (accuracy_by_corruption, bigram_accuracy, masked_predictions, masked_windows,
                                        unigram_accuracy)
from ..transfer.masking import mask_tokens, masked_lm_loss


def masked_lm_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """Fast: width 32, 2 layers, context 32, 60 kB of text, 400 steps. Full: width 64, 4 layers, context 64,
    300 kB, 2000 steps. AdamW at 3e-3 with warmup and cosine decay, batches of 16 windows."""
    size = (dict(max_chars=60_000, steps=400, embed_dim=32, num_layers=2, context_size=32) if fast else
            dict(max_chars=300_000, steps=2000, embed_dim=64, num_layers=4, context_size=64))
    return TrainConfig(corpus="embedded", tokenizer="char", num_heads=4, batch_size=16, lr=3e-3, min_lr=3e-4,
                       warmup_steps=size["steps"] // 20, weight_decay=0.01, clip_norm=1.0, dropout=0.0, seed=seed,
                       **size)


def build_masked_lm(vocab_size: int, config: TrainConfig) -> ModelWithHead:
    """An encoder of the config's size with a tied MaskedLMHead; the vocabulary includes the tokenizer's [MASK]."""
    base = TransformerEncoder(vocab_size, context_size=config.context_size, embed_dim=config.embed_dim,
                              num_heads=config.num_heads, num_layers=config.num_layers, dropout=config.dropout)
    return ModelWithHead(base, MaskedLMHead.for_base(base))


def pretrain_masked_lm(config: TrainConfig, data, loss_on_every_position: bool = False) -> ModelWithHead:
    """Masked-LM pretraining on data.train_ids: random windows, masked by mask_tokens (15%, 80/10/10), one AdamW
    step each (warmup and cosine decay, clipping). The initialisation and every batch and mask depend on
    config.seed only, so two calls differ only in `loss_on_every_position` (the M47 ablation: the targets are
    the original windows, every position scored)."""
    tokenizer = data.tokenizer
    manual_seed(config.seed)
    model = build_masked_lm(tokenizer.vocab_size, config).train()
    optimizer, scheduler = build_optimizer(model, config)
    rng = np.random.default_rng([config.seed, 1])
    for _ in range(config.steps):
        windows, _ = random_windows(data.train_ids, config.context_size, config.batch_size, rng)
        batch = mask_tokens(windows, tokenizer.mask_id, tokenizer.vocab_size, rng, special_ids=tokenizer.special_ids)
        optimizer.zero_grad()
        loss = masked_lm_loss(model(batch.inputs), windows if loss_on_every_position else batch.targets)
        loss.backward()
        clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        scheduler.step()
    return model.eval()


def masked_lm_vs_baselines(fast: bool = True, seed: int = 0) -> dict:
    """Masked-token accuracy on the validation split of the MLM, of the every-position ablation, and of the
    unigram and bigram baselines, all on the same masked positions; for both models also the accuracy by what
    each position showed (accuracy_by_corruption), where the ablation's copying shows up."""
    config = masked_lm_config(fast, seed)
    data = prepare_text_data(config)
    tokenizer = data.tokenizer
    evaluation = masked_windows(data.val_ids, config.context_size, tokenizer.mask_id, tokenizer.vocab_size,
                                seed=seed, special_ids=tokenizer.special_ids)
    scored = evaluation.selected
    accuracy, by_corruption = {}, {}
    for name, every_position in (("masked_lm", False), ("every_position", True)):
        predictions = masked_predictions(pretrain_masked_lm(config, data, every_position), evaluation.inputs)
        accuracy[name] = float(np.mean(predictions[scored] == evaluation.targets[scored]))
        by_corruption[name] = accuracy_by_corruption(predictions, evaluation.inputs, evaluation.targets,
                                                     tokenizer.mask_id)
    accuracy["unigram"] = unigram_accuracy(data.train_ids, evaluation.targets)
    accuracy["bigram"] = bigram_accuracy(data.train_ids, evaluation.inputs, evaluation.targets, tokenizer.mask_id)
    return {"accuracy": accuracy, "by_corruption": by_corruption, "scored_positions": int(scored.sum()),
            "config": asdict(config)}
