"""Chapter 11 experiment (Q27, M48): fine-tuning a pretrained masked LM on a small labelled task.

The task has a planted ground truth: a review is positive exactly when a positive adjective appears that is
not negated (keyword_sentiment in tinygrad_llm/transfer/multilingual.py). The rating digit at the start of each
review is hidden (replaced by PAD) in the labelled data, or it would nearly give the label away.

    pretrain       a masked LM on unlabelled reviews (experiments/masked_lm.py), saved with save_pretrained
    fine-tune      from_pretrained(path, head="sequence_classification", strict=False): the pretrained base with
                   a NEW mean-pooling classifier head, trained with AdamW on the labelled reviews

Three questions, each a function returning plain numbers:

    label_count_curve   test accuracy with 32, 128, 512 labels, fine-tuned from the MLM against the same model
                        trained from scratch (does pretraining help where labels are few?)
    learning_rate_sweep 1e-5 .. 1e-2: task accuracy, and forgetting, how far the masked-LM loss of the fine-tuned
                        base (under its original MLM head) rises above the pretrained one (M48)
    freezing            which parameters train: the head only ("frozen" trunk), the top block and the head
                        ("top_block"), or everything ("full")

`fast=True` is the CI size: fewer cells and steps, the same code.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..metrics.classification import accuracy
from ..nn import TransformerEncoder
from ..nn import functional as F
from ..random import manual_seed
from ..transfer.heads import ModelWithHead, SequenceClassificationHead
from ..transfer.masking import mask_tokens, masked_lm_loss
from ..transfer.multilingual import PAD, RATING_POSITION, review_corpus
from ..transfer.pretrained import from_pretrained, save_pretrained
from .masked_lm import MASK_ID, REVIEW_WINDOW, SPECIAL_IDS, VOCAB_SIZE, masked_lm_config, pretrain_masked_lm, review_texts

TRAINABLE = ("frozen", "top_block", "full")


def labelled_reviews(count: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """(ids (count, REVIEW_WINDOW), labels (count,)): keyword-sentiment reviews with the rating digit hidden."""
    ids, labels = review_corpus(count, REVIEW_WINDOW, np.random.default_rng(seed))
    ids[:, RATING_POSITION] = PAD
    return ids, labels


def trainable_parameters(classifier: ModelWithHead, trainable: str) -> list:
    """The parameters fine-tuning updates: the head only ("frozen"), the last block, the final LayerNorm and
    the head ("top_block"), or all of them ("full"). The rest keep their pretrained values bit for bit."""
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable_parameters: trainable must be one of {TRAINABLE}, got {trainable!r}")
    if trainable == "full":
        return classifier.parameters()
    base = classifier.base
    top = [base.blocks[-1], base.final_norm] if trainable == "top_block" else []
    return [p for module in top + [classifier.head] for p in module.parameters()]


def fine_tune(classifier: ModelWithHead, ids: np.ndarray, labels: np.ndarray, steps: int, lr: float,
              trainable: str = "full", batch_size: int = 32, seed: int = 0) -> ModelWithHead:
    """AdamW (constant lr, no weight decay) on random batches of the labelled rows; pads are masked out."""
    optimizer = optim.AdamW(trainable_parameters(classifier, trainable), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    classifier.train()
    for _ in range(steps):
        rows = rng.integers(len(ids), size=batch_size)
        loss = F.cross_entropy(classifier(ids[rows], padding_mask=ids[rows] == PAD), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval()


def classifier_accuracy(classifier: ModelWithHead, ids: np.ndarray, labels: np.ndarray) -> float:
    with no_grad():
        return accuracy(labels, classifier(ids, padding_mask=ids == PAD).data.argmax(axis=-1))


def mlm_loss_of_base(base: TransformerEncoder, pretrained_path, texts: np.ndarray) -> float:
    """The masked-LM loss of `base` under the pretrained MLM head, on `texts` masked with a fixed seed: how much
    of its pretraining a (fine-tuned) base still knows."""
    masked_lm, _ = from_pretrained(pretrained_path, head="masked_lm")
    masked_lm.base.load_state_dict(base.state_dict())  # in place, so the tied decoder follows the embedding
    batch = mask_tokens(texts, MASK_ID, VOCAB_SIZE, np.random.default_rng(0), special_ids=SPECIAL_IDS)
    with no_grad():
        return masked_lm_loss(masked_lm(batch.inputs), batch.targets).item()


class FineTuningSetup:
    """What every cell shares: the pretrained MLM on disk, the labelled pool, the test set, the sizes."""

    def __init__(self, directory, fast: bool = True, seed: int = 0):
        self.config, self.seed = masked_lm_config(fast, seed), seed
        self.steps = 40 if fast else 200
        self.path = Path(directory) / "masked_lm.npz"
        masked_lm = pretrain_masked_lm(self.config, review_texts(4000 if fast else 20000, [seed, 2]))
        save_pretrained(masked_lm, self.path)
        self.base_config = masked_lm.base.config
        self.pool_ids, self.pool_labels = labelled_reviews(512, [seed, 5])
        self.test_ids, self.test_labels = labelled_reviews(300 if fast else 1000, [seed, 6])
        self.mlm_texts = review_texts(200 if fast else 1000, [seed, 3])

    def classifier(self, pretrained: bool) -> ModelWithHead:
        """A mean-pooling classifier: on the pretrained base (a new head, strict=False) or on a fresh one."""
        if pretrained:
            return from_pretrained(self.path, head="sequence_classification", strict=False, num_classes=2,
                                   pooling="mean")[0]
        manual_seed(self.seed)
        base = TransformerEncoder(**self.base_config)
        return ModelWithHead(base, SequenceClassificationHead.for_base(base, num_classes=2, pooling="mean"))

    def run(self, labels: int, lr: float = 1e-3, trainable: str = "full", pretrained: bool = True) -> dict:
        classifier = self.classifier(pretrained)
        fine_tune(classifier, self.pool_ids[:labels], self.pool_labels[:labels], self.steps, lr, trainable,
                  seed=self.seed)
        return {"labels": labels, "lr": lr, "trainable": trainable, "pretrained": pretrained,
                "accuracy": classifier_accuracy(classifier, self.test_ids, self.test_labels),
                "mlm_loss": mlm_loss_of_base(classifier.base, self.path, self.mlm_texts)}


def label_count_curve(setup: FineTuningSetup, label_counts=(32, 128, 512)) -> list[dict]:
    return [setup.run(labels, pretrained=pretrained) for labels in label_counts for pretrained in (True, False)]


def learning_rate_sweep(setup: FineTuningSetup, lrs=(1e-5, 1e-4, 1e-3, 1e-2), labels: int = 128) -> list[dict]:
    """Each cell with "forgetting": its masked-LM loss minus the pretrained base's."""
    before = mlm_loss_of_base(setup.classifier(True).base, setup.path, setup.mlm_texts)
    return [{**cell, "forgetting": cell["mlm_loss"] - before} for cell in (setup.run(labels, lr) for lr in lrs)]


def freezing(setup: FineTuningSetup, labels: int = 128, lr: float = 1e-2, choices=TRAINABLE) -> list[dict]:
    return [setup.run(labels, lr, trainable) for trainable in choices]


def fine_tuning_experiment(fast: bool = True, seed: int = 0) -> dict:
    """The three tables. Fast: 32 and 512 labels, lr 1e-5 against 1e-2, the frozen trunk against the top
    block, 40 fine-tuning steps. Full: every cell, 200 steps, a bigger pretrained model."""
    with tempfile.TemporaryDirectory() as directory:
        setup = FineTuningSetup(directory, fast, seed)
        if fast:
            return {"label_count_curve": label_count_curve(setup, (32, 512)),
                    "learning_rate_sweep": learning_rate_sweep(setup, (1e-5, 1e-2)),
                    "freezing": freezing(setup, choices=("frozen", "top_block")),
                    "majority": float(max(setup.test_labels.mean(), 1 - setup.test_labels.mean()))}
        return {"label_count_curve": label_count_curve(setup), "learning_rate_sweep": learning_rate_sweep(setup),
                "freezing": freezing(setup),
                "majority": float(max(setup.test_labels.mean(), 1 - setup.test_labels.mean()))}
