"""Chapter 9 experiments: measuring a trained language model and running it fast (Q17's perplexity, Q19, Q21).

One small character-level GPT (`train_model`) is trained once and every experiment reads it through `run=`
(each trains its own when called without one, so it can also run alone).

Perplexity (Q17). PPL = exp(mean NLL per token). `perplexity_from_scratch` shows it starting near V (an untrained
model is close to uniform, and a uniform model has PPL = V exactly) and falling as the model trains.
`tokenizer_dependence` shows why two models' PPLs are comparable only under one tokenizer: a BPE model
predicts longer units, so its per-token PPL is larger even when it predicts the text better. Bits per byte
is the unit that does not depend on the tokenizer.

Decoding (Q19). `sampling_comparison` continues the same validation prompts with greedy, temperature, top-k
and top-p decoding, and scores each setting on diversity (distinct-n of the generated tokens) and quality
(their mean NLL under the model itself). `sampling_matches_softmax` is the chi-square test that sampling with
nothing filtered (k = V, p = 1) draws tokens with the softmax's probabilities, on the trained model's logits.
Beam search is the subject of a later chapter and is left out here. M20 (a prompt's argmax is not a
continuation) reuses chapter 5's `argmax_vs_loop` on this chapter's model.

Speed (Q21, M38, M39). `attention_scaling` times attention against T (log-log slope about 2).
`kv_cache_speedup` generates with and without the KV cache: per-token latency grows with the position
without it and stays nearly flat with it; the tokens are identical, and the cache holds 2*L*T*d values per
sequence. `constant_factor_vs_cache` contrasts a constant-factor saving (half the layers, what structured
pruning gives) with the cache's change of exponent. `allocator_reuse` times writing into a kept buffer
against a freshly allocated one (the reason freeing an allocator's cached memory makes code slower).

Timings depend on the machine and on what else runs on it: each result is a ratio or a slope measured
within one call, and no test asserts on time.
"""
from __future__ import annotations

import math
import time
from statistics import NormalDist

import numpy as np

from ..autograd import no_grad
from ..data import ByteBPETokenizer, load_text, train_val_split
from ..generation import generate, sample_next_token
from ..kernels.numba_cpu import attention as numba_attention
from ..kernels.reference import attention as reference_attention
from ..metrics import distinct_n, evaluate_language_model, perplexity
from ..nn import GPT, BigramLanguageModel, KVCache
from ..random import manual_seed
from ..training import TrainConfig, build_model, estimate_loss, train_language_model
from .language_models import COUNT_BIGRAM_ADD_K, argmax_vs_loop

__all__ = [
    "SAMPLING_SETTINGS", "model_config", "train_model", "perplexity_from_scratch", "tokenizer_dependence",
    "sampling_comparison", "sampling_matches_softmax", "argmax_vs_loop", "attention_scaling", "kv_cache_speedup",
    "constant_factor_vs_cache", "allocator_reuse",
]

# Each decoding rule compared in Q19. "tau = 1.0" is plain sampling from the model: the distribution that
# top-k and top-p truncate, and the one whose NLL matches the model's loss on real text.
SAMPLING_SETTINGS = {
    "greedy": dict(temperature=0.0),
    "tau = 0.5": dict(temperature=0.5),
    "tau = 0.8": dict(temperature=0.8),
    "tau = 1.0": dict(temperature=1.0),
    "tau = 1.2": dict(temperature=1.2),
    "top-k 5": dict(temperature=1.0, top_k=5),
    "top-p 0.9": dict(temperature=1.0, top_p=0.9),
}


# ================================================================================================ the model
def model_config(fast: bool = True, seed: int = 0) -> TrainConfig:
    """The chapter's GPT: characters of the embedded corpus, 2 blocks, context 64 (fast: 32).

    Full: 300 kB of text, width 128, 1200 steps (a few minutes on 2 cores, validation PPL about 4).
    Fast (CI): 20 kB, width 32, 300 steps (seconds; PPL about 13: weak, but every trend below still shows).
    """
    size = (dict(max_chars=20_000, steps=300, embed_dim=32, context_size=32, eval_every=50) if fast else
            dict(max_chars=300_000, steps=1200, embed_dim=128, context_size=64, eval_every=100))
    return TrainConfig(model="gpt", corpus="embedded", tokenizer="char", num_layers=2, num_heads=4, batch_size=16,
                       lr=3e-3, min_lr=3e-4, warmup_steps=size["steps"] // 20, weight_decay=0.1, clip_norm=1.0,
                       eval_batches=8, dropout=0.0, seed=seed, **size)


def train_model(fast: bool = True, seed: int = 0):
    """Train the chapter's GPT; returns the TrainingRun (.model, .tokenizer, .train_ids, .val_ids, .history)."""
    return train_language_model(model_config(fast, seed), progress=False)


def _run_or_train(run, fast: bool, seed: int):
    return run if run is not None else train_model(fast, seed)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# ================================================================================================ Q17: perplexity
def perplexity_from_scratch(fast: bool = True, seed: int = 0, run=None) -> dict:
    """PPL = exp(mean NLL) of a uniform model, the untrained GPT and the trained one, on the validation split.

    A uniform model has PPL = V exactly (every token costs ln V nats). An untrained GPT's logits are nearly
    equal (its weights start at N(0, 0.02)), so it starts near V too. Also returns the validation-PPL curve
    during training (step 0 = the untrained model, each later point exp of the loop's validation estimate).
    """
    run = _run_or_train(run, fast, seed)
    config, vocab = run.config, run.tokenizer.vocab_size
    block = config.context_size
    manual_seed(config.seed)  # the initial weights train_language_model started from
    untrained = build_model(config, vocab)
    uniform = BigramLanguageModel(vocab)  # an all-zero table: every row of logits is uniform
    initial_loss = estimate_loss(untrained, run.val_ids, config, np.random.default_rng([config.seed, 3, 0]))
    scores = {name: evaluate_language_model(model, run.val_ids, block)
              for name, model in (("uniform", uniform), ("untrained GPT", untrained), ("trained GPT", run.model))}
    return {
        "vocab_size": vocab, "val_tokens": scores["trained GPT"]["tokens"], "ln_V": math.log(vocab),
        "loss": {name: s["loss"] for name, s in scores.items()},
        "perplexity": {name: s["perplexity"] for name, s in scores.items()},
        "curve_steps": [0] + [row["step"] for row in run.history],
        "curve_perplexity": [perplexity(loss) for loss in [initial_loss] + [row["val_loss"] for row in run.history]],
    }


def _per_byte(model, tokenizer, ids: np.ndarray, block: int) -> dict:
    """Per-token and per-byte scores of `model` on `ids`: the per-byte ones are comparable across tokenizers.

    Every token but the first is scored, so the bytes scored are those of ids[1:] (UTF-8 bytes of the text).
    """
    scores = evaluate_language_model(model, ids, block)
    total_nll = scores["loss"] * scores["tokens"]
    scored_bytes = sum(len(tokenizer.token_bytes(int(i))) for i in ids[1:])
    return {"vocab_size": tokenizer.vocab_size, "tokens": scores["tokens"], "bytes": scored_bytes,
            "bytes_per_token": scored_bytes / scores["tokens"], "loss_per_token": scores["loss"],
            "perplexity_per_token": scores["perplexity"], "bits_per_byte": total_nll / scored_bytes / math.log(2),
            "perplexity_per_byte": math.exp(total_nll / scored_bytes)}


def tokenizer_dependence(fast: bool = True, seed: int = 0, run=None) -> dict:
    """The same validation text scored by models with different tokenizers: per token and per byte.

    A count bigram over characters and a count bigram over byte-level BPE tokens (learned from the
    training split), both add-k smoothed with the same k, plus the trained character GPT. Per token the
    BPE model looks far worse (it predicts units of several characters out of a larger vocabulary); per
    byte it is better. Comparing per-token PPLs across tokenizers ranks the models backwards.
    """
    run = _run_or_train(run, fast, seed)
    config = run.config
    text = load_text(config.corpus)
    train_text, val_text = train_val_split(text[:config.max_chars] if config.max_chars else text)
    bpe = ByteBPETokenizer.train(train_text, num_merges=200 if fast else 500)
    bpe_train, bpe_val = bpe.encode(train_text), bpe.encode(val_text)
    char = run.tokenizer
    models = {
        "char bigram (counts)": (BigramLanguageModel.from_counts(run.train_ids, char.vocab_size, COUNT_BIGRAM_ADD_K),
                                 char, run.val_ids),
        "BPE bigram (counts)": (BigramLanguageModel.from_counts(bpe_train, bpe.vocab_size, COUNT_BIGRAM_ADD_K),
                                bpe, bpe_val),
        "char GPT (trained)": (run.model, char, run.val_ids),
    }
    return {"add_k": COUNT_BIGRAM_ADD_K, "bpe_merges": 200 if fast else 500,
            "results": {name: _per_byte(model, tokenizer, ids, config.context_size)
                        for name, (model, tokenizer, ids) in models.items()}}


# ================================================================================================ Q19: decoding
def sampling_comparison(fast: bool = True, seed: int = 0, run=None) -> dict:
    """Q19: continue the same validation prompts with every rule in SAMPLING_SETTINGS; diversity vs quality.

    Prompts: `samples` windows of `prompt_tokens` tokens at random places in the validation split (full: 50
    prompts of 16 tokens, 100 new tokens each; fast: 20 of 8, 40 new tokens). All samples of one setting are
    one batched `generate` call with the same seed.

    Per setting: distinct-2 and distinct-4 of the generated tokens (pooled over the samples; the prompts are
    excluded) and their mean NLL per token under the model itself, -log p(token) from the raw logits the
    token was chosen from (before temperature or filtering). "real text" gives the same numbers for the true
    continuations of the prompts, with the model's validation loss as its NLL.
    """
    run = _run_or_train(run, fast, seed)
    samples, prompt_tokens, new_tokens = (20, 8, 40) if fast else (50, 16, 100)
    val = run.val_ids
    starts = np.random.default_rng([seed, 9]).integers(0, len(val) - prompt_tokens - new_tokens, samples)
    prompts = val[starts[:, None] + np.arange(prompt_tokens)]
    real = val[starts[:, None] + prompt_tokens + np.arange(new_tokens)]
    results = {}
    for label, options in SAMPLING_SETTINGS.items():
        ids, logits = generate(run.model, prompts, new_tokens, seed=seed, return_logits=True, **options)
        generated = ids[:, prompt_tokens:]
        chosen = np.take_along_axis(_log_softmax(logits), generated[..., None], axis=-1)[..., 0]
        results[label] = {"distinct_2": distinct_n(generated, 2), "distinct_4": distinct_n(generated, 4),
                          "nll": float(-chosen.mean()), "example": run.tokenizer.decode(generated[0])}
    real_loss = evaluate_language_model(run.model, val, run.config.context_size)["loss"]
    results["real text"] = {"distinct_2": distinct_n(real, 2), "distinct_4": distinct_n(real, 4), "nll": real_loss,
                            "example": run.tokenizer.decode(real[0])}
    return {"samples": samples, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "example_prompt": run.tokenizer.decode(prompts[0]), "results": results}


def _chi_square(observed: np.ndarray, expected: np.ndarray, min_expected: float = 5.0) -> dict:
    """Pearson's chi-square of observed counts against expected counts, with the p-value.

    Categories expected fewer than `min_expected` times are pooled into one (the chi-square approximation
    needs every expected count to be reasonably large). The p-value uses the Wilson-Hilferty approximation
    ((X / k)^(1/3) is nearly normal with mean 1 - 2/(9k) and variance 2/(9k)), accurate enough here.
    """
    small = expected < min_expected
    observed = np.append(observed[~small], observed[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = len(expected) - 1
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return {"statistic": statistic, "dof": dof, "p_value": 1 - NormalDist().cdf(z), "categories": len(expected)}


def sampling_matches_softmax(fast: bool = True, seed: int = 0, run=None) -> dict:
    """Q19 check on the trained model: with k = V and p = 1 the sampled frequencies are the softmax's.

    The model's next-token logits after a validation window; `draws` tokens are sampled at temperature 1
    with top_k = V and top_p = 1 (nothing filtered) and compared with draws * softmax(logits) by a
    chi-square test. The same test on tokens sampled at temperature 0.8 (compared with the temperature-1
    softmax) shows that it can tell a different distribution apart.
    """
    run = _run_or_train(run, fast, seed)
    draws = 5_000 if fast else 20_000
    vocab = run.model.vocab_size
    prompt = run.val_ids[:run.config.context_size][None]
    was_training = run.model.training
    run.model.eval()
    with no_grad():
        row = run.model(prompt).data[0, -1].astype(np.float64)
    run.model.train(was_training)
    probabilities = np.exp(_log_softmax(row))
    expected = draws * probabilities
    tests = {}
    for label, temperature in (("tau = 1, k = V, p = 1", 1.0), ("tau = 0.8 (a different distribution)", 0.8)):
        tokens = sample_next_token(np.tile(row, (draws, 1)), temperature=temperature, top_k=vocab, top_p=1.0,
                                   rng=np.random.default_rng([seed, 10]))
        tests[label] = _chi_square(np.bincount(tokens, minlength=vocab).astype(np.float64), expected)
    return {"draws": draws, "vocab_size": vocab, "top_probability": float(probabilities.max()), "tests": tests}


# ================================================================================================ Q21: speed
def _best_times(functions: dict, repeats: int, warm_up: bool = True) -> dict:
    """{key: the fastest of `repeats` timed calls of functions[key]}, after one untimed warm-up call each
    (the first call may compile with Numba, page in memory or fill caches) unless warm_up=False.

    The competitors take turns (a, b, c, a, b, c, ...) instead of running one after the other, so a burst of
    load from other processes slows all of them alike instead of one; and the minimum is the run least
    disturbed, since noise on a shared machine only ever adds time.
    """
    for function in functions.values() if warm_up else ():
        function()
    best = dict.fromkeys(functions, math.inf)
    for _ in range(repeats):
        for key, function in functions.items():
            start = time.perf_counter()
            function()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def _log_log_slope(sizes, times) -> float:
    """The exponent a of time ~ c * size^a, fitted by least squares on the logs."""
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def attention_scaling(fast: bool = True, seed: int = 0) -> dict:
    """Causal attention forward time against the sequence length T, for both kernel sets.

    A batch of 4 sequences with 4 heads of width 32 (the timing model's heads). The NumPy reference kernel
    builds the whole T x T score matrix; the Numba kernel walks it in tiles (flash-style) but still does every
    query-key product. Both are O(T^2 d): the fitted log-log slope of time against T is about 2 (overheads
    that do not grow with T pull it below 2 at small T).
    """
    lengths = [128, 256, 512] if fast else [128, 256, 512, 1024]
    rng = np.random.default_rng(seed)
    kernels = {"reference (NumPy, full T x T scores)": reference_attention.attention_forward,
               "numba (tiled, flash-style)": numba_attention.attention_forward}
    times = {name: [] for name in kernels}
    for length in lengths:
        q, k, v = (rng.standard_normal((4, 4, length, 32)).astype(np.float32) for _ in range(3))
        best = _best_times({name: lambda forward=forward: forward(q, k, v, causal=True)
                            for name, forward in kernels.items()}, repeats=5)
        for name in kernels:
            times[name].append(best[name])
    return {"lengths": lengths, "seconds": times,
            "slope": {name: _log_log_slope(lengths, seconds) for name, seconds in times.items()}}


# The shape every timing runs at, in both modes: the full-size trained model's (the fast model is so small that
# Python's per-call overhead would hide everything the timings are meant to show).
TIMING_SHAPE = dict(embed_dim=128, num_heads=4, num_layers=2)


def _timing_model(vocab_size: int, context_size: int, seed: int, num_layers: int = TIMING_SHAPE["num_layers"]) -> GPT:
    """A randomly initialised GPT of TIMING_SHAPE (or fewer layers) with a context long enough to time.

    Time per token depends on the shapes, not on the weights' values, and the trained model's context is
    too short to show how latency grows with the position.
    """
    manual_seed(seed)
    return GPT(vocab_size, context_size=context_size, **dict(TIMING_SHAPE, num_layers=num_layers)).eval()


def _token_latencies(model, prompt: np.ndarray, new_tokens: int, use_cache: bool) -> tuple[np.ndarray, np.ndarray]:
    """(per-token latencies in seconds, the generated ids): each token's time stamp comes from on_token, which
    generate calls as soon as the token is chosen."""
    stamps = []
    start = time.perf_counter()
    ids = generate(model, prompt, new_tokens, temperature=0.0, use_cache=use_cache,
                   on_token=lambda token: stamps.append(time.perf_counter()))
    return np.diff(np.array([start] + stamps)), ids


def kv_cache_speedup(fast: bool = True, seed: int = 0, run=None) -> dict:
    """Q21: generation with and without the KV cache.

    1. Identical outputs: the trained model generates 3 contexts' worth of sampled tokens (so its window
       restarts several times) both ways, with the same seed; the tokens and the logits they came from are
       compared.
    2. Per-token latency: a randomly initialised GPT of TIMING_SHAPE with a context long enough for
       `new_tokens` (full 512, fast 64) generates greedily from one token, with and without the cache.
       Each latency is the minimum over 3 runs, taken in turns with and without the cache (noise on a shared
       machine only ever adds time, and taking turns spreads it over both).
       Fitted: the straight line latency = a + b * position for each, and the ratio of the last tenth's mean
       latency to the first tenth's.
    3. Cache size: after reading T tokens for a batch of 2, cache.nbytes against batch * 2 * L * T * d * 4
       bytes (float32), at several T.
    """
    run = _run_or_train(run, fast, seed)
    context = run.config.context_size
    prompt = run.val_ids[:8]
    outputs = {use_cache: generate(run.model, prompt, 3 * context, temperature=1.0, seed=seed, use_cache=use_cache,
                                   return_logits=True) for use_cache in (True, False)}
    (cached_ids, cached_logits), (full_ids, full_logits) = outputs[True], outputs[False]

    new_tokens = 64 if fast else 512
    model = _timing_model(run.model.vocab_size, new_tokens + 1, seed)
    start, modes = np.array([1]), {"KV cache": True, "no cache": False}
    for use_cache in modes.values():
        generate(model, start, 4, temperature=0.0, use_cache=use_cache)  # warm-up: compile and page in
    runs = {label: [] for label in modes}
    for _ in range(3):
        for label, use_cache in modes.items():
            runs[label].append(_token_latencies(model, start, new_tokens, use_cache))
    latencies = {label: np.min([seconds for seconds, _ in done], axis=0) for label, done in runs.items()}
    timing_ids = {label: done[0][1] for label, done in runs.items()}
    positions = np.arange(1, new_tokens + 1)
    tenth = max(1, new_tokens // 10)
    fits = {label: np.polyfit(positions, seconds, 1) for label, seconds in latencies.items()}

    config = model.config
    layers, width = config["num_layers"], config["embed_dim"]
    lengths = [t for t in (1, new_tokens // 8, new_tokens // 2, new_tokens) if t >= 1]
    ids = np.random.default_rng([seed, 11]).integers(0, model.vocab_size, (2, new_tokens))
    cache_bytes = []
    with no_grad():
        for length in lengths:
            cache = model.new_cache(2)
            model(ids[:, :length], cache=cache)
            cache_bytes.append(cache.nbytes)
    return {
        "identical_tokens": bool(np.array_equal(cached_ids, full_ids)),
        "max_logit_difference": float(np.abs(cached_logits.astype(np.float64) - full_logits).max()),
        "checked_tokens": 3 * context, "context_size": context,
        "timing_tokens_identical": bool(np.array_equal(timing_ids["KV cache"], timing_ids["no cache"])),
        "new_tokens": new_tokens, "latency_seconds": {label: s.tolist() for label, s in latencies.items()},
        "latency_slope_ms_per_100_tokens": {label: float(fit[0] * 1e5) for label, fit in fits.items()},
        "latency_intercept_ms": {label: float(fit[1] * 1e3) for label, fit in fits.items()},
        "last_over_first_tenth": {label: float(s[-tenth:].mean() / s[:tenth].mean()) for label, s in latencies.items()},
        "total_seconds": {label: float(s.sum()) for label, s in latencies.items()},
        "speedup": float(latencies["no cache"].sum() / latencies["KV cache"].sum()),
        "num_layers": layers, "embed_dim": width, "batch_size": 2, "cache_lengths": lengths,
        "cache_bytes": cache_bytes,
        "formula_bytes": [2 * KVCache.values_per_sequence(layers, length, width) * 4 for length in lengths],
        "gpt3_fp16_gb_per_2048_tokens": KVCache.values_per_sequence(96, 2048, 12288) * 2 / 1e9,
    }


def constant_factor_vs_cache(fast: bool = True, seed: int = 0, run=None) -> dict:
    """M38: a constant factor (structured pruning: half the layers) against a change of algorithm (the cache).

    Total time to generate N tokens greedily from one token, for several N, with: the full model without a
    cache; the same with half its layers (what structured pruning or a 2x faster kernel gives: every
    step costs about half); the full model with the KV cache. The log-log slope of total time against N is
    the exponent. Pruning leaves it where it was and scales the constant (the time ratio stays roughly the
    same at every N); the cache lowers the exponent, so its advantage grows with N. Each time is the best of
    3 runs, the three variants taking turns.
    """
    run = _run_or_train(run, fast, seed)
    lengths = [16, 32, 64] if fast else [64, 128, 256, 512]
    layers, vocab = TIMING_SHAPE["num_layers"], run.model.vocab_size
    full = _timing_model(vocab, lengths[-1] + 1, seed)
    pruned = _timing_model(vocab, lengths[-1] + 1, seed, num_layers=layers // 2)
    variants = {"no cache": (full, False), f"no cache, {layers // 2} of {layers} layers": (pruned, False),
                "KV cache": (full, True)}
    start, seconds = np.array([1]), {label: [] for label in variants}

    def generation(model, use_cache: bool, new_tokens: int):
        return lambda: generate(model, start, new_tokens, temperature=0.0, use_cache=use_cache)

    for variant in variants.values():
        generation(*variant, 4)()  # warm-up: compile and page in
    for n in lengths:
        best = _best_times({label: generation(*variant, n) for label, variant in variants.items()}, repeats=3,
                           warm_up=False)
        for label in variants:
            seconds[label].append(best[label])
    labels = list(variants)
    return {"lengths": lengths, "seconds": seconds,
            "exponent": {label: _log_log_slope(lengths, s) for label, s in seconds.items()},
            "pruned_over_full": (np.array(seconds[labels[1]]) / np.array(seconds[labels[0]])).tolist(),
            "full_over_cached": (np.array(seconds[labels[0]]) / np.array(seconds[labels[2]])).tolist()}


def allocator_reuse(fast: bool = True, seed: int = 0, megabytes: int = 64) -> dict:
    """M39: writing a result into memory that is kept vs memory that was given back and must be fetched again.

    np.add(a, b) allocates a fresh result each call; an array this large (above glibc's 32 MiB mmap
    limit) is returned to the operating system when freed, so every call page-faults it in again.
    np.add(a, b, out=kept) reuses one buffer. A GPU allocator's pool (CuPy's, PyTorch's caching allocator)
    plays the role of `kept`: freeing its cached blocks makes the next allocations slower, not faster.
    """
    count = megabytes * 2**20 // 4
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(count, dtype=np.float32), rng.standard_normal(count, dtype=np.float32)
    kept = np.empty_like(a)
    best = _best_times({"fresh": lambda: np.add(a, b), "kept": lambda: np.add(a, b, out=kept)},
                       repeats=5 if fast else 15)
    return {"megabytes": megabytes, "fresh_ms": best["fresh"] * 1e3, "kept_ms": best["kept"] * 1e3,
            "fresh_over_kept": best["fresh"] / best["kept"]}
