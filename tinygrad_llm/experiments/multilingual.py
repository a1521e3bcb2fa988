"""Chapter 11 experiment (Q30): zero-shot cross-lingual transfer to a relabelled language.

    cross_lingual_transfer(fast)   fine-tune on language A's labels only, test on language B, for 0, a few and
                                   many shared anchor tokens, with joint (A + B) masked-LM pretraining, with
                                   pretraining on A only, and with no pretraining

Language B is A with every non-anchor token renamed (tinygrad_llm/transfer/multilingual.py). The model is a
TransformerEncoder with heads from tinygrad_llm/transfer/heads.py: a MaskedLMHead to pretrain, then a mean-pooling
SequenceClassificationHead to fine-tune. Fine-tuning freezes the token embeddings: B's words never appear in the
labelled A data, so their embeddings would stay put while A's moved, undoing the alignment pretraining built.
Returns a dict of plain numbers; fast=True is the CI size.
"""
from __future__ import annotations

import time

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..metrics.classification import accuracy
from ..nn import functional as F
from ..nn.transformer_encoder import TransformerEncoder
from ..random import manual_seed
from ..transfer.heads import MaskedLMHead, ModelWithHead, SequenceClassificationHead
from ..transfer.masking import mask_tokens, masked_lm_loss
from ..transfer.multilingual import A_VOCAB_SIZE, PAD, Relabelling, anchor_ids, review_corpus

CONTEXT = 16
PRETRAINING = ("joint", "a_only", "none")


def pretrain_masked_lm(base: TransformerEncoder, texts: np.ndarray, steps: int, batch_size: int = 64,
                       lr: float = 3e-3, rng: np.random.Generator | None = None) -> list[float]:
    """Masked-LM pretraining of `base` on rows of `texts` (PAD = padding); returns the loss per step."""
    rng = np.random.default_rng(rng)
    model = ModelWithHead(base, MaskedLMHead.for_base(base))
    optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    mask_id = base.vocab_size - 1
    losses = []
    for _ in range(steps):
        batch = texts[rng.integers(len(texts), size=batch_size)]
        padding = batch == PAD
        masked = mask_tokens(batch, mask_id, base.vocab_size, rng, special_ids=(PAD,), padding_mask=padding)
        loss = masked_lm_loss(model(masked.inputs, padding_mask=padding), masked.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def fine_tune(base: TransformerEncoder, ids: np.ndarray, labels: np.ndarray, steps: int, batch_size: int = 64,
              lr: float = 3e-3, rng: np.random.Generator | None = None) -> ModelWithHead:
    """A new mean-pooling classifier head on `base`, trained with everything but the token embeddings."""
    rng = np.random.default_rng(rng)
    classifier = ModelWithHead(base, SequenceClassificationHead.for_base(base, pooling="mean"))
    frozen = base.token_embedding.weight
    optimizer = optim.AdamW([p for p in classifier.parameters() if p is not frozen], lr=lr, weight_decay=0.0)
    for _ in range(steps):
        rows = rng.integers(len(ids), size=batch_size)
        loss = F.cross_entropy(classifier(ids[rows], padding_mask=ids[rows] == PAD), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier


def classifier_accuracy(classifier: ModelWithHead, ids: np.ndarray, labels: np.ndarray) -> float:
    with no_grad():
        predictions = classifier(ids, padding_mask=ids == PAD).data.argmax(axis=-1)
    return accuracy(labels, predictions)


def transfer_run(num_anchors: int, pretraining: str, sizes: dict, seed: int = 0) -> dict:
    """One cell of the table: build language B, pretrain (or not), fine-tune on A, score on A and B."""
    if pretraining not in PRETRAINING:
        raise ValueError(f"transfer_run: pretraining must be one of {PRETRAINING}, got {pretraining!r}")
    rng = np.random.default_rng(seed)
    relabelling = Relabelling(A_VOCAB_SIZE, anchor_ids(num_anchors), rng)
    text_a, _ = review_corpus(sizes["pretrain_texts"], CONTEXT, rng)
    text_b, _ = review_corpus(sizes["pretrain_texts"], CONTEXT, rng)  # different reviews: no parallel text
    train_ids, train_labels = review_corpus(sizes["labelled"], CONTEXT, rng)
    test_ids, test_labels = review_corpus(sizes["test"], CONTEXT, rng)
    manual_seed(seed)
    base = TransformerEncoder(relabelling.joint_size + 1, CONTEXT, embed_dim=sizes["embed_dim"], num_heads=2,
                              num_layers=sizes["num_layers"])  # the last id is [MASK]
    losses = []
    if pretraining != "none":
        texts = text_a if pretraining == "a_only" else np.concatenate([text_a, relabelling.to_b(text_b)])
        losses = pretrain_masked_lm(base, texts, sizes["pretrain_steps"], sizes["batch_size"], rng=rng)
    classifier = fine_tune(base, train_ids, train_labels, sizes["fine_tune_steps"], sizes["batch_size"], rng=rng)
    return {"num_anchors": num_anchors, "pretraining": pretraining,
            "accuracy_a": classifier_accuracy(classifier, test_ids, test_labels),
            "accuracy_b": classifier_accuracy(classifier, relabelling.to_b(test_ids), test_labels),
            "majority_b": float(max(test_labels.mean(), 1 - test_labels.mean())),
            "final_mlm_loss": float(np.mean(losses[-20:])) if losses else None}


def cross_lingual_transfer(fast: bool = True, seed: int = 0, anchor_counts=None, pretrainings=None) -> dict:
    """B accuracy against the number of anchors, for joint pretraining, A-only pretraining and none.

    The fast mode (CI) runs the two ends only, many anchors with joint pretraining against no pretraining,
    each with a small model and few steps; the full mode runs 0, 4 and 16 anchors with all three pretrainings.
    """
    if fast:
        sizes = dict(pretrain_texts=1000, labelled=500, test=500, embed_dim=32, num_layers=1, pretrain_steps=150,
                     fine_tune_steps=100, batch_size=32)
        anchor_counts, pretrainings = anchor_counts or (16,), pretrainings or ("joint", "none")
    else:
        sizes = dict(pretrain_texts=4000, labelled=2000, test=2000, embed_dim=32, num_layers=2, pretrain_steps=600,
                     fine_tune_steps=300, batch_size=64)
        anchor_counts, pretrainings = anchor_counts or (0, 4, 16), pretrainings or PRETRAINING
    start = time.perf_counter()
    runs = [transfer_run(k, pretraining, sizes, seed) for k in anchor_counts for pretraining in pretrainings]
    return {"sizes": sizes, "seed": seed, "anchor_counts": list(anchor_counts), "runs": runs,
            "seconds": time.perf_counter() - start}
