"""Beam search: keep the K most probable prefixes instead of only the best one (Q14, Q19).

Greedy search commits to the best token at each step; a token that looks slightly worse now may lead to a
much more probable sequence. Beam search keeps K ("beam width") prefixes per source:

    each step: extend every live beam by every token           K * V candidates, score = sum of log-probs
               keep the K best candidates over ALL K * V         (not the best per beam: that is K greedy searches)
    a beam that emits EOS is finished: it stays in the beam with its score frozen (extended only by EOS at
    no cost), competing with the live beams until every beam is finished or max_length is reached.

Scores are sums of log-probabilities (a product of probabilities underflows after a few hundred tokens,
and sums are what the search compares). Because every added token lowers the sum, finished short
hypotheses are favoured; the length penalty corrects for that when the finished beams are ranked:

    final score = sum log p / lp(n),   lp(n) = ((5 + n) / 6) ** length_penalty     (GNMT, Wu et al. 2016)

length_penalty = 0 ranks by the raw sum; larger values favour longer outputs. n counts the tokens and EOS.

Facts the tests check: width 1 is greedy search; the returned score is the teacher-forced log-probability of
the returned sequence; a beam wide enough to hold every prefix finds the most probable sequence. What is
NOT a theorem: a wider beam can end BELOW greedy, when the K beams that pushed greedy's prefix out all lead
somewhere improbable later (tests/test_seq2seq_decoding.py builds such a model). Beam search is a
heuristic; on trained models it is rarely worse than greedy, and that is measured, not assumed.
"""
from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from .greedy_decode import DecodedBatch, next_token_log_probs, resolve_max_length, strip_after_eos


def length_penalty_factor(lengths, length_penalty: float) -> np.ndarray:
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha: divide a summed log-probability by it to rank finished beams."""
    return ((5.0 + np.asarray(lengths, dtype=np.float64)) / 6.0) ** length_penalty


def beam_search(model, source, source_padding=None, *, bos_id: int, eos_id: int, beam_width: int = 4,
                max_length: int | None = None, length_penalty: float = 0.0, return_all: bool = False):
    """The best of `beam_width` beams for every source (B, S), batched as B * K decoder rows.

    Returns a DecodedBatch with the best sequence per source and its raw summed log-probability; with
    return_all, also the (B, K) lists of every final beam and their length-penalised scores, best first.
    Ties keep the candidate with the lower (beam, token) index, as greedy's argmax does.
    """
    if not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_search: beam_width must be a positive integer, got {beam_width!r}")
    max_length = resolve_max_length(model, max_length, "beam_search")
    width = int(beam_width)
    with no_grad():
        encoded = model.encode(source, source_padding)
        batch = encoded.batch_size
        encoded = encoded.select(np.repeat(np.arange(batch), width))   # row b * K + k is beam k of source b
        cache = model.new_cache(encoded)
        scores = np.full((batch, width), -np.inf)
        scores[:, 0] = 0.0            # all beams start as the same [BOS]; keep one so the first step has no duplicates
        finished = np.zeros((batch, width), dtype=bool)
        sequences = np.zeros((batch, width, 0), dtype=np.int64)
        last = np.full(batch * width, bos_id, dtype=np.int64)
        for _ in range(max_length):
            log_probs = next_token_log_probs(model, last, encoded, cache).reshape(batch, width, -1)
            candidates = scores[..., None] + log_probs                           # (B, K, V)
            candidates[finished] = -np.inf
            candidates[finished, eos_id] = scores[finished]                      # a finished beam carries over
            flat = candidates.reshape(batch, -1)
            best = np.argsort(-flat, axis=1, kind="stable")[:, :width]           # top K over all K * V
            parents, tokens = np.divmod(best, log_probs.shape[-1])
            rows = np.arange(batch)[:, None]
            scores = flat[rows, best]
            sequences = np.concatenate([sequences[rows, parents], tokens[..., None]], axis=2)
            finished = finished[rows, parents] | (tokens == eos_id)
            cache.reorder((rows * width + parents).ravel())
            last = tokens.ravel()
            if finished.all():
                break
    stripped = [[strip_after_eos(sequences[b, k], eos_id) for k in range(width)] for b in range(batch)]
    lengths = np.array([[len(tokens) + done for tokens, done in row] for row in stripped])
    ranked = np.where(np.isfinite(scores), scores / length_penalty_factor(lengths, length_penalty), -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")
    top = order[:, 0]
    result = DecodedBatch([stripped[b][top[b]][0] for b in range(batch)], scores[np.arange(batch), top],
                          np.array([stripped[b][top[b]][1] for b in range(batch)]))
    if not return_all:
        return result
    beams = [[stripped[b][k][0] for k in order[b]] for b in range(batch)]
    return result, beams, np.take_along_axis(ranked, order, axis=1)
