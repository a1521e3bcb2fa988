"""Chapter 11 experiment (Q27, M48): fine-tuning a pretrained masked LM on a small labelled task.

The task has a planted ground truth: a review is positive exactly when a positive adjective appears that is
not negated (keyword_sentiment in tinygrad_llm/transfer/multilingual.py). Each review opens with a rating digit
that shares the review's hidden mood with its adjective and its verb; the labelled reviews show [MASK] there.

    pretrain       a masked LM on unlabelled reviews (rating digits included), saved with save_pretrained
    fine-tune      from_pretrained(path, head="sequence_classification", strict=False): the pretrained base with
                   a NEW classifier head reading the state at the masked rating slot, trained with AdamW

Pretraining can only hand over what it learned. The MLM learns the slots first (which kind of word goes where,
which already beats the bigram baseline) and the mood much later, suddenly: filling the masked rating slot with a
high or a low digit sits at chance (0.5) for hundreds of steps, then jumps to about 0.9, the most the adjective
and the verb allow. The mood is a small share of the loss (the rating, the adjective and the verb, each selected
15% of the time) and the rest of the loss sets the gradient's noise, so the batch size decides whether it is
found. Measured (rating-slot accuracy on 1000 reviews, lr 1e-2 with cosine decay, 1000 steps): with batches of
32 reviews, seed 0 jumped at step 700 and seeds 1 and 2 were still at chance at the end (0.50, 0.49), with the
masked adjective no better than chance at guessing its polarity from the visible digit either; with batches of
128 (about 1.3 times the time per step at this width), seeds 0, 2 and 1 jumped at steps 400, 500 and 600 and all
three ended at 0.89-0.91. A base that knows only the slots is barely a better start for sentiment than a random
one, so `rating_slot_accuracy` reports how much mood the base holds, next to the curve it explains.

The full mode on three seeds, each with its own pretraining (FineTuningSetup(directory, fast=False, seed=seed),
then label_count_curve(setup); test accuracy on 1000 reviews, pretrained / from scratch):

    seed  rating slot  32 labels      128 labels     512 labels
       0        0.906  0.953 / 0.646  0.999 / 0.989  1.000 / 1.000
       1        0.890  0.948 / 0.713  0.992 / 0.992  1.000 / 1.000
       2        0.913  0.831 / 0.622  0.985 / 0.986  1.000 / 1.000

The masked slot is where the MLM gathers the mood to guess the stars, so the head pools there ("first"); a mean
over every token dilutes it. Negation never changes which words surround it in this language, so pretraining
cannot teach its scope: that part of the rule comes from the labels, in both arms.

Three questions, each a function returning plain numbers:

    label_count_curve   test accuracy with 32, 128, 512 labels, fine-tuned from the MLM against the same model
                        trained from scratch; each arm picks its learning rate on its own validation split (a
                        quarter of its labels), so both get the same labels and the same tuning budget
    learning_rate_sweep 1e-5 .. 1e-2: task accuracy, and forgetting, how far the masked-LM loss of the fine-tuned
                        base (under its original MLM head) rises above the pretrained one (M48)
    freezing            which parameters train: the head only ("frozen" trunk: zero forgetting by construction),
                        the top block and the head ("top_block"), or everything ("full")

`fast=True` is the CI size: the short pretraining (which has not found the mood), fewer cells and steps, the
same code; FineTuningSetup's `pretraining_steps` and `fine_tuning_steps` shrink it further for a quick look.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..metrics.classification import accuracy
from ..nn import TransformerEncoder
from ..nn import functional as F
from ..random import manual_seed
from ..training import TrainConfig
from ..transfer.heads import ModelWithHead, SequenceClassificationHead
from ..transfer.masking import mask_tokens, masked_lm_loss
from ..transfer.multilingual import HIGH_RATINGS, LOW_RATINGS, PAD, RATING_POSITION, WORD_ID, review_corpus
from ..transfer.pretrained import from_pretrained, save_pretrained
from .masked_lm import MASK_ID, REVIEW_WINDOW, SPECIAL_IDS, VOCAB_SIZE, masked_lm_config, pretrain_masked_lm, review_texts

TRAINABLE = ("frozen", "top_block", "full")
POOLING = "first"  # the rating slot, position 0, which the labelled reviews show as [MASK]


def pretraining_config(fast: bool = True, seed: int = 0, steps: int | None = None) -> TrainConfig:
    """masked_lm's fast encoder (width 32, 2 layers). Fast: its 250 steps of 32 reviews, which learn the slots
    but not the mood. Full: 1000 steps of 128 reviews at lr 1e-2: batches large enough for the weak mood signal
    to stand out of the noise, so the mood is found on every seed tried (see the module docstring). `steps`
    overrides the number of steps (the warmup stays 5% of them)."""
    config = masked_lm_config(fast=True, seed=seed)
    if not fast:
        config = replace(config, steps=1000, warmup_steps=50, batch_size=128, lr=1e-2, min_lr=1e-3)
    return config if steps is None else replace(config, steps=steps, warmup_steps=steps // 20)


def labelled_reviews(count: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """(ids (count, REVIEW_WINDOW), labels (count,)): keyword-sentiment reviews with the rating digit masked, as
    the MLM saw a masked digit in pretraining (a visible digit would nearly give the label away)."""
    ids, labels = review_corpus(count, REVIEW_WINDOW, np.random.default_rng(seed))
    ids[:, RATING_POSITION] = MASK_ID
    return ids, labels


def rating_slot_accuracy(masked_lm: ModelWithHead, texts: np.ndarray) -> float:
    """How often the MLM, shown [MASK] in the rating slot, ranks a digit of the right kind (high or low) above
    the other kind: how much of the review's mood the pretrained base has learned to gather there (0.5: none)."""
    high, low = [WORD_ID[d] for d in HIGH_RATINGS], [WORD_ID[d] for d in LOW_RATINGS]
    is_high = np.isin(texts[:, RATING_POSITION], high)
    masked = texts.copy()
    masked[:, RATING_POSITION] = MASK_ID
    with no_grad():
        logits = masked_lm(masked, padding_mask=masked == PAD).data[:, RATING_POSITION]
    return float(np.mean((logits[:, high].max(axis=1) > logits[:, low].max(axis=1)) == is_high))


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

    def __init__(self, directory, fast: bool = True, seed: int = 0, pretraining_steps: int | None = None,
                 fine_tuning_steps: int | None = None):
        self.seed = seed
        self.steps = fine_tuning_steps or (60 if fast else 150)
        self.path = Path(directory) / "masked_lm.npz"
        self.pretraining_config = pretraining_config(fast, seed, pretraining_steps)
        masked_lm = pretrain_masked_lm(self.pretraining_config, review_texts(4000 if fast else 20000, [seed, 2]))
        save_pretrained(masked_lm, self.path)
        self.base_config = masked_lm.base.config
        self.pool_ids, self.pool_labels = labelled_reviews(512, [seed, 5])
        self.test_ids, self.test_labels = labelled_reviews(300 if fast else 1000, [seed, 6])
        self.mlm_texts = review_texts(200 if fast else 1000, [seed, 3])
        self.rating_slot_accuracy = rating_slot_accuracy(masked_lm, self.mlm_texts)

    def classifier(self, pretrained: bool) -> ModelWithHead:
        """A classifier reading the masked rating slot: on the pretrained base (a new head, strict=False) or on
        a fresh base of the same size. The fresh weights are drawn after manual_seed(seed), so every call gives
        the same start whatever ran before: the cells differ only in what they set out to compare."""
        manual_seed(self.seed)
        if pretrained:
            return from_pretrained(self.path, head="sequence_classification", strict=False, num_classes=2,
                                   pooling=POOLING)[0]
        base = TransformerEncoder(**self.base_config)
        return ModelWithHead(base, SequenceClassificationHead.for_base(base, num_classes=2, pooling=POOLING))

    def run(self, labels: int, lr: float = 1e-3, trainable: str = "full", pretrained: bool = True) -> dict:
        """Fine-tune on the first `labels` rows of the pool at `lr`; test accuracy and the base's MLM loss."""
        classifier = self.classifier(pretrained)
        fine_tune(classifier, self.pool_ids[:labels], self.pool_labels[:labels], self.steps, lr, trainable,
                  seed=self.seed)
        return {"labels": labels, "lr": lr, "trainable": trainable, "pretrained": pretrained,
                "accuracy": classifier_accuracy(classifier, self.test_ids, self.test_labels),
                "mlm_loss": mlm_loss_of_base(classifier.base, self.path, self.mlm_texts)}

    def tuned_run(self, labels: int, lrs, pretrained: bool) -> dict:
        """Fine-tune on three quarters of the `labels` rows at each of `lrs`, keep the one that scores best on
        the last quarter (ties: the first), and report its test accuracy: a learning rate chosen from the arm's
        own labels, never from the test set."""
        split = labels * 3 // 4
        train_ids, train_labels = self.pool_ids[:split], self.pool_labels[:split]
        val_ids, val_labels = self.pool_ids[split:labels], self.pool_labels[split:labels]
        best = None
        for lr in lrs:
            classifier = fine_tune(self.classifier(pretrained), train_ids, train_labels, self.steps, lr,
                                   seed=self.seed)
            val_accuracy = classifier_accuracy(classifier, val_ids, val_labels)
            if best is None or val_accuracy > best[0]:
                best = (val_accuracy, lr, classifier)
        val_accuracy, lr, classifier = best
        return {"labels": labels, "pretrained": pretrained, "lr": lr, "val_accuracy": val_accuracy,
                "accuracy": classifier_accuracy(classifier, self.test_ids, self.test_labels)}


def label_count_curve(setup: FineTuningSetup, label_counts=(32, 128, 512), lrs=(1e-3, 3e-3, 1e-2)) -> list[dict]:
    """For each label count, the pretrained and the from-scratch arm, each with its own tuned learning rate."""
    return [setup.tuned_run(labels, lrs, pretrained) for labels in label_counts for pretrained in (True, False)]


def learning_rate_sweep(setup: FineTuningSetup, lrs=(1e-5, 1e-4, 1e-3, 1e-2), labels: int = 128) -> list[dict]:
    """Each cell with "forgetting": its masked-LM loss minus the pretrained base's."""
    before = mlm_loss_of_base(setup.classifier(True).base, setup.path, setup.mlm_texts)
    return [{**cell, "forgetting": cell["mlm_loss"] - before} for cell in (setup.run(labels, lr) for lr in lrs)]


def freezing(setup: FineTuningSetup, labels: int = 128, lr: float = 1e-2, choices=TRAINABLE) -> list[dict]:
    return [setup.run(labels, lr, trainable) for trainable in choices]


def fine_tuning_experiment(fast: bool = True, seed: int = 0) -> dict:
    """The three tables, the pretrained base's rating-slot accuracy and the majority-class rate. Fast: the short
    pretraining, 32 and 512 labels at one learning rate (1e-2), lr 1e-5 against 1e-2, the frozen trunk against
    the top block, 60 fine-tuning steps. Full: the long pretraining, every cell, 150 steps."""
    with tempfile.TemporaryDirectory() as directory:
        setup = FineTuningSetup(directory, fast, seed)
        majority = float(max(setup.test_labels.mean(), 1 - setup.test_labels.mean()))
        if fast:
            tables = {"label_count_curve": label_count_curve(setup, (32, 512), lrs=(1e-2,)),
                      "learning_rate_sweep": learning_rate_sweep(setup, (1e-5, 1e-2)),
                      "freezing": freezing(setup, choices=("frozen", "top_block"))}
        else:
            tables = {"label_count_curve": label_count_curve(setup), "learning_rate_sweep": learning_rate_sweep(setup),
                      "freezing": freezing(setup)}
        return {**tables, "rating_slot_accuracy": setup.rating_slot_accuracy, "majority": majority}
