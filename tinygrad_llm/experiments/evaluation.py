"""Chapter 8 experiments: evaluating language models and classifiers (Q17), and error analysis (Q18).

- bleu_worked_example: the worked BLEU example of Q17 step by step (references first vs swapped, smoothing for
  short sentences, sentence vs corpus BLEU).
- perplexity_and_bleu_during_training: a small character GPT on the embedded corpus; validation perplexity starts
  near the vocabulary size V and falls, and the BLEU of its greedy continuations rises.
- weak_slice_error_analysis: a synthetic classification problem with a planted weak slice. Slicing and the
  confusion matrix find it, reweighting or augmentation fixes it, measured on FRESH data; training on the
  misclassified evaluation examples instead inflates accuracy on that set only (M34).

Every function takes `fast` (CI sizes) and `seed` and returns a dict of plain numbers, lists and arrays.
"""
from __future__ import annotations

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..generation import generate
from ..metrics import (SMOOTHING, accuracy, confidences_and_correct, confusion_matrix, corpus_bleu,
                       evaluate_language_model, expected_calibration_error, reliability_bins, sentence_bleu)
from ..nn import Linear, ReLU, Sequential
from ..nn import functional as F
from ..random import manual_seed
from ..tensor import Tensor
from ..training import TrainConfig, build_model, prepare_text_data
from ..training.loop import build_optimizer, optimizer_step
from ..training.mixed_precision import mixed_precision_for

HYPOTHESIS = "the quick brown fox jumps over the dog"
REFERENCE = "the quick brown fox jumps over the lazy dog today"
SHORT = "the cat sat"


# ================================================================================================ Q17: BLEU
def _steps(result) -> dict:
    """The numbers BLEU is made of, as plain Python values."""
    return {"score": result.score, "matches": list(result.matches), "counts": list(result.counts),
            "precisions": list(result.precisions), "brevity_penalty": result.brevity_penalty,
            "hyp_length": result.hyp_length, "ref_length": result.ref_length}


def bleu_worked_example(fast: bool = True, seed: int = 0) -> dict:
    """The worked BLEU example of Q17 with every intermediate count (fast and seed change nothing: it is exact).

    - "correct": sentence_bleu([reference], hypothesis); "swapped": the two sentences exchanged (M33);
    - "short": identical 3-token sentences under every smoothing (no 4-gram exists: unsmoothed BLEU is 0);
    - "corpus_vs_sentences": corpus BLEU of both pairs vs the mean of their sentence BLEUs.
    """
    hypothesis, reference, short = HYPOTHESIS.split(), REFERENCE.split(), SHORT.split()
    correct, swapped = sentence_bleu([reference], hypothesis), sentence_bleu([hypothesis], reference)
    smoothing = {name: sentence_bleu([short], short, smoothing=name).score for name in SMOOTHING}
    smoothing["floor"] = sentence_bleu([short], short, smoothing="floor", smooth_value=0.1).score
    pairs = [([reference], hypothesis), ([short], short)]
    return {
        "hypothesis": hypothesis, "reference": reference,
        "correct": _steps(correct), "swapped": _steps(swapped),
        "short_unsmoothed": smoothing["none"], "short_floor_0.1": smoothing["floor"], "short_by_smoothing": smoothing,
        "short_steps": _steps(sentence_bleu([short], short, smoothing="floor", smooth_value=0.1)),
        "corpus_bleu": corpus_bleu([r for r, _ in pairs], [h for _, h in pairs]).score,
        "mean_sentence_bleu": float(np.mean([sentence_bleu(r, h).score for r, h in pairs])),
    }


# ============================================================================================ Q17: PPL while training
def lm_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """A small character GPT on the embedded corpus (fast: 20 kB, width 32, 240 steps; full: 200 kB, width 64,
    800 steps)."""
    size = (dict(max_chars=20_000, steps=240, embed_dim=32) if fast else
            dict(max_chars=200_000, steps=800, embed_dim=64))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_layers=2, num_heads=4, context_size=32,
                       batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=size["steps"] // 20, weight_decay=0.1,
                       clip_norm=1.0, dropout=0.0, seed=seed, **size)


def continuation_bleu(model, ids: np.ndarray, prompt_length: int, continuation_length: int, count: int) -> float:
    """Corpus BLEU (character tokens, 'exp' smoothing) of greedy continuations of `count` evenly spaced prompts of
    the stream `ids`, against the text that really follows each prompt."""
    starts = np.linspace(0, len(ids) - prompt_length - continuation_length - 1, count).astype(int)
    prompts = np.stack([ids[s:s + prompt_length] for s in starts])
    was_training = model.training
    model.eval()
    with no_grad():
        generated = generate(model, prompts, continuation_length, temperature=0.0)[:, prompt_length:]
    model.train(was_training)
    truths = [ids[s + prompt_length:s + prompt_length + continuation_length].tolist() for s in starts]
    return corpus_bleu([[truth] for truth in truths], [row.tolist() for row in generated], smoothing="exp").score


def perplexity_and_bleu_during_training(fast: bool = True, seed: int = 0) -> dict:
    """Validation perplexity and continuation BLEU of a character GPT, before and during training.

    An untrained GPT's logits are nearly equal, so its PPL starts near V (a uniform model has PPL = V exactly).
    Perplexity is measured on the whole validation split (evaluate_language_model, block = context size).
    """
    config = lm_config(fast, seed)
    data = prepare_text_data(config)
    manual_seed(config.seed)
    model = build_model(config, data.tokenizer.vocab_size)
    master_weights, scaler = mixed_precision_for(model, config.precision)
    optimizer, scheduler = build_optimizer(master_weights, config)
    data_rng = np.random.default_rng([config.seed, 1])
    val_ids = data.val_ids[:4_000] if fast else data.val_ids[:20_000]
    checkpoints = sorted({0, *np.linspace(0, config.steps, 7 if fast else 9).astype(int).tolist()})
    bleu_prompts = dict(prompt_length=24, continuation_length=24, count=12 if fast else 32)
    steps, perplexities, bleus = [], [], []
    for step in range(config.steps + 1):
        if step in checkpoints:
            steps.append(step)
            perplexities.append(evaluate_language_model(model, val_ids, config.context_size)["perplexity"])
            bleus.append(continuation_bleu(model, data.val_ids, **bleu_prompts))
        if step < config.steps:
            optimizer_step(model, master_weights, scaler, optimizer, scheduler, data.train_ids, config, data_rng)
    return {"vocab_size": data.tokenizer.vocab_size, "steps": steps, "perplexity": perplexities, "bleu": bleus,
            "val_tokens": len(val_ids) - 1, "bleu_prompts": bleu_prompts}


# ================================================================================================ Q18: error analysis
SOURCES = ("news", "web", "forum", "legal")
WEAK_SLICE = "legal"
NUM_CLASSES, NUM_FEATURES = 4, 8
TRAIN_WEAK_SHARE = 0.005
COMMON_PRIORS = (0.33, 0.33, 0.32, 0.02)  # class frequencies in news, web and forum
WEAK_PRIORS = (0.1, 0.1, 0.1, 0.7)  # in legal, class 3 (rare elsewhere) dominates


def slice_data(n: int, weak_share: float, rng: np.random.Generator, label_noise: float = 0.05):
    """(X, y, source) of a 4-class problem with a planted weak slice, "legal".

    X has 9 columns: 8 features, where each class is a Gaussian blob around a fixed centre (the blobs overlap, so
    where they meet the class frequencies decide), and a ninth that is 1 for legal examples (the source is known,
    as a document's domain usually is). Class 3 is rare in news, web and forum (2%) but makes up 70% of legal.
    A model that saw little legal text has learnt that class 3 is rare and seldom predicts it: legal suffers.
    A share label_noise of every set gets a random label (errors no model can fix). The centres are the same
    for every call (fixed seed), so all sets come from one problem.
    """
    centres = np.random.default_rng(1234).normal(0.0, 0.5, size=(NUM_CLASSES, NUM_FEATURES))
    weak = rng.random(n) < weak_share
    source = np.where(weak, SOURCES.index(WEAK_SLICE), rng.choice(len(SOURCES) - 1, size=n))
    y = np.where(weak, rng.choice(NUM_CLASSES, size=n, p=WEAK_PRIORS), rng.choice(NUM_CLASSES, size=n,
                                                                                 p=COMMON_PRIORS))
    X = np.concatenate([centres[y] + rng.normal(size=(n, NUM_FEATURES)), weak[:, None]], axis=1)
    noisy = rng.random(n) < label_noise
    y = np.where(noisy, rng.integers(0, NUM_CLASSES, size=n), y)
    return X.astype(np.float32), y.astype(np.int64), np.array(SOURCES)[source]


def train_classifier(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, steps: int = 300,
                     seed: int = 0, hidden: int = 32, weight_decay: float = 1e-4) -> Sequential:
    """An MLP 9 -> hidden -> hidden -> 4 trained full-batch with SGD + momentum on the (optionally per-example
    weighted) mean cross-entropy sum(w_i * loss_i) / sum(w_i).

    Plain SGD on a mean loss gives each slice a share of the gradient equal to its share of the data: a slice
    that is 0.5% of the training set barely moves the weights. (Adam rescales every weight's step, so it would
    learn the rare legal column quickly and hide the effect this experiment is about.)
    """
    manual_seed(seed)
    model = Sequential(Linear(NUM_FEATURES + 1, hidden), ReLU(), Linear(hidden, hidden), ReLU(),
                       Linear(hidden, NUM_CLASSES))
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=weight_decay)
    weights = np.ones(len(y), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    weights = Tensor(weights / weights.sum())
    inputs = Tensor(X)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (F.cross_entropy(model(inputs), y, reduction="none") * weights).sum()
        loss.backward()
        optimizer.step()
    return model


def predict(model, X: np.ndarray) -> np.ndarray:
    """Class probabilities (float64) in eval mode without a graph."""
    with no_grad():
        logits = model(Tensor(X)).data.astype(np.float64)
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


def accuracy_by_slice(y: np.ndarray, predictions: np.ndarray, source: np.ndarray) -> dict:
    return {name: accuracy(y[source == name], predictions[source == name]) for name in SOURCES}


def _report(model, X, y, source) -> dict:
    """Overall and per-slice accuracy of `model` on one set."""
    predictions = predict(model, X).argmax(axis=1)
    return {"accuracy": accuracy(y, predictions), "by_slice": accuracy_by_slice(y, predictions, source)}


def weak_slice_error_analysis(fast: bool = True, seed: int = 0) -> dict:
    """Find a planted weak slice, fix it, re-measure on fresh data; contrast with training on evaluation errors.

    Sets: train (0.5% legal), evaluation (25% legal: the set error analysis reads), fresh (25% legal, never used
    for any decision). Steps:
    1. baseline: per-slice accuracy and the confusion matrix on the evaluation set; the highest-loss examples;
       calibration (ECE) on fresh data;
    2. fixes of the cause, both re-measured on FRESH data: reweighting (legal training examples weighted up to
       the evaluation share) and augmentation (each legal training example copied with Gaussian jitter);
    3. the leak (M34): add the misclassified EVALUATION examples to training; accuracy on that error set and on
       the evaluation set soars, fresh accuracy moves much less.
    """
    sizes = dict(train=2000, evaluation=800, fresh=2000) if fast else dict(train=3000, evaluation=2000, fresh=8000)
    rng = np.random.default_rng([seed, 18])
    X_train, y_train, s_train = slice_data(sizes["train"], TRAIN_WEAK_SHARE, rng)
    X_eval, y_eval, s_eval = slice_data(sizes["evaluation"], 0.25, rng)
    X_fresh, y_fresh, s_fresh = slice_data(sizes["fresh"], 0.25, rng)

    baseline = train_classifier(X_train, y_train, seed=seed)
    eval_probs = predict(baseline, X_eval)
    eval_predictions = eval_probs.argmax(axis=1)
    losses = -np.log(eval_probs[np.arange(len(y_eval)), y_eval] + 1e-12)
    worst = np.argsort(losses)[::-1][:20]
    by_slice = accuracy_by_slice(y_eval, eval_predictions, s_eval)
    weak = s_eval == WEAK_SLICE
    confidences, correct = confidences_and_correct(predict(baseline, X_fresh), y_fresh)

    legal_train = s_train == WEAK_SLICE
    weights = np.where(legal_train, 0.25 / legal_train.mean(), 1.0)
    reweighted = train_classifier(X_train, y_train, weights=weights, seed=seed)
    copies = 20
    X_augmented = np.concatenate([X_train] + [X_train[legal_train] + np.pad(rng.normal(0, 0.3, size=(legal_train.sum(),
                                  NUM_FEATURES)), ((0, 0), (0, 1))).astype(np.float32) for _ in range(copies)])
    y_augmented = np.concatenate([y_train] + [y_train[legal_train]] * copies)
    augmented = train_classifier(X_augmented, y_augmented, seed=seed)

    errors = eval_predictions != y_eval
    repeats = 5  # the errors repeated, as a practitioner "making sure the model learns them" would
    leaked = train_classifier(np.concatenate([X_train] + [X_eval[errors]] * repeats),
                              np.concatenate([y_train] + [y_eval[errors]] * repeats), seed=seed)

    fresh = {name: _report(model, X_fresh, y_fresh, s_fresh) for name, model in
             (("baseline", baseline), ("reweighted", reweighted), ("augmented", augmented), ("leaked", leaked))}
    return {
        "sizes": sizes, "slice_shares": {"train": float(legal_train.mean()), "evaluation": float(weak.mean())},
        "evaluation_labels": y_eval, "evaluation_predictions": eval_predictions, "evaluation_sources": s_eval,
        "evaluation_by_slice": by_slice, "weakest_slice": min(by_slice, key=by_slice.get),
        "confusion_all": confusion_matrix(y_eval, eval_predictions, labels=range(NUM_CLASSES)),
        "confusion_weak": confusion_matrix(y_eval[weak], eval_predictions[weak], labels=range(NUM_CLASSES)),
        "worst_sources": s_eval[worst].tolist(), "worst_losses": losses[worst].tolist(),
        "ece_fresh": expected_calibration_error(confidences, correct),
        "reliability_fresh": reliability_bins(confidences, correct),
        "fresh": fresh,
        "fix_gain_fresh": fresh["reweighted"]["by_slice"][WEAK_SLICE] - fresh["baseline"]["by_slice"][WEAK_SLICE],
        "augment_gain_fresh": fresh["augmented"]["by_slice"][WEAK_SLICE] - fresh["baseline"]["by_slice"][WEAK_SLICE],
        "num_errors": int(errors.sum()),
        "leak_error_set": {"before": 0.0, "after": accuracy(y_eval[errors], predict(leaked, X_eval[errors]).argmax(1))},
        "leak_evaluation": {"before": accuracy(y_eval, eval_predictions),
                            "after": accuracy(y_eval, predict(leaked, X_eval).argmax(axis=1))},
        "leak_fresh": {"before": fresh["baseline"]["accuracy"], "after": fresh["leaked"]["accuracy"]},
    }


def gains_in_points(result: dict) -> dict:
    """The Q18 comparison in accuracy points: the fix's slice gain on fresh data, and the leak's gain on its error
    set, on the evaluation set and on fresh data."""
    def points(pair):
        return 100.0 * (pair["after"] - pair["before"])

    return {"fix_slice_fresh": 100.0 * result["fix_gain_fresh"],
            "augment_slice_fresh": 100.0 * result["augment_gain_fresh"],
            "leak_error_set": points(result["leak_error_set"]), "leak_evaluation": points(result["leak_evaluation"]),
            "leak_fresh": points(result["leak_fresh"])}

