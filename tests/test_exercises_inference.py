"""The chapter 9 exercises (temperature softmax, top-k and top-p filtering, one KV-cache decoding step): the
references agree with the library's own decoding code, other correct styles pass, and classic wrong answers are
rejected by the property that names their bug. The wrong answers are real functions, named after the bug
(spot-the-bug material); tests/test_exercises.py grades them with every other exercise of the bank.
"""

import numpy as np
import pytest

import tinygrad_llm as tgl
import tinygrad_llm.exercises as ex
from tinygrad_llm.generation import apply_temperature
from tinygrad_llm.generation import top_k_filter as library_top_k_filter
from tinygrad_llm.generation import top_p_filter as library_top_p_filter
from tinygrad_llm.nn import functional as F

pytestmark = [pytest.mark.exercises, pytest.mark.inference]

INFERENCE_EXERCISES = ["temperature_softmax", "top_k_filter", "top_p_filter", "kv_cache_decode_step"]


def softmax(z):
    exps = np.exp(z - z.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


# ---- temperature_softmax ---------------------------------------------------------------------------------

def _greedy(logits):
    probabilities = np.zeros_like(logits)
    probabilities[np.arange(len(logits)), logits.argmax(axis=-1)] = 1.0
    return probabilities


def temperature_multiplies_the_logits(logits, temperature):
    return _greedy(logits) if temperature == 0 else softmax(logits * temperature)


def temperature_applied_after_the_softmax(logits, temperature):
    return _greedy(logits) if temperature == 0 else softmax(logits) ** (1 / temperature)


def temperature_softmax_without_max_subtraction(logits, temperature):
    if temperature == 0:
        return _greedy(logits)
    exps = np.exp(logits / temperature)
    return exps / exps.sum(axis=-1, keepdims=True)


def temperature_zero_divides_by_zero(logits, temperature):
    return softmax(logits / temperature)


# ---- top_k_filter ----------------------------------------------------------------------------------------

def top_k_keeps_the_smallest(logits, k):
    filtered = logits.copy()
    np.put_along_axis(filtered, np.argsort(logits, axis=-1, kind="stable")[:, k:], -np.inf, axis=-1)
    return filtered


def top_k_keeps_every_tie_of_the_kth_value(logits, k):
    kth_largest = np.sort(logits, axis=-1)[:, ::-1][:, min(k, logits.shape[1]) - 1:][:, :1]
    return np.where(logits < kth_largest, -np.inf, logits)


def top_k_fills_dropped_tokens_with_zero(logits, k):
    filtered = logits.copy()
    np.put_along_axis(filtered, np.argsort(-logits, axis=-1, kind="stable")[:, k:], 0.0, axis=-1)
    return filtered


# ---- top_p_filter ----------------------------------------------------------------------------------------

def _nucleus(logits, p, keep_rule, sort=True):
    """Top-p with the decision `keep_rule(cumulative mass including the token, its probability, p)` per token."""
    probabilities = softmax(logits)
    ids = np.broadcast_to(np.arange(logits.shape[1]), logits.shape)
    order = np.argsort(-logits, axis=-1, kind="stable") if sort else ids
    sorted_probabilities = np.take_along_axis(probabilities, order, axis=-1)
    keep = keep_rule(np.cumsum(sorted_probabilities, axis=-1), sorted_probabilities, p)
    drop = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(drop, order, ~keep, axis=-1)
    return np.where(drop, -np.inf, logits)


def top_p_drops_the_token_that_crosses_p(logits, p):
    return _nucleus(logits, p, lambda mass, probability, p: mass < p)


def top_p_accumulates_in_token_id_order(logits, p):
    return _nucleus(logits, p, lambda mass, probability, p: mass - probability < p, sort=False)


def top_p_keeps_the_token_after_an_exact_p(logits, p):
    return _nucleus(logits, p, lambda mass, probability, p: mass - probability <= p)


def top_p_trusts_the_float_sum_to_hit_p(logits, p):
    return _nucleus(logits, p, lambda mass, probability, p: mass - probability < p)


def temperature_softmax_subtracting_the_global_max(logits, temperature):
    if temperature == 0:
        return ex.get_exercise("temperature_softmax").reference(logits, 0.0)
    exps = np.exp((logits - logits.max()) / temperature)
    return exps / exps.sum(axis=-1, keepdims=True)


# ---- kv_cache_decode_step --------------------------------------------------------------------------------

def _decode(q, keys, values, scale=True, axis=-1):
    scores = np.einsum("bhd,bhtd->bht", q, keys) / (np.sqrt(q.shape[-1]) if scale else 1.0)
    weights = np.exp(scores - scores.max(axis=axis, keepdims=True))
    weights /= weights.sum(axis=axis, keepdims=True)
    return np.einsum("bht,bhtd->bhd", weights, values)


def _grown(k_cache, v_cache, k_new, v_new, prepend=False):
    pieces = [(k_cache, k_new[:, :, None]), (v_cache, v_new[:, :, None])]
    return [np.concatenate(pair[::-1] if prepend else pair, axis=2) for pair in pieces]


def kv_decode_forgets_the_new_token(q, k_cache, v_cache, k_new, v_new):
    keys, values = _grown(k_cache, v_cache, k_new, v_new)
    return _decode(q, k_cache, v_cache), keys, values


def kv_decode_prepends_the_new_key(q, k_cache, v_cache, k_new, v_new):
    keys, values = _grown(k_cache, v_cache, k_new, v_new, prepend=True)
    return _decode(q, keys, values), keys, values


def kv_decode_without_the_sqrt_d_scale(q, k_cache, v_cache, k_new, v_new):
    keys, values = _grown(k_cache, v_cache, k_new, v_new)
    return _decode(q, keys, values, scale=False), keys, values


def kv_decode_softmax_over_the_heads(q, k_cache, v_cache, k_new, v_new):
    keys, values = _grown(k_cache, v_cache, k_new, v_new)
    return _decode(q, keys, values, axis=1), keys, values


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("temperature_softmax", temperature_multiplies_the_logits, "a lower temperature sharpens"),
    ("temperature_softmax", temperature_applied_after_the_softmax, "probability distribution"),
    ("temperature_softmax", temperature_softmax_without_max_subtraction, "+-1e4"),
    ("temperature_softmax", temperature_zero_divides_by_zero, "temperature 0 is greedy"),
    ("temperature_softmax", temperature_softmax_subtracting_the_global_max, "+-1e4"),
    ("top_k_filter", top_k_keeps_the_smallest, "LARGEST"),
    ("top_k_filter", top_k_keeps_every_tie_of_the_kth_value, "exactly min(k, V)"),
    ("top_k_filter", top_k_fills_dropped_tokens_with_zero, "-inf"),
    ("top_p_filter", top_p_drops_the_token_that_crosses_p, "probability >= p"),
    ("top_p_filter", top_p_accumulates_in_token_id_order, "most likely tokens"),
    ("top_p_filter", top_p_keeps_the_token_after_an_exact_p, "SMALLEST"),
    ("top_p_filter", top_p_trusts_the_float_sum_to_hit_p, "SMALLEST"),
    ("kv_cache_decode_step", kv_decode_forgets_the_new_token, "attends only to itself"),
    ("kv_cache_decode_step", kv_decode_prepends_the_new_key, "appends at the END"),
    ("kv_cache_decode_step", kv_decode_without_the_sqrt_d_scale, "full causal attention"),
    ("kv_cache_decode_step", kv_decode_softmax_over_the_heads, "attends only to itself"),
]


def test_the_inference_exercises_are_registered():
    """Their references, starter code and WRONG_ANSWERS above are graded in test_exercises.py with the whole bank."""
    names = [name for name, _ in ex.list_exercises()]
    assert all(name in names for name in INFERENCE_EXERCISES)


# ---- the references agree with the library's decoding code -------------------------------------------------

def _logits(seed, shape=(4, 9), ties=True):
    logits = np.random.default_rng(seed).normal(0, 2, shape)
    return np.round(logits * 2) / 2 if ties else logits


@pytest.mark.parametrize("seed", range(5))
def test_filter_references_equal_the_library_filters_ties_included(seed):
    logits = _logits(seed)
    for k in (1, 2, 5, 9, 12):
        np.testing.assert_array_equal(ex.get_exercise("top_k_filter").reference(logits, k),
                                      library_top_k_filter(logits, k))
    for p in (0.05, 0.3, 0.5, 0.9, 0.99, 1.0):
        np.testing.assert_array_equal(ex.get_exercise("top_p_filter").reference(logits, p),
                                      library_top_p_filter(logits, p))


def test_top_p_reference_keeps_nine_of_ten_equal_tokens_at_p_0_9():
    """0.1 added nine times is 0.8999999999999999: the 1e-9 tolerance is what makes p = 0.9 keep nine tokens."""
    kept = np.isfinite(ex.get_exercise("top_p_filter").reference(np.zeros((1, 10)), 0.9))
    assert kept.sum() == 9


@pytest.mark.parametrize("temperature", [0.01, 0.5, 1.0, 3.0])
def test_temperature_reference_equals_the_library_and_zero_is_argmax(temperature):
    logits = _logits(1, ties=False)
    np.testing.assert_allclose(ex.get_exercise("temperature_softmax").reference(logits, temperature),
                               softmax(apply_temperature(logits, temperature)), rtol=1e-12, atol=1e-300)
    greedy = ex.get_exercise("temperature_softmax").reference(_logits(2), 0.0)
    np.testing.assert_array_equal(greedy.argmax(axis=-1), _logits(2).argmax(axis=-1))
    assert np.all(greedy.sum(axis=-1) == 1.0) and np.all(greedy.max(axis=-1) == 1.0)


def test_kv_decode_reference_equals_the_library_attention_with_causal_alignment():
    """The library's attention aligns a single query to the LAST key (what cached decoding needs); one decoding
    step must give the same output, and feeding a sequence one token at a time must rebuild its keys in order."""
    rng = np.random.default_rng(3)
    batch, heads, length, width = 2, 3, 6, 4
    q, k, v = (rng.normal(size=(batch, heads, length, width)) for _ in range(3))
    decode = ex.get_exercise("kv_cache_decode_step").reference
    k_cache, v_cache = k[:, :, :0], v[:, :, :0]
    for t in range(length):
        out, k_cache, v_cache = decode(q[:, :, t], k_cache, v_cache, k[:, :, t], v[:, :, t])
        library = F.scaled_dot_product_attention(tgl.tensor(q[:, :, t:t + 1]), tgl.tensor(k[:, :, :t + 1]),
                                                 tgl.tensor(v[:, :, :t + 1]), causal=True).data[:, :, 0]
        np.testing.assert_allclose(out, library, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(k_cache, k)
    np.testing.assert_array_equal(v_cache, v)


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """A row-by-row top-p with Python floats and a sorted-ascending walk; a kv step with explicit loops."""
    def top_p_by_rows(logits, p):
        out = np.full_like(logits, -np.inf)
        for r, row in enumerate(logits):
            probabilities = np.exp(row - row.max())
            probabilities /= probabilities.sum()
            mass = 0.0
            for index in sorted(range(len(row)), key=lambda i: (-row[i], i)):
                if mass >= p - 1e-9:
                    break
                out[r, index] = row[index]
                mass += probabilities[index]
        return out

    def kv_step_with_loops(q, k_cache, v_cache, k_new, v_new):
        keys = np.concatenate([k_cache, k_new[:, :, None]], axis=2)
        values = np.concatenate([v_cache, v_new[:, :, None]], axis=2)
        out = np.zeros_like(q)
        for b in range(q.shape[0]):
            for h in range(q.shape[1]):
                scores = keys[b, h] @ q[b, h] / np.sqrt(q.shape[-1])
                weights = np.exp(scores - scores.max())
                out[b, h] = weights @ values[b, h] / weights.sum()
        return out, keys, values

    for name, function in (("top_p_filter", top_p_by_rows), ("kv_cache_decode_step", kv_step_with_loops)):
        result = ex.get_exercise(name).grade(function)
        assert result, str(result)

