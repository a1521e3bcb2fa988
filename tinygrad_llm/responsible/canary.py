"""Canaries and exposure (Q37; Carlini et al. 2019, "The Secret Sharer"): does a language model memorise a secret
that appeared a few times in its training text?

Plant a sentence with a random secret, "my PIN is 4821", k times in the corpus and train. Then ask the model how
likely it finds the sentence with EVERY possible secret in its place (all 10^4 four-digit PINs) and rank them,
most likely first. A model that only learned the language puts the true PIN somewhere in the middle (it has no
reason to prefer it); a model that memorised it ranks it first. Exposure turns the rank into bits:

    exposure = log2(number of candidates) - log2(rank)

rank 1 of 10^4 is log2(10^4) = 13.3 bits (the whole secret is out); a typical rank of about half the
candidates is about 1 bit. Guessing from the model's ranking then takes `rank` tries instead of about 5,000.

Scoring is batched: every candidate sentence is one row, and a few forward passes of thousands of rows score
all 10^4 (one Python call per candidate would take 10^4 forward passes).
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad

PIN_TEMPLATE = "my PIN is {}"


def pin_candidates(digits: int = 4) -> list[str]:
    """Every PIN of `digits` digits, leading zeros kept: "0000" ... "9999" for 4 digits."""
    if not isinstance(digits, int) or not 1 <= digits <= 6:
        raise ValueError(f"pin_candidates: digits must be an integer in [1, 6] (10^digits sentences are scored), "
                         f"got {digits!r}")
    return [f"{number:0{digits}d}" for number in range(10**digits)]


def plant_canary(text: str, canary: str, copies: int, rng: np.random.Generator) -> str:
    """The text with `copies` lines holding the canary inserted at distinct random line breaks (each copy on a
    line of its own, as a leaked form or log line would be)."""
    if copies < 0 or "\n" in canary:
        raise ValueError(f"plant_canary: need copies >= 0 and a one-line canary, got copies={copies}, "
                         f"canary={canary!r}")
    lines = text.split("\n")
    if copies > len(lines):
        raise ValueError(f"plant_canary: the text has {len(lines)} lines, too few for {copies} distinct places")
    places = set(rng.choice(len(lines), size=copies, replace=False).tolist())
    planted = []
    for index, line in enumerate(lines):
        if index in places:
            planted.append(canary)
        planted.append(line)
    return "\n".join(planted)


def sentence_log_likelihoods(model, tokenizer, sentences: list[str], context: str = "\n",
                             batch_size: int = 2048) -> np.ndarray:
    """(len(sentences),): log p(sentence | context) under the model, in nats: the sum of the log-probabilities of
    the sentence's tokens, each given the context and the tokens before it. The context (a line break by
    default, since a planted canary starts a line) gives the first token something to be predicted from.

    Sentences of the same token length are scored together, batch_size rows per forward pass."""
    context_ids = list(tokenizer.encode(context))
    if not context_ids:
        raise ValueError("sentence_log_likelihoods: the context must encode to at least one token, so that the "
                         "sentence's first token is predicted from something (the default is '\\n')")
    encoded = [list(tokenizer.encode(sentence)) for sentence in sentences]
    if not encoded or not all(encoded):
        raise ValueError("sentence_log_likelihoods: need at least one sentence, and none empty")
    longest = len(context_ids) + max(map(len, encoded)) - 1
    if longest > model.max_context:
        raise ValueError(f"sentence_log_likelihoods: context + sentence take {longest} positions but the model "
                         f"sees {model.max_context}; use a shorter context or template")
    scores = np.empty(len(sentences))
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(index)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for length, indices in by_length.items():
                for start in range(0, len(indices), batch_size):
                    rows = indices[start:start + batch_size]
                    ids = np.array([context_ids + encoded[row] for row in rows])
                    logits = model(ids[:, :-1]).data[:, -length:].astype(np.float64)  # predict the sentence only
                    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
                    targets = ids[:, -length:]
                    scores[rows] = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0].sum(axis=1)
    finally:
        model.train(was_training)
    return scores


def secret_rank(log_likelihoods, secret_index: int) -> int:
    """1 + the number of OTHER candidates at least as likely as the secret (1 = the model's top guess). A tie
    counts against the secret, so an untrained model (all equal) gives the last rank and exposure 0: ties never
    pass for leakage."""
    log_likelihoods = np.asarray(log_likelihoods)
    return int((log_likelihoods >= log_likelihoods[secret_index]).sum())


def exposure(rank: int, num_candidates: int) -> float:
    """log2(num_candidates) - log2(rank), in bits: 0 for the last rank, log2(num_candidates) for the first."""
    if not 1 <= rank <= num_candidates:
        raise ValueError(f"exposure: rank must be in [1, num_candidates = {num_candidates}], got {rank}")
    return math.log2(num_candidates) - math.log2(rank)


def measure_exposure(model, tokenizer, secret: str, candidates: list[str], template: str = PIN_TEMPLATE,
                     baseline_secrets: int = 100, seed: int = 0, context: str = "\n") -> dict:
    """Rank and exposure of the true secret among all candidates, and as the baseline the same for
    `baseline_secrets` random other candidates (what a secret the model never saw would score)."""
    if secret not in candidates:
        raise ValueError(f"measure_exposure: the secret {secret!r} must be one of the candidates")
    log_likelihoods = sentence_log_likelihoods(model, tokenizer, [template.format(c) for c in candidates], context)
    secret_index = candidates.index(secret)
    others = np.delete(np.arange(len(candidates)), secret_index)
    baseline = np.random.default_rng(seed).choice(others, size=min(baseline_secrets, len(others)), replace=False)
    baseline_ranks = [secret_rank(log_likelihoods, index) for index in baseline]
    rank = secret_rank(log_likelihoods, secret_index)
    return {"num_candidates": len(candidates), "rank": rank, "exposure": exposure(rank, len(candidates)),
            "log_likelihood": float(log_likelihoods[secret_index]),
            "baseline_median_rank": float(np.median(baseline_ranks)),
            "baseline_mean_exposure": float(np.mean([exposure(r, len(candidates)) for r in baseline_ranks]))}
