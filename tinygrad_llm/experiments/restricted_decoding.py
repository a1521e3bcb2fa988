"""Chapter 14 experiment: how often a banned n-gram comes out, with and without the ban, and what the ban
costs (Q38).

A small character GPT is trained on the embedded corpus. From prompts cut out of the validation text it
samples N continuations (temperature 1, so the samples follow the model's own distribution) twice: plainly,
and with ban_ngrams([the banned word]). For each run it reports:

    samples_with_ngram       share of the N samples in which a generated token completes the banned n-gram
    occurrences_per_1k       completed occurrences per 1,000 generated tokens
    model_perplexity         exp(mean negative log-likelihood) of the generated tokens under the UNFILTERED
                             model: how typical of the model the sampled text is
    ban_fired                share of generation steps at which the ban removed a token (in the unfiltered
                             run: would have removed, because the text ended with the n-gram's prefix)
    kl_per_token             mean over all steps of KL(filtered || model) = -log(1 - banned mass): the
                             distortion the ban causes, in nats per token (0 at steps where it did not fire;
                             in the unfiltered run, what the ban would have cost on that text)

What to expect: with the ban the rate drops to exactly 0 (the token that completes the n-gram has
probability 0 whenever its prefix ends the text); without it a common word appears in many samples. The
cost is small when the ban fires rarely or when the model put little mass on the banned continuation, and
grows with how much the model wanted to say it: where the ban fires, a likely token is taken away, so the
banned run's samples look a little less like the model's own text (a higher model_perplexity). Compare the
two runs' model_perplexity with kl_per_token in mind: the two sample sets differ by chance too.
"""
from __future__ import annotations

import numpy as np

from ..generation import generate
from ..responsible.restricted_decoding import ban_ngrams, ngram_occurrences
from ..training import TrainConfig, train_language_model


def model_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """A small character GPT: fast mode trains in a few seconds, full in about a minute on 2 cores."""
    size = (dict(max_chars=20_000, steps=200, embed_dim=48, num_layers=2) if fast else
            dict(max_chars=300_000, steps=1500, embed_dim=128, num_layers=4))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", context_size=32, batch_size=16, num_heads=4,
                       lr=3e-3, min_lr=3e-4, warmup_steps=size["steps"] // 20, eval_every=size["steps"],
                       eval_batches=4, seed=seed, **size)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def measure_run(model, prompts: np.ndarray, new_tokens: int, ngram, processors, seed: int) -> dict:
    """Sample one continuation per prompt row (B, P) and score it as the module docstring describes."""
    ids, raw_logits = generate(model, prompts, new_tokens, temperature=1.0, seed=seed, return_logits=True,
                               logits_processors=processors)
    prompt_length, reach_back = prompts.shape[1], len(ngram) - 1
    occurrences = np.array([ngram_occurrences(row[prompt_length - reach_back:], ngram) for row in ids])
    log_probs = _log_softmax(raw_logits.astype(np.float64))  # (B, n, V), the model before any ban
    chosen = np.take_along_axis(log_probs, ids[:, prompt_length:, None], axis=-1)[..., 0]
    ban = ban_ngrams([ngram])
    banned_mass = np.stack([np.where(np.isneginf(ban(ids[:, :prompt_length + step], raw_logits[:, step])),
                                     np.exp(log_probs[:, step]), 0.0).sum(axis=-1)
                            for step in range(new_tokens)], axis=1)
    return {"samples_with_ngram": float((occurrences > 0).mean()),
            "occurrences_per_1k": float(1000 * occurrences.sum() / (len(ids) * new_tokens)),
            "model_perplexity": float(np.exp(-chosen.mean())),
            "ban_fired": float((banned_mass > 0).mean()),
            "kl_per_token": float(-np.log1p(-banned_mass).mean())}


def banned_ngram_rates(fast: bool = True, seed: int = 0, word: str = "the", run=None) -> dict:
    """Sample N = 1,000 (fast) or 10,000 (full) continuations with and without a ban on `word`; returns
    {"ngram": word, "samples": N, "new_tokens": n, "unfiltered": {...}, "banned": {...}} with the measures
    of measure_run, plus the model's size. `run` reuses an already trained run (a TrainingRun)."""
    run = run if run is not None else train_language_model(model_config(fast, seed), progress=False)
    samples, new_tokens, prompt_length, batch = (1000, 24, 8, 1000) if fast else (10_000, 48, 16, 1000)
    ngram = run.tokenizer.encode(word)
    starts = np.random.default_rng(seed).integers(0, len(run.val_ids) - prompt_length, size=samples)
    prompts = np.stack([run.val_ids[start:start + prompt_length] for start in starts])

    def measured(processors):
        parts = [measure_run(run.model, prompts[i:i + batch], new_tokens, ngram, processors, seed + i)
                 for i in range(0, samples, batch)]
        return {key: float(np.mean([part[key] for part in parts])) for key in parts[0]}  # equal-sized batches

    return {"ngram": word, "samples": samples, "new_tokens": new_tokens, "parameters": run.model.num_parameters(),
            "unfiltered": measured([]), "banned": measured([ban_ngrams([ngram])])}
