"""Speculative decoding: a cheap draft model guesses the next k tokens, the target model checks all k in ONE
forward pass, and a rejection rule keeps the output distributed exactly as the target's own samples (Q20).

    result = speculative_generate(target, draft, prompt_ids, max_new_tokens=100, draft_tokens=4, seed=0)
    result.ids, result.acceptance_rate, result.target_forward_passes

Why it can be faster. Decoding one token reads every weight of the model to do a few FLOPs per weight: the
step is limited by memory traffic, not arithmetic. A forward pass over k + 1 tokens reads the weights once
for all of them, so it costs little more than a pass over one. If a draft that is much cheaper than the
target usually guesses right, each target pass yields several tokens instead of one.

One round, with the text so far x:

    1. draft:   d_i ~ q_i = draft(x, d_1..d_{i-1}) for i = 1..k, one token at a time with its KV cache
    2. target:  one forward pass over (last token of x, d_1..d_k) gives p_1..p_{k+1}, with its KV cache
    3. accept:  left to right, keep d_i with probability min(1, p_i(d_i) / q_i(d_i)); at the first rejection
                draw that position's token from normalise(max(0, p_i - q_i)) and stop; if all k are kept,
                draw one bonus token from p_{k+1}
    4. rewind:  both caches forget the tokens after the accepted text

So a round adds between 1 and k + 1 tokens for one target pass. Why the tokens follow p exactly: at one
position, token y comes out either as an accepted draft, with probability q(y) min(1, p(y)/q(y)) =
min(p(y), q(y)), or from the residual after a rejection. A rejection happens with probability
1 - sum_y min(p, q) = sum_y max(0, p - q), which is the residual's normaliser, so the residual contributes
max(0, p(y) - q(y)). The two add up to p(y). The draft decides how many tokens a target pass yields, never
which text comes out.

Greedy (temperature 0): p and q are one-hot (sampling.next_token_probs), so a draft is kept exactly when it
equals the target's argmax, the residual is one-hot on that argmax, and no random number is drawn. The
tokens are generate(target, prompt, n, temperature=0)'s. (Up to float rounding: the target scores k + 1
tokens per matrix product instead of one, which can move a logit in its last bits, enough to flip two
logits that agree to within float32 rounding.)

Context limit: the target reads exactly the windows generate reads (a window that would exceed max_context
restarts from its last max_context // 2 tokens). A round never drafts past the point where the target's
window would restart, so every target distribution is computed from generate's window; after a restart the
cache is rebuilt, as in generate. The draft follows the same rule with its own max_context.

Speed needs a draft much cheaper than the target and a high acceptance rate; experiments/speculative.py
measures both.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..device import as_array_on
from ..random import generator
from .sampling import check_sampling_options, draw_tokens, next_token_probs


@dataclass
class SpeculativeResult:
    """What speculative_generate produced, and what it cost.

    ids: prompt + continuation, int64 (T + max_new_tokens,), as generate returns for a 1-D prompt.
    drafted / accepted: draft tokens proposed / kept by the target, summed over rounds.
    target_forward_passes / draft_forward_passes: forward calls of each model (plain generate makes one
        target call per new token).
    """
    ids: np.ndarray
    drafted: int
    accepted: int
    target_forward_passes: int
    draft_forward_passes: int

    @property
    def acceptance_rate(self) -> float:
        """The fraction of drafted tokens the target kept (nan when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else float("nan")


def acceptance_probability(target_prob: float, draft_prob: float) -> float:
    """min(1, p / q) for a draft token with draft probability q > 0 and target probability p: a token the
    draft proposes more often than the target would say it is kept only often enough to match p."""
    return min(1.0, target_prob / draft_prob)


def residual_distribution(target_probs: np.ndarray, draft_probs: np.ndarray) -> np.ndarray:
    """normalise(max(0, p - q)): where a rejected position draws its token. It holds exactly the mass that
    accepted drafts left short of p, so the two paths together give p."""
    residual = np.maximum(target_probs - draft_probs, 0.0)
    return residual / residual.sum()


def _draw_one(probs: np.ndarray, rng: np.random.Generator) -> int:
    """A token from the distribution probs (V,). A distribution with one possible token (greedy decoding's
    one-hot rows) is decided without drawing a random number."""
    support = np.flatnonzero(probs)
    return int(support[0]) if len(support) == 1 else int(draw_tokens(probs[None], rng)[0])


def _check_accept_inputs(target_probs, draft_probs, draft_tokens):
    target_probs = np.asarray(target_probs, dtype=np.float64)
    draft_probs = np.asarray(draft_probs, dtype=np.float64)
    draft_tokens = np.asarray(draft_tokens)
    k = len(draft_tokens)
    if (draft_tokens.ndim != 1 or target_probs.ndim != 2 or target_probs.shape[0] != k + 1
            or draft_probs.shape != (k, target_probs.shape[1])):
        raise ValueError(f"speculative_accept: for k draft tokens (k,) = {draft_tokens.shape} expected target_probs "
                         f"(k + 1, V) and draft_probs (k, V), got {target_probs.shape} and {draft_probs.shape}; the "
                         "target's extra row is the distribution of the bonus token after all k")
    for name, probs in (("target_probs", target_probs), ("draft_probs", draft_probs)):
        if probs.size and (probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)):
            raise ValueError(f"speculative_accept: every row of {name} must be a distribution (entries >= 0 that "
                             f"sum to 1), got row sums {probs.sum(axis=1)}; pass probabilities, not logits")
    if k and (not np.issubdtype(draft_tokens.dtype, np.integer) or draft_tokens.min() < 0
              or draft_tokens.max() >= target_probs.shape[1]):
        raise ValueError(f"speculative_accept: draft_tokens must be token ids in 0..{target_probs.shape[1] - 1}, "
                         f"got {draft_tokens}")
    if k and (draft_probs[np.arange(k), draft_tokens] <= 0).any():
        raise ValueError("speculative_accept: a draft token has probability 0 under its draft distribution; each "
                         "draft_tokens[i] must have been drawn from draft_probs[i]")
    return target_probs, draft_probs, draft_tokens


def speculative_accept(target_probs, draft_probs, draft_tokens, rng: np.random.Generator | None = None):
    """One verification step: -> (num_accepted, next_token).

    target_probs (k + 1, V): the target's distribution at each drafted position and after the last one.
    draft_probs (k, V): the distributions the draft drew draft_tokens (k,) from.
    Draft i is kept with probability min(1, p_i / q_i), left to right. At the first rejection next_token is
    drawn from residual_distribution(p_i, q_i) and num_accepted = i; if all are kept, num_accepted = k and
    next_token is a bonus draw from target_probs[k]. The text grows by the first num_accepted drafts and then
    next_token. A sure accept (p >= q) or a sure reject (p = 0) draws no random number. rng defaults to
    the library's generator.
    """
    target_probs, draft_probs, draft_tokens = _check_accept_inputs(target_probs, draft_probs, draft_tokens)
    rng = rng if rng is not None else generator()
    for i, token in enumerate(draft_tokens):
        keep = acceptance_probability(target_probs[i, token], draft_probs[i, token])
        if keep < 1 and (keep == 0 or rng.random() >= keep):
            return i, _draw_one(residual_distribution(target_probs[i], draft_probs[i]), rng)
    return len(draft_tokens), _draw_one(target_probs[-1], rng)


class _WindowedReader:
    """One model reading the growing text through generate's window, with a KV cache: the cache holds
    text[start : start + cache.length], and `start` moves only when the window restarts."""

    def __init__(self, model):
        self.model = model
        self.context = model.max_context if model.max_context is not None else math.inf
        self.keep = max(1, model.max_context // 2) if model.max_context is not None else None  # as in generate
        self.start, self.cache, self.forward_passes = 0, model.new_cache(1), 0

    def room(self, length: int):
        """How many tokens can follow text[:length] and still be predicted inside the current window."""
        return self.context - (length - self.start)

    def rewind(self, length: int) -> None:
        """The text is now text[:length]. Every token before its last one is settled (older text or accepted
        drafts); the last may differ from what was fed there, so the cache keeps at most the tokens before it.
        A window that outgrew the context restarts, as in generate."""
        settled = length - 1 - self.start
        if settled < 0 or length - self.start > self.context:
            self._restart(length)
        else:
            self.cache.truncate(min(self.cache.length, settled))

    def read(self, text: list) -> np.ndarray:
        """Logits (n, V) for the n tokens of `text` not yet in the cache (feeding them): row j predicts the
        token that follows the j-th of them, so the last row predicts the token after `text`."""
        if len(text) - self.start > self.context:
            self._restart(len(text))
        unread = np.asarray(text[self.start + self.cache.length:], dtype=np.int64)
        logits = self.model(unread[None], cache=self.cache)
        self.forward_passes += 1
        return np.asarray(as_array_on(getattr(logits, "data", logits)[0], "cpu"))

    def _restart(self, length: int) -> None:
        self.start = max(0, length - self.keep)
        self.cache = self.model.new_cache(1)


def _check_models(target, draft, draft_tokens):
    if target.vocab_size != draft.vocab_size:
        raise ValueError(f"speculative_generate: the target has vocab_size {target.vocab_size} but the draft has "
                         f"{draft.vocab_size}; both must use the same tokenizer, so that a draft token means the "
                         "same text to the target")
    for role, model in (("target", target), ("draft", draft)):
        if not hasattr(model.new_cache(1), "truncate"):
            raise TypeError(f"speculative_generate: the {role} ({type(model).__name__}) has a cache that cannot "
                            "forget tokens (no truncate method); rejected drafts must leave the cache, so use "
                            "models with a KVCache, such as GPT")
    if isinstance(draft_tokens, bool) or not isinstance(draft_tokens, numbers.Integral) or draft_tokens < 1:
        raise ValueError(f"speculative_generate: draft_tokens must be an integer >= 1 (the k tokens the draft "
                         f"proposes per round), got {draft_tokens!r}")


def _check_prompt(target, prompt_ids) -> np.ndarray:
    prompt = np.asarray(as_array_on(getattr(prompt_ids, "data", prompt_ids), "cpu"))
    if prompt.ndim != 1 or len(prompt) == 0:
        raise ValueError(f"speculative_generate: prompt_ids must have shape (T,) with T >= 1, got {prompt.shape}; "
                         "it decodes one sequence (each one accepts a different number of drafts per round)")
    if target.max_context is not None and len(prompt) > target.max_context:
        raise ValueError(f"speculative_generate: the prompt has {len(prompt)} tokens but the target reads at most "
                         f"max_context={target.max_context}; keep its last {target.max_context} tokens")
    return target.check_ids(prompt[None])[0]


def speculative_generate(target, draft, prompt_ids, max_new_tokens: int, draft_tokens: int = 4,
                         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                         seed: int | None = None, rng: np.random.Generator | None = None) -> SpeculativeResult:
    """Extend a 1-D prompt by max_new_tokens tokens distributed exactly as generate(target, ...)'s, with the
    draft proposing up to draft_tokens (k) tokens per round (the module docstring shows a round).

    temperature, top_k, top_p: the options of generate, applied to the target and the draft alike. Randomness
    comes from `rng`, else np.random.default_rng(seed), else the library's generator; greedy decoding draws
    none. Both models must share the tokenizer (the same vocab_size). Runs under no_grad in eval mode and
    restores each model's training mode afterwards.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"speculative_generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_sampling_options(temperature, top_k, top_p, "speculative_generate")
    if seed is not None and rng is not None:
        raise ValueError("speculative_generate: pass either seed or rng, not both (rng already fixes the random "
                         "stream)")
    _check_models(target, draft, draft_tokens)
    prompt = _check_prompt(target, prompt_ids)
    rng = rng if rng is not None else (np.random.default_rng(seed) if seed is not None else generator())

    modes = [(model, model.training) for model in (target, draft)]
    try:
        target.eval()
        draft.eval()
        with no_grad():
            return _decode(target, draft, prompt, max_new_tokens, draft_tokens, (temperature, top_k, top_p), rng)
    finally:
        for model, was_training in modes:
            model.train(was_training)


def _decode(target, draft, prompt, max_new_tokens, draft_tokens, options, rng) -> SpeculativeResult:
    """The rounds: draft k tokens, verify them in one target pass, keep the accepted ones, rewind both caches."""
    text, end = [int(token) for token in prompt], len(prompt) + max_new_tokens
    verifier, drafter = _WindowedReader(target), _WindowedReader(draft)
    drafted = accepted = 0
    while len(text) < end:
        verifier.rewind(len(text))
        drafter.rewind(len(text))
        # Never draft past the target's window (its distributions must come from generate's windows) or the end.
        k = min(draft_tokens, end - len(text) - 1, verifier.room(len(text)))
        proposals, draft_probs = [], np.zeros((k, target.vocab_size))
        for i in range(k):
            draft_probs[i] = next_token_probs(drafter.read(text + proposals)[-1:], *options)[0]
            proposals.append(_draw_one(draft_probs[i], rng))
        target_probs = next_token_probs(verifier.read(text + proposals)[-(k + 1):], *options)
        num_accepted, next_token = speculative_accept(target_probs, draft_probs, proposals, rng)
        text += proposals[:num_accepted] + [next_token]
        drafted, accepted = drafted + k, accepted + num_accepted
    return SpeculativeResult(np.array(text, dtype=np.int64), drafted, accepted, verifier.forward_passes,
                             drafter.forward_passes)
