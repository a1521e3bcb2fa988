"""Exercises on decoding and fast inference (chapter 9): temperature, top-k and top-p filtering, and one
decoding step of attention with a KV cache.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import HUGE_LOGIT, finite_floats, float_arrays

MASS_TOLERANCE = 1e-9  # a probability mass this close to p counts as reaching it (sums of floats are not exact)


def temperature_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / temperature) over the last axis of float64 logits (B, V).

    temperature > 0 divides the logits before the softmax (below 1 sharpens, above 1 flattens). temperature == 0
    is greedy decoding: each row is one-hot at its argmax (the lowest index on ties). Must stay finite for logits
    of +-1e4 and temperatures down to 1e-3. Returns an array of logits' shape.
    """
    if temperature == 0:
        probabilities = np.zeros_like(logits)
        np.put_along_axis(probabilities, logits.argmax(axis=-1)[:, None], 1.0, axis=-1)
        return probabilities
    exps = np.exp((logits - logits.max(axis=-1, keepdims=True)) / temperature)
    return exps / exps.sum(axis=-1, keepdims=True)


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits of each row of float64 logits (B, V); set every other entry to -inf.

    Exactly min(k, V) entries per row keep their value and position. When logits tie for the k-th place, the
    lower indices are kept (the rule of np.argmax). k >= 1. Returns a new array of logits' shape.
    """
    order = np.argsort(-logits, axis=-1, kind="stable")
    filtered = logits.copy()
    np.put_along_axis(filtered, order[:, k:], -np.inf, axis=-1)
    return filtered


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filtering of float64 logits (B, V): in each row keep the SMALLEST set of most likely tokens whose
    probability (softmax of the row) adds up to at least p; set the others to -inf.

    Walk the tokens from most to least likely (ties: lower index first) and keep each one while the mass of the
    tokens before it is still below p, so the most likely token is always kept. A mass within 1e-9 of p counts
    as reaching p. 0 < p <= 1. Returns a new array of logits' shape.
    """
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = exps / exps.sum(axis=-1, keepdims=True)
    order = np.argsort(-logits, axis=-1, kind="stable")
    sorted_probabilities = np.take_along_axis(probabilities, order, axis=-1)
    mass_before = np.cumsum(sorted_probabilities, axis=-1) - sorted_probabilities
    drop = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(drop, order, mass_before >= p - 1e-9, axis=-1)
    return np.where(drop, -np.inf, logits)


def kv_cache_decode_step(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, k_new: np.ndarray,
                         v_new: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One decoding step of causal self-attention with a KV cache, for a batch of B sequences and H heads.

    q, k_new, v_new (B, H, D): the new token's query, key and value. k_cache, v_cache (B, H, T, D): the keys and
    values of the T tokens before it (T may be 0). The new token attends to the T cached tokens and to itself,
    with scores q . k / sqrt(D). Returns (out, k_cache_new, v_cache_new): out (B, H, D), and the caches with the
    new key and value appended at the end, (B, H, T + 1, D).
    """
    keys = np.concatenate([k_cache, k_new[:, :, None]], axis=2)
    values = np.concatenate([v_cache, v_new[:, :, None]], axis=2)
    scores = np.einsum("bhd,bhtd->bht", q, keys) / np.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("bht,bhtd->bhd", weights, values), keys, values


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


@st.composite
def logit_rows(draw, low: float = -10.0, high: float = 10.0, distinct: bool = False) -> np.ndarray:
    """(B, V) float64 logits with B from 1 to 3 and V from 1 to 6. Unless `distinct`, values sit on a 0.5 grid, so
    ties (the case where tie rules matter) are common; `distinct` makes every value of the array different."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 6)))
    if distinct:
        return draw(hnp.arrays(np.float64, shape, elements=finite_floats(low, high), unique=True))
    return np.round(draw(float_arrays(shape, low, high)) * 2) / 2


def _filtered_of(learner, drawn: dict, name: str, reference) -> np.ndarray:
    """The learner's filtered logits, after checking shape and dtype and that each entry is its logit or -inf."""
    filtered = call_learner(learner, drawn, name)
    expect_close(name, drawn, reference(**drawn), filtered, None, None)
    logits = drawn["logits"]
    if not np.all((filtered == logits) | np.isneginf(filtered)):
        raise PropertyFailed(name, drawn, reference(**drawn), filtered,
                             "every entry must be either the original logit (kept) or -inf (dropped): -inf is what a "
                             "softmax turns into probability exactly 0, while 0 or -1e9 is an ordinary logit")
    return filtered


# ---- temperature_softmax ---------------------------------------------------------------------------------

@st.composite
def temperature_inputs(draw, low: float = 0.05, high: float = 5.0, huge: bool = False) -> dict:
    logits = draw(logit_rows())
    if huge:  # each row moves by +1e4 or -1e4 on its own, so one max over the whole array leaves a row at 0 / 0
        signs = draw(st.lists(st.sampled_from([1.0, -1.0]), min_size=len(logits), max_size=len(logits)))
        logits = logits + HUGE_LOGIT * np.array(signs)[:, None]
    return {"logits": logits, "temperature": draw(finite_floats(low, high))}


@st.composite
def greedy_inputs(draw) -> dict:
    return {"logits": draw(logit_rows()), "temperature": 0.0}


DISTRIBUTION = "every row is a probability distribution (entries >= 0 that sum to 1) for every temperature > 0"
SHARPENS = ("a lower temperature sharpens: halving tau never lowers the top token's probability (dividing by "
            "tau < 1 stretches the gaps between logits)")
GREEDY = "temperature 0 is greedy decoding: each row is one-hot at its argmax (the lowest index on ties)"
HUGE = "stays finite and exact for logits of +-1e4 and temperatures down to 1e-3 (subtract the row max first)"


def _rows_are_distributions(learner, drawn: dict) -> None:
    probabilities = call_learner(learner, drawn, DISTRIBUTION)
    expect_close(DISTRIBUTION, drawn, temperature_softmax(**drawn), probabilities, None, None)
    sums = probabilities.sum(axis=-1)
    if not (np.all(probabilities >= 0) and np.allclose(sums, 1.0, rtol=0, atol=1e-9)):
        raise PropertyFailed(DISTRIBUTION, drawn, np.ones_like(sums), sums,
                             "these are the sums of your rows; each must be 1. Divide the logits by tau BEFORE the "
                             "softmax: scaling or powering the probabilities afterwards loses the normalisation")


def _lower_temperature_sharpens(learner, drawn: dict) -> None:
    colder = {**drawn, "temperature": drawn["temperature"] / 2}
    top = call_learner(learner, drawn, SHARPENS)
    expect_close(SHARPENS, drawn, temperature_softmax(**drawn), top, None, None)
    top_colder = call_learner(learner, colder, SHARPENS)
    if np.any(top_colder.max(axis=-1) < top.max(axis=-1) - 1e-12):
        raise PropertyFailed(SHARPENS, drawn, f"top probabilities >= {top.max(axis=-1)} at tau / 2",
                             top_colder.max(axis=-1),
                             "these are your top probabilities at temperature tau / 2; they fell, so a lower "
                             "temperature flattened the distribution: divide the logits by tau, do not multiply")


# ---- top_k_filter ----------------------------------------------------------------------------------------

@st.composite
def top_k_inputs(draw, distinct: bool = False) -> dict:
    logits = draw(logit_rows(distinct=distinct))
    return {"logits": logits, "k": draw(st.integers(1, logits.shape[1] + 1))}


ONLY_DROPS_K = "every entry is its original logit or -inf (nothing else changes, dropped tokens get -inf)"
EXACTLY_K = "keeps exactly min(k, V) tokens per row, also when logits tie at the k-th place"
LARGEST_K = "keeps the LARGEST logits: every kept logit is >= every dropped one"


def _top_k_only_drops(learner, drawn: dict) -> None:
    _filtered_of(learner, drawn, ONLY_DROPS_K, top_k_filter)


def _keeps_exactly_k(learner, drawn: dict) -> None:
    kept = np.isfinite(_filtered_of(learner, drawn, EXACTLY_K, top_k_filter)).sum(axis=-1)
    wanted = np.full_like(kept, min(drawn["k"], drawn["logits"].shape[1]))
    if not np.array_equal(kept, wanted):
        raise PropertyFailed(EXACTLY_K, drawn, {"tokens kept per row": wanted}, {"tokens kept per row": kept},
                             "count the kept (finite) entries of each row; a threshold `logits >= k-th largest` keeps "
                             "every tie of the k-th value, so rank the tokens and cut after exactly k")


def _keeps_the_largest(learner, drawn: dict) -> None:
    filtered = _filtered_of(learner, drawn, LARGEST_K, top_k_filter)
    for logits_row, kept in zip(drawn["logits"], np.isfinite(filtered)):
        if not kept.all() and logits_row[kept].min() < logits_row[~kept].max():
            raise PropertyFailed(LARGEST_K, drawn, top_k_filter(**drawn), filtered,
                                 f"a dropped logit {logits_row[~kept].max()} beats a kept one "
                                 f"{logits_row[kept].min()}; np.argsort sorts ascending: sort -logits (or reverse) to "
                                 "rank from the largest")


# ---- top_p_filter ----------------------------------------------------------------------------------------

@st.composite
def top_p_inputs(draw, distinct: bool = False) -> dict:
    return {"logits": draw(logit_rows(low=-4.0, high=4.0, distinct=distinct)), "p": draw(finite_floats(0.05, 1.0))}


@st.composite
def exact_mass_inputs(draw) -> dict:
    """Rows whose probabilities are small fractions w / sum(w), and a p that some set of top tokens holds exactly
    (up to rounding): the case where "reaches p" and "the smallest set" are decided by one comparison."""
    vocab = draw(st.integers(2, 6))
    weights = np.array(draw(st.lists(st.integers(1, 6), min_size=vocab, max_size=vocab)), dtype=np.float64)
    shift = draw(finite_floats(-3.0, 3.0))
    top_count = draw(st.integers(1, vocab))
    p = float(np.sort(weights)[::-1][:top_count].sum() / weights.sum())
    return {"logits": (np.log(weights / weights.sum()) + shift)[None], "p": p}


KEEPS_P = "the kept tokens hold probability >= p (a mass within 1e-9 of p counts as reaching it)"
MOST_LIKELY = "keeps the most likely tokens: no dropped token is likelier than a kept one"
SMALLEST = ("the kept set is the SMALLEST with mass >= p: without its least likely token it holds less than p, "
            "also when some top tokens hold exactly p (count a mass within 1e-9 of p as reaching it)")


def _kept_probabilities(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    kept = np.isfinite(_filtered_of(learner, drawn, name, top_p_filter))
    return _softmax_rows(drawn["logits"]), kept


def _holds_at_least_p(learner, drawn: dict) -> None:
    probabilities, kept = _kept_probabilities(learner, drawn, KEEPS_P)
    mass = np.where(kept, probabilities, 0.0).sum(axis=-1)
    if np.any(mass < drawn["p"] - MASS_TOLERANCE):
        raise PropertyFailed(KEEPS_P, drawn, {"kept mass per row": f">= {drawn['p']}"}, {"kept mass per row": mass},
                             "the token whose probability carries the running total across p must be kept too: keep a "
                             "token while the mass BEFORE it is below p (not while the mass including it is)")


def _keeps_most_likely(learner, drawn: dict) -> None:
    probabilities, kept = _kept_probabilities(learner, drawn, MOST_LIKELY)
    for row, row_kept in zip(probabilities, kept):
        if not row_kept.all() and (not row_kept.any() or row[row_kept].min() < row[~row_kept].max()):
            raise PropertyFailed(MOST_LIKELY, drawn, top_p_filter(**drawn), np.where(kept, drawn["logits"], -np.inf),
                                 "sort the tokens by probability, largest first, before accumulating the mass")


def _is_smallest(learner, drawn: dict) -> None:
    probabilities, kept = _kept_probabilities(learner, drawn, SMALLEST)
    for row, row_kept in zip(probabilities, kept):
        without_smallest = row[row_kept].sum() - row[row_kept].min() if row_kept.any() else 0.0
        if row_kept.sum() > 1 and without_smallest >= drawn["p"] - MASS_TOLERANCE:
            raise PropertyFailed(SMALLEST, drawn, top_p_filter(**drawn), np.where(kept, drawn["logits"], -np.inf),
                                 f"the kept tokens still hold {without_smallest:.17g} >= p without their least likely "
                                 "one, so that one is not needed. Drop a token once the mass before it reaches "
                                 "p - 1e-9: a cumulative sum of floats can land a hair below p when the exact sum is p")


# ---- kv_cache_decode_step --------------------------------------------------------------------------------

@st.composite
def decode_inputs(draw, min_cached: int = 0, max_cached: int = 5) -> dict:
    """B 1..2, H 1..3, D 1..4 and T cached tokens from min_cached to max_cached, entries in [-3, 3]."""
    batch, heads, width = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    cached = draw(st.integers(min_cached, max_cached))
    return {"q": draw(float_arrays((batch, heads, width), -3.0, 3.0)),
            "k_cache": draw(float_arrays((batch, heads, cached, width), -3.0, 3.0)),
            "v_cache": draw(float_arrays((batch, heads, cached, width), -3.0, 3.0)),
            "k_new": draw(float_arrays((batch, heads, width), -3.0, 3.0)),
            "v_new": draw(float_arrays((batch, heads, width), -3.0, 3.0))}


DECODE_NAMES = ("out", "k_cache_new", "v_cache_new")
APPENDS = ("appends at the END: k_cache_new[:, :, :T] is the old cache and k_cache_new[:, :, T] is k_new (the same "
           "for v); index t must stay token t's, since positions depend on it")
ATTENDS_TO_ITSELF = "with an empty cache (T = 0) the new token attends only to itself: out == v_new"
FULL_RECOMPUTATION = ("equals the last row of full causal attention over all T + 1 tokens, what recomputing "
                      "without a cache gives (scores scaled by 1/sqrt(D), softmax over the keys)")


def _decode_of(learner, drawn: dict, name: str) -> tuple:
    result = call_learner(learner, drawn, name)
    expect_close(name, drawn, kv_cache_decode_step(**drawn), result, None, None, DECODE_NAMES)
    return result


def _appends_at_the_end(learner, drawn: dict) -> None:
    _, k_cache_new, v_cache_new = _decode_of(learner, drawn, APPENDS)
    expected = {"k_cache_new": np.concatenate([drawn["k_cache"], drawn["k_new"][:, :, None]], axis=2),
                "v_cache_new": np.concatenate([drawn["v_cache"], drawn["v_new"][:, :, None]], axis=2)}
    expect_close(APPENDS, drawn, expected, {"k_cache_new": k_cache_new, "v_cache_new": v_cache_new}, 0.0, 0.0)


def _attends_to_itself(learner, drawn: dict) -> None:
    out, _, _ = _decode_of(learner, drawn, ATTENDS_TO_ITSELF)
    expect_close(ATTENDS_TO_ITSELF, drawn, {"out": drawn["v_new"]}, {"out": out}, 1e-9, 1e-12)


def full_causal_attention(queries: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Attention for every position of a sequence at once, (B, H, T, D) each: the computation without a cache.
    Query i sees keys 0..i (the causal mask)."""
    scores = queries @ np.swapaxes(keys, -1, -2) / np.sqrt(queries.shape[-1])
    length = scores.shape[-1]
    scores = np.where(np.tril(np.ones((length, length), dtype=bool)), scores, -np.inf)
    return _softmax_rows(scores) @ values


def _matches_full_recomputation(learner, drawn: dict) -> None:
    out, _, _ = _decode_of(learner, drawn, FULL_RECOMPUTATION)
    earlier_queries = np.random.default_rng(0).uniform(-3, 3, drawn["k_cache"].shape)
    queries = np.concatenate([earlier_queries, drawn["q"][:, :, None]], axis=2)
    keys = np.concatenate([drawn["k_cache"], drawn["k_new"][:, :, None]], axis=2)
    values = np.concatenate([drawn["v_cache"], drawn["v_new"][:, :, None]], axis=2)
    expect_close(FULL_RECOMPUTATION, drawn, {"out": full_causal_attention(queries, keys, values)[:, :, -1]},
                 {"out": out}, 1e-9, 1e-12)


TEMPERATURE_SOFTMAX = Exercise(
    name="temperature_softmax",
    title="Temperature: softmax(z / tau), and tau = 0 as greedy decoding",
    statement=(
        "Implement temperature_softmax(logits, temperature) for float64 logits (B, V): the probabilities\n"
        "softmax(logits / tau) of every row. tau < 1 sharpens the distribution, tau > 1 flattens it, and the\n"
        "limit tau -> 0 puts all the mass on the argmax, so temperature == 0 must return greedy decoding's\n"
        "distribution: one-hot at the argmax of each row (the lowest index on ties, as np.argmax). It must stay\n"
        "finite for logits of +-1e4 and temperatures down to 1e-3, where logits / tau reaches 1e7.\n"
        "Tolerance: rtol=1e-7, atol=1e-12."
    ),
    reference=temperature_softmax,
    hints=(
        "Divide the logits by tau, then take an ordinary softmax over the last axis. tau = 0 needs its own branch: "
        "dividing by 0 gives inf and nan.",
        "Subtract each row's max before dividing: (z - max z) / tau is <= 0 everywhere, so exp never overflows, and "
        "softmax ignores the shift. For tau = 0 build zeros and put a 1 at logits.argmax(axis=-1) in each row.",
        "For temperature 0, build a zero array and place a 1 at each row's argmax (np.put_along_axis). Otherwise "
        "subtract each row's max from the logits, divide by the temperature, exponentiate, and normalise each row by "
        "its sum.",
    ),
    checks=(
        Check(DISTRIBUTION, temperature_inputs(), _rows_are_distributions),
        Check(SHARPENS, temperature_inputs(), _lower_temperature_sharpens),
        matches_reference(temperature_softmax, greedy_inputs(), rtol=0.0, atol=0.0, name=GREEDY),
        matches_reference(temperature_softmax, temperature_inputs(), rtol=1e-7, atol=1e-12),
        matches_reference(temperature_softmax, temperature_inputs(low=1e-3, high=5.0, huge=True), rtol=1e-7, atol=1e-12,
                          name=HUGE),
    ),
)

TOP_K_FILTER = Exercise(
    name="top_k_filter",
    title="Top-k filtering: keep the k likeliest tokens, mask the rest with -inf",
    statement=(
        "Implement top_k_filter(logits, k) for float64 logits (B, V): in each row keep the k largest logits where\n"
        "they are and set every other entry to -inf (a softmax then gives them probability exactly 0, so sampling\n"
        "can never pick them). Exactly min(k, V) entries per row survive, also when several logits tie for the\n"
        "k-th place: then the lower indices are kept (np.argmax's rule, so k = 1 is greedy decoding). A k larger\n"
        "than V keeps every token. Return a new array; exact equality is required."
    ),
    reference=top_k_filter,
    hints=(
        "Rank each row from the largest logit to the smallest, then mask everything ranked k or later.",
        "np.argsort sorts ascending: sort -logits. A threshold (logits < k-th largest value) keeps ALL ties of the "
        "k-th value, more than k tokens; kind=\"stable\" keeps tied entries in index order, which is the tie rule.",
        "Sort -logits with a stable argsort along the last axis; in a copy of the logits, write -inf at the positions "
        "that rank k or later in each row (np.put_along_axis with the tail of that order).",
    ),
    checks=(
        Check(ONLY_DROPS_K, top_k_inputs(), _top_k_only_drops),
        Check(EXACTLY_K, top_k_inputs(), _keeps_exactly_k, max_examples=60),
        Check(LARGEST_K, top_k_inputs(distinct=True), _keeps_the_largest),
        matches_reference(top_k_filter, top_k_inputs(), rtol=0.0, atol=0.0,
                          name="matches the reference exactly, ties included (lower index kept)"),
    ),
)

TOP_P_FILTER = Exercise(
    name="top_p_filter",
    title="Top-p (nucleus) filtering: the smallest set of likeliest tokens with mass >= p",
    statement=(
        "Implement top_p_filter(logits, p) for float64 logits (B, V) and 0 < p <= 1. The probabilities are the\n"
        "softmax of each row. Keep the SMALLEST set of most likely tokens whose probabilities add up to at least\n"
        "p, and set every other logit to -inf. Walking the tokens from most to least likely (ties: lower index\n"
        "first), a token is kept while the mass of the tokens before it is still below p, so the most likely\n"
        "token is always kept, and the token that carries the total across p is kept too. Floating-point sums\n"
        "are not exact (0.1 added up nine times is 0.8999999999999999), so a mass within 1e-9 of p counts as\n"
        "reaching it. Return a new array; kept logits keep their exact values."
    ),
    reference=top_p_filter,
    hints=(
        "Softmax the row, sort the probabilities from largest to smallest, and accumulate. The decision for each "
        "token depends on the mass of the tokens BEFORE it in that order.",
        "mass_before = cumsum - sorted probabilities. Keep while mass_before < p - 1e-9 (drop once it reaches "
        "p): `cumsum < p` would drop the token that crosses p, and without the 1e-9 a sum that should equal p "
        "but rounds below it keeps one token too many. Then scatter the decisions back to the original order.",
        "With a stable argsort of -logits, gather the probabilities in that order (np.take_along_axis); the mass "
        "before each token is the running sum minus the token itself. Mark a token dropped when that mass reaches p - "
        "1e-9, scatter the marks back with np.put_along_axis, and set dropped logits to -inf.",
    ),
    checks=(
        Check(KEEPS_P, top_p_inputs(), _holds_at_least_p),
        Check(MOST_LIKELY, top_p_inputs(distinct=True), _keeps_most_likely),
        Check(SMALLEST, exact_mass_inputs(), _is_smallest, max_examples=60),
        matches_reference(top_p_filter, top_p_inputs(distinct=True), rtol=0.0, atol=0.0,
                          name="matches the reference exactly (logits without ties)"),
    ),
)

KV_CACHE_DECODE_STEP = Exercise(
    name="kv_cache_decode_step",
    title="One decoding step of attention with a KV cache",
    statement=(
        "When generating, the keys and values of past tokens never change, so each attention layer keeps them\n"
        "in a cache and computes only the new token's q, k and v. Implement kv_cache_decode_step(q, k_cache,\n"
        "v_cache, k_new, v_new) for float64 arrays: q, k_new, v_new (B, H, D) belong to the new token;\n"
        "k_cache, v_cache (B, H, T, D) hold the T tokens before it (T may be 0). The new token attends to the T\n"
        "cached tokens AND to itself: weights = softmax over the T + 1 keys of q . k / sqrt(D), out = weights @\n"
        "values. Return (out (B, H, D), k_cache_new, v_cache_new), the caches (B, H, T + 1, D) with the new key\n"
        "and value appended at the end. The output must equal the last row of full causal attention over the\n"
        "T + 1 tokens. Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=kv_cache_decode_step,
    hints=(
        "First grow the caches: concatenate k_new (as one more position, k_new[:, :, None]) after k_cache along "
        "the time axis, the same for v. Then it is ordinary attention for one query against T + 1 keys.",
        "scores (B, H, T + 1) = sum over D of q[:, :, None] * keys, divided by sqrt(D); softmax over the LAST axis "
        "(the keys, not the heads), with the row max subtracted; out = sum over the keys of weights[..., None] * "
        "values. No mask is needed: every cached token is in the past.",
        "Append the new key and value as one more position on axis 2 of each cache. The scores are q dotted with "
        "every key over D (np.einsum or broadcasting), over sqrt(D); a stable softmax over the keys; the output is "
        "the weighted sum of the values. Return it with the grown caches.",
    ),
    checks=(
        has_reference_shapes(kv_cache_decode_step, decode_inputs(min_cached=1),
                             "returns (out (B, H, D), k_cache_new, v_cache_new (B, H, T + 1, D))", names=DECODE_NAMES),
        Check(ATTENDS_TO_ITSELF, decode_inputs(max_cached=0), _attends_to_itself),
        Check(APPENDS, decode_inputs(), _appends_at_the_end),
        Check(FULL_RECOMPUTATION, decode_inputs(), _matches_full_recomputation),
        matches_reference(kv_cache_decode_step, decode_inputs(), rtol=1e-9, atol=1e-12, names=DECODE_NAMES),
    ),
)

EXERCISES = (TEMPERATURE_SOFTMAX, TOP_K_FILTER, TOP_P_FILTER, KV_CACHE_DECODE_STEP)
