"""Autoregressive generation: predict one token, append it, predict the next from the longer text.

One forward pass over a prompt is NOT a continuation (M20): its logits at position t guess token
t + 1 of the prompt itself, which is already known. Only the loop below extends the text, and each step
depends on the token chosen at the step before, so the steps cannot run in parallel.

    ids = generate(model, prompt_ids, max_new_tokens=50, temperature=0.8, top_k=40, seed=0)

Two ways to run the loop give the same tokens (Q21):

- use_cache=True: the prompt is read once into model.new_cache(batch); afterwards each new token is fed
  alone and the model reuses what it stored (keys and values, an RNN's hidden state). Per token the work
  is constant in the number of tokens already generated (apart from attention reading the cache).
- use_cache=False: every step reads the whole sequence again. Generating T tokens costs O(T^2) token reads,
  O(T^3 d) for attention: the slow baseline that the cache speedup is measured against.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import no_grad
from ..device import as_array_on
from .sampling import check_sampling_options, sample_next_token


def _last_logits(model, ids: np.ndarray, cache) -> np.ndarray:
    """The model's logits for the token after `ids`: the last row of its (B, T, V) output."""
    logits = model(ids, cache=cache)
    logits = getattr(logits, "data", logits)
    expected = (ids.shape[0], ids.shape[1], model.vocab_size)
    if logits.shape != expected:
        raise ValueError(f"generate: {type(model).__name__} returned logits of shape {logits.shape} for ids of "
                         f"shape {ids.shape}; a LanguageModel must return (batch, time, vocab_size) = {expected}")
    return np.array(as_array_on(logits[:, -1], "cpu"))  # only the last position comes to the host, for sampling


def _check_prompt(model, prompt_ids) -> np.ndarray:
    if not callable(getattr(model, "check_ids", None)):
        raise ValueError(f"generate: {type(model).__name__} is not a causal language model; generation continues text "
                        "one next token at a time, which a model must have been trained to predict. A masked LM "
                        "(train --objective mlm) reads both sides of each position: it fills in blanks, it cannot "
                        "continue a prompt (put a task head on it with from_pretrained instead)")
    prompt = as_array_on(getattr(prompt_ids, "data", prompt_ids), "cpu")
    if prompt.ndim not in (1, 2) or prompt.shape[-1] == 0:
        raise ValueError(f"generate: prompt_ids must have shape (T,) or (batch, T) with T >= 1, got {prompt.shape}; "
                         "a model needs at least one token to condition on (start with a start-of-text token)")
    max_context = getattr(model, "max_context", None)
    if max_context is not None and prompt.shape[-1] > max_context:
        raise ValueError(f"generate: the prompt has {prompt.shape[-1]} tokens but {type(model).__name__} reads at "
                         f"most max_context={max_context}; keep its last {max_context} tokens "
                         f"(prompt_ids[..., -{max_context}:]) or use a model with a longer context")
    return model.check_ids(prompt if prompt.ndim == 2 else prompt[None])


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, rng: np.random.Generator | None = None,
             use_cache: bool = True, stop_token_id: int | None = None, on_token=None, return_logits: bool = False,
             logits_processors=()):
    """Extend each prompt by up to max_new_tokens tokens; returns prompt + generated ids (int64).

    prompt_ids (T,) gives a (T + n,) array; (B, T) gives (B, T + n), where n = max_new_tokens unless a stop
    token ended generation early. The prompt is part of the output, unchanged.

    Sampling: temperature, top_k, top_p as in sample_next_token (temperature=0 is greedy). Randomness comes
    from `rng`, else from np.random.default_rng(seed), else from the library generator (tgl.manual_seed).

    Context limit: a model with max_context = C reads at most C tokens. When the next step would need C + 1,
    the window the model reads restarts from the last max(1, C // 2) tokens: the cached path builds a fresh
    cache from them (the old one holds tokens that left the window, and with position embeddings every kept
    token now sits at a new position), the uncached path simply reads the same tokens. Both see identical
    windows, so they choose identical tokens.
    Why not slide by one token each step? Then the cache would have to be rebuilt from C tokens at every step,
    no cheaper than having no cache; restarting at C // 2 rebuilds once every ~C // 2 steps, about one extra
    token read per generated token, while keeping at least C // 2 tokens of context.

    stop_token_id: a sequence that produces it is finished; the stop token is kept in the output. With one
    sequence generation ends right there. With a batch it goes on until every sequence has finished (or
    max_new_tokens), and finished sequences are padded with stop_token_id (sampled tokens for them are
    discarded; a finished row never influences the other rows).

    on_token(tokens) is called as soon as each step's tokens are chosen, before the next step runs
    (streaming): with an int for a 1-D prompt, with an int64 array (B,) for a batch.

    logits_processors: functions process(ids, logits) -> logits, applied in order to each step's logits
    before sampling. ids (B, t) is every sequence so far (prompt + tokens chosen), never cut to the context
    window; logits (B, V) float64. A processor restricts what may come next (a banned token gets -inf, so
    probability exactly 0): see tinygrad_llm/responsible/restricted_decoding.py. With none, nothing changes.

    return_logits=True returns (ids, logits) where logits[..., i, :] are the raw model logits (before
    processors, temperature and filtering) that token i of the continuation was chosen from: shape (n, V) or
    (B, n, V).
    Runs under no_grad in eval mode (dropout off) and restores the model's training mode afterwards.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_sampling_options(temperature, top_k, top_p, "generate")
    if seed is not None and rng is not None:
        raise ValueError("generate: pass either seed or rng, not both (rng already fixes the random stream)")
    if stop_token_id is not None and (isinstance(stop_token_id, bool) or not isinstance(stop_token_id, numbers.Integral)
                                      or not 0 <= stop_token_id < model.vocab_size):
        raise ValueError(f"generate: stop_token_id {stop_token_id} is outside the vocabulary "
                         f"0..{model.vocab_size - 1}")
    logits_processors = tuple(logits_processors)
    if not all(callable(process) for process in logits_processors):
        raise ValueError("generate: logits_processors must be functions process(ids, logits) -> logits, got "
                         f"{[type(process).__name__ for process in logits_processors]}")
    single_sequence = np.ndim(getattr(prompt_ids, "data", prompt_ids)) == 1
    prompt = _check_prompt(model, prompt_ids)
    rng = rng if rng is not None else (np.random.default_rng(seed) if seed is not None else None)

    was_training = model.training
    model.eval()
    try:
        with no_grad():
            new_tokens, step_logits = _decode(model, prompt, max_new_tokens, temperature, top_k, top_p, rng,
                                              use_cache, stop_token_id, on_token, single_sequence,
                                              logits_processors)
    finally:
        model.train(was_training)

    batch, vocab = prompt.shape[0], model.vocab_size
    ids = np.concatenate([prompt, np.stack(new_tokens, axis=1) if new_tokens else prompt[:, :0]], axis=1)
    logits = np.stack(step_logits, axis=1) if step_logits else np.zeros((batch, 0, vocab), np.float32)
    if single_sequence:
        ids, logits = ids[0], logits[0]
    return (ids, logits) if return_logits else ids


def _processed(logits_processors, prompt, new_tokens, logits) -> np.ndarray:
    """logits after each processor in turn; each sees the whole text so far, prompt + tokens chosen."""
    if not logits_processors:
        return logits
    ids = np.concatenate([prompt, *(tokens[:, None] for tokens in new_tokens)], axis=1)
    processed = logits.astype(np.float64)
    for process in logits_processors:
        processed = process(ids, processed)
        if np.shape(processed) != logits.shape:
            raise ValueError(f"generate: logits processor {getattr(process, '__name__', process)} returned shape "
                             f"{np.shape(processed)} for logits of shape {logits.shape}; it must return the same shape")
    return processed


def _decode(model, prompt, max_new_tokens, temperature, top_k, top_p, rng, use_cache, stop_token_id, on_token,
            single_sequence, logits_processors):
    """The loop itself: returns the chosen tokens and the logits they came from, one (B,) / (B, V) per step."""
    if max_new_tokens == 0:
        return [], []
    batch = prompt.shape[0]
    max_context = getattr(model, "max_context", None)
    keep = max(1, max_context // 2) if max_context is not None else None
    finished = np.zeros(batch, dtype=bool)
    new_tokens, step_logits = [], []

    window = prompt
    cache = model.new_cache(batch) if use_cache else None
    logits = _last_logits(model, window, cache)
    for step in range(max_new_tokens):
        tokens = sample_next_token(_processed(logits_processors, prompt, new_tokens, logits), temperature, top_k,
                                   top_p, rng)
        if stop_token_id is not None:
            tokens = np.where(finished, stop_token_id, tokens)
            finished |= tokens == stop_token_id
        new_tokens.append(tokens)
        step_logits.append(logits)
        if on_token is not None:
            on_token(int(tokens[0]) if single_sequence else tokens.copy())
        if step == max_new_tokens - 1 or finished.all():
            break
        window = np.concatenate([window, tokens[:, None]], axis=1)
        if max_context is not None and window.shape[1] > max_context:
            window = window[:, -keep:]
            cache = model.new_cache(batch) if use_cache else None
            fed = window
        else:
            fed = window[:, -1:] if use_cache else window
        logits = _last_logits(model, fed, cache)
    return new_tokens, step_logits
