"""Choosing the next token from a row of logits: greedy, temperature, top-k and top-p (nucleus) sampling.

Every function works on plain NumPy logits of shape (B, V): one row per sequence in the batch.

    sample_next_token(logits, temperature=0)                 greedy: the argmax, no randomness at all
    sample_next_token(logits, temperature=0.8, top_k=40, top_p=0.9, rng=rng)
    next_token_probs(logits, temperature=0.8, top_k=40)      the distribution (B, V) that sample draws from

The steps run in this order, and the order matters:

1. temperature: softmax(z / tau). tau < 1 sharpens the distribution, tau > 1 flattens it, tau -> 0 is greedy.
   It comes first because top-p measures probability mass, and that should be the mass of the distribution
   actually sampled from. (Top-k looks only at ranks, which dividing by tau > 0 never changes.)
2. top-k: keep the k highest logits. A cut by rank, so it caps the candidates however flat the distribution is.
3. top-p: keep the smallest set of most likely tokens whose probability reaches p, measured after the top-k
   cut (the survivors renormalised). It adapts to the shape: one token when the model is sure, many when not.

Filtered tokens get logit -inf, i.e. probability exactly 0 after the softmax. All of these trade diversity for
quality (Q19); none of them changes the greedy choice, because the argmax always survives.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..device import as_array_on
from ..dtypes import is_floating
from ..random import generator


def _check_logits(logits, name: str) -> np.ndarray:
    """logits as a float64 (B, V) array: float64 so that tiny probabilities and cumulative sums stay exact."""
    logits = as_array_on(getattr(logits, "data", logits), "cpu")  # sampling runs on the host: one (B, V) copy
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"{name}: logits must have shape (batch, vocab_size) with vocab_size >= 1, got "
                         f"{logits.shape}; for one sequence pass logits[None]")
    if not is_floating(logits.dtype):
        raise TypeError(f"{name}: logits must be floating point, got dtype {logits.dtype}")
    if np.isnan(logits).any() or np.isposinf(logits).any():
        raise ValueError(f"{name}: logits contain NaN or +inf; the model produced invalid scores (check its forward)")
    if np.isneginf(logits.max(axis=-1)).any():
        raise ValueError(f"{name}: a row of logits is entirely -inf, so no token can be chosen; a mask removed "
                         "every token")
    return logits.astype(np.float64)


def _check_k(k, name: str):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name}: top-k needs an integer k >= 1 (the number of tokens kept), got {k!r}")


def _check_p(p, name: str):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1:
        raise ValueError(f"{name}: top-p needs p in (0, 1] (the probability mass kept), got {p!r}")


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Logits whose softmax is softmax(z / tau): sharper for tau < 1, flatter for tau > 1.

    Returned as (z - max z) / tau, which has the same softmax (a softmax ignores a shift of the whole row)
    but cannot overflow: a tiny tau sends the losing tokens towards -inf instead of the winner to +inf.
    temperature must be > 0 here. Its limit tau -> 0 puts all the mass on the argmax, which is why
    sample_next_token reads temperature=0 as greedy decoding instead of dividing by zero.
    """
    logits = _check_logits(logits, "apply_temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"apply_temperature: temperature must be > 0, got {temperature!r}; temperature 0 means "
                         "greedy decoding: use sample_next_token(logits, temperature=0)")
    return (logits - logits.max(axis=-1, keepdims=True)) / temperature


def _descending_order(logits: np.ndarray) -> np.ndarray:
    """Token ids of each row from highest logit to lowest. Equal logits keep id order (a stable sort), so the
    lower token id ranks first: the same tie rule as np.argmax."""
    return np.argsort(-logits, axis=-1, kind="stable")


def top_k_filter(logits, k: int) -> np.ndarray:
    """Keep the k highest logits of each row and set the rest to -inf.

    Ties: exactly k tokens are kept. When several tokens share the k-th highest value, the ones with the
    lower token id are kept (the rule of np.argmax), so top_k=1 is exactly greedy decoding. A k larger than
    the vocabulary keeps every token.
    """
    logits = _check_logits(logits, "top_k_filter")
    _check_k(k, "top_k_filter")
    filtered = logits.copy()
    np.put_along_axis(filtered, _descending_order(logits)[:, k:], -np.inf, axis=-1)
    return filtered


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


_MASS_ROUNDING = 1e-10  # far above the rounding of a float64 cumulative sum, far below any p that matters


def top_p_filter(logits, p: float) -> np.ndarray:
    """Keep, in each row, the SMALLEST set of most likely tokens whose total probability reaches p; the rest
    get -inf.

    Walking the tokens from most to least likely, a token is kept while the mass of the tokens before it is
    still below p. So the most likely token is always kept (the mass before it is 0 < p), and dropping the
    least likely kept token would leave less than p. Ties are ranked as in top_k_filter (lower id first).
    Rounding: a mass within 1e-10 of p counts as reaching it, since ten tokens of probability 0.1 add up to
    0.8999999999999999 after nine, and p = 0.9 must keep nine of them, not ten. For the same reason p = 1
    keeps every token instead of trusting a cumulative sum to reach exactly 1.
    """
    logits = _check_logits(logits, "top_p_filter")
    _check_p(p, "top_p_filter")
    if p == 1:
        return logits.copy()
    order = _descending_order(logits)
    sorted_probs = np.take_along_axis(_softmax(logits), order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    drop = np.empty_like(mass_before, dtype=bool)  # filled from sorted order back into token-id order
    np.put_along_axis(drop, order, mass_before >= p - _MASS_ROUNDING, axis=-1)
    return np.where(drop, -np.inf, logits)


def draw_tokens(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of probs (B, V), by inverse-CDF sampling: one uniform u per row picks the first
    token whose cumulative probability exceeds u, so token i is chosen with probability probs[i]; a token of
    probability 0 can never be the first."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(len(probs)) * cdf[:, -1]  # scaled by the row total, which rounding may leave a hair off 1
    return (cdf > u[:, None]).argmax(axis=-1).astype(np.int64)


def check_sampling_options(temperature, top_k, top_p, name: str = "sample_next_token"):
    """Raise a clear error for a temperature < 0, a k < 1 or a p outside (0, 1], before any work is done."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature >= 0:
        raise ValueError(f"{name}: temperature must be >= 0 (0 = greedy decoding), got {temperature!r}")
    if top_k is not None:
        _check_k(top_k, name)
    if top_p is not None:
        _check_p(top_p, name)


def sample_next_token(logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """One token id per row of logits (B, V) -> int64 array (B,).

    temperature=0 is greedy decoding: exactly the argmax (lowest id on ties), drawing no random numbers;
    top_k and top_p cannot change it, since the argmax survives both. Otherwise the logits go through
    temperature -> top-k -> top-p (the module docstring says why in that order) and one token per row is drawn
    from the softmax of what is left. rng defaults to the library's generator, so tgl.manual_seed fixes the
    samples; pass your own np.random.Generator to keep sampling apart from initialisation and dropout.
    """
    logits = _check_logits(logits, "sample_next_token")
    check_sampling_options(temperature, top_k, top_p, "sample_next_token")
    if temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    return draw_tokens(next_token_probs(logits, temperature, top_k, top_p), rng if rng is not None else generator())


def next_token_probs(logits, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> np.ndarray:
    """The distribution (B, V), float64, that sample_next_token draws each row's token from: the softmax of
    the logits after temperature -> top-k -> top-p. temperature=0 gives a one-hot row on the argmax (the
    limit tau -> 0), which is what greedy decoding picks.

    The one definition of "the model's next-token distribution under these options": speculative decoding
    needs the probabilities themselves, of the target and of the draft, not only a sample.
    """
    logits = _check_logits(logits, "next_token_probs")
    check_sampling_options(temperature, top_k, top_p, "next_token_probs")
    if temperature == 0:
        one_hot = np.zeros_like(logits)
        one_hot[np.arange(len(logits)), logits.argmax(axis=-1)] = 1.0
        return one_hot
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return _softmax(logits)
