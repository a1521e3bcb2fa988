"""Deliberately broken pieces of speculative decoding, each named after its bug; test_speculative.py swaps each
one into tinygrad_llm.generation.speculative (or KVCache) and proves that its checks catch it."""
import numpy as np


def acceptance_without_a_coin_flip(target_prob, draft_prob):
    """Keeps a draft token exactly when the target likes it at least as much (p >= q) and never otherwise. A
    token the draft over-proposes (0 < p < q) is then always rejected, and the residual max(0, p - q) is 0
    there, so it can never come out at all: greedy decoding is unaffected, sampling is not."""
    return 1.0 if target_prob >= draft_prob else 0.0  # BUG: should be min(1, p / q), a probability


def residual_that_is_the_target(target_probs, draft_probs):
    """After a rejection, draws from the target's p itself instead of max(0, p - q): the tokens the draft
    already got accepted at their rate min(p, q) are counted a second time."""
    return np.asarray(target_probs)  # BUG: should be normalise(max(0, p - q))


def truncate_that_forgets_nothing(cache, length):
    """Never rolls the cache back: the rejected drafts' keys and values stay. The cache then claims to hold
    more tokens than the accepted text has, and decoding goes wrong (here the reader finds nothing new to
    feed and fails; a loop that fed the new tokens anyway would attend to text that was never accepted)."""
    # BUG: keys, values, padding flags and length all stay as they were
