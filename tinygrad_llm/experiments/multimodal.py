"""Chapter 11 experiment (Q31, M51): which ways of fusing text and image can learn XOR(text has A, image has a bar)?

    fusion_comparison(fast)   every model of transfer/multimodal.py trained with the same data, seed and budget:
                              test accuracy, train accuracy and parameter count of each

Expected: text only, image only, late fusion and linear concatenation stay near 50% (each modality alone is
uninformative, and additive fusion cannot represent XOR); concatenation + ReLU MLP and cross-attention reach
about 100%. The image models' TRAIN accuracy is high even when they cannot solve the task: an MLP on 64 noisy
pixels memorises its training images, which is why every accuracy that makes a claim is measured on fresh pairs.
Returns a dict of plain numbers; `fast=True` is the CI size.
"""
from __future__ import annotations

import numpy as np

from .. import optim
from ..nn import Module
from ..nn import functional as F
from ..random import manual_seed
from ..transfer.multimodal import FUSION_MODELS, MultimodalXOR, build_fusion_model, make_multimodal_xor, predict

VOCAB_SIZE, IMAGE_SIZE = 16, 8

def accuracy(model: Module, data: MultimodalXOR) -> float:
    return float((predict(model, data.tokens, data.images) == data.labels).mean())


def train_fusion_model(model: Module, data: MultimodalXOR, steps: int, batch_size: int = 128, lr: float = 1e-2,
                       seed: int = 0) -> list[float]:
    """Adam on mean cross-entropy over `steps` minibatches drawn with `seed` (the same batches for every model).
    Returns the loss of each step."""
    optimizer = optim.Adam(model.parameters(), lr=lr)
    batches = np.random.default_rng(seed)
    losses = []
    model.train()
    for _ in range(steps):
        rows = batches.choice(len(data), size=min(batch_size, len(data)), replace=False)
        loss = F.cross_entropy(model(data.tokens[rows], data.images[rows]), data.labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def fusion_comparison(fast: bool = True, seeds=None, models=None, dim: int = 16, hidden: int = 32,
                      num_train: int | None = None, steps: int | None = None) -> dict:
    """Train each fusion model on the same pairs with the same initialisation seed and minibatch order.

    fast: 2,000 training pairs, 400 steps, one seed; full: 8,000 pairs, 1,500 steps, seeds 0, 1, 2
    (`num_train` and `steps` override either). Test accuracy is on 2,000 fresh pairs. Per model:
    test_accuracy (the mean over seeds), test_accuracies (one per seed), train_accuracy (mean),
    num_parameters and final_loss (mean of the last 20 steps, mean over seeds)."""
    default_train, default_steps = (2000, 400) if fast else (8000, 1500)
    num_train, steps = num_train or default_train, steps or default_steps
    seeds = list(seeds if seeds is not None else ([0] if fast else [0, 1, 2]))
    models = list(models if models is not None else FUSION_MODELS)
    results = {name: {"test_accuracies": [], "train_accuracies": [], "final_losses": []} for name in models}
    for seed in seeds:
        train = make_multimodal_xor(num_train, vocab_size=VOCAB_SIZE, image_size=IMAGE_SIZE, rng=seed)
        test = make_multimodal_xor(2000, vocab_size=VOCAB_SIZE, image_size=IMAGE_SIZE, rng=seed + 1000)
        for name in models:
            manual_seed(seed)
            model = build_fusion_model(name, VOCAB_SIZE, IMAGE_SIZE, dim=dim, hidden=hidden)
            losses = train_fusion_model(model, train, steps, seed=seed)
            model.eval()
            results[name]["test_accuracies"].append(accuracy(model, test))
            results[name]["train_accuracies"].append(accuracy(model, train))
            results[name]["final_losses"].append(float(np.mean(losses[-20:])))
            results[name]["num_parameters"] = model.num_parameters()
    for row in results.values():
        row["test_accuracy"] = float(np.mean(row["test_accuracies"]))
        row["train_accuracy"] = float(np.mean(row.pop("train_accuracies")))
        row["final_loss"] = float(np.mean(row.pop("final_losses")))
    return {"num_train": num_train, "num_test": 2000, "steps": steps, "seeds": seeds, "models": results}
