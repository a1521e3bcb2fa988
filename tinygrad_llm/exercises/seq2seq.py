"""Exercises on encoder-decoder models (chapter 7): the cross-attention mask, the teacher-forcing
shift, and one step of beam search.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import float_arrays


def cross_attention_mask(source_padding: np.ndarray, target_length: int) -> np.ndarray:
    """Additive mask (B, T, S), float64, for cross-attention from T decoder queries to S encoder keys.

    source_padding (B, S) bool is True where the source is padding. Entry [b, t, s] is 0.0 where decoder
    position t of row b may read source position s and -inf where not. Every source row has a real token.
    """
    hidden = np.broadcast_to(source_padding[:, None, :], (source_padding.shape[0], target_length,
                                                          source_padding.shape[1]))
    return np.where(hidden, -np.inf, 0.0)


def teacher_forcing_shift(targets: list, bos_id: int, eos_id: int, pad_id: int,
                          ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(decoder_input, decoder_target), both (B, T) int64 with T = longest target + 1, for a list of B
    target id lists (some may be empty).

    Row b of decoder_input is [bos_id] + targets[b], then pad_id; row b of decoder_target is
    targets[b] + [eos_id], then ignore_index (so the loss skips the padding).
    """
    width = max(len(target) for target in targets) + 1
    decoder_input = np.full((len(targets), width), pad_id, dtype=np.int64)
    decoder_target = np.full((len(targets), width), ignore_index, dtype=np.int64)
    for row, target in enumerate(targets):
        decoder_input[row, :len(target) + 1] = [bos_id, *target]
        decoder_target[row, :len(target) + 1] = [*target, eos_id]
    return decoder_input, decoder_target


def beam_search_step(scores: np.ndarray, log_probs: np.ndarray, finished: np.ndarray,
                     eos_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of beam search with K beams over a vocabulary of V tokens.

    scores (K,) float64: each beam's summed log-probability so far; log_probs (K, V) float64: the model's
    next-token log-probabilities for each beam; finished (K,) bool: the beam has already emitted EOS.
    A live beam k extended by token v scores scores[k] + log_probs[k, v]. A finished beam is carried over
    unchanged: its only extension is eos_id, at its old score. Keep the K best of all K * V extensions.

    Returns (new_scores (K,) float64, best first; parents (K,) int64, the beam each came from; tokens (K,)
    int64, the token appended). Ties go to the lower flat index k * V + v (the lower beam, then token).
    """
    candidates = scores[:, None] + log_probs
    candidates[finished] = -np.inf
    candidates[finished, eos_id] = scores[finished]
    flat = candidates.ravel()
    best = np.argsort(-flat, kind="stable")[:len(scores)]
    parents, tokens = np.divmod(best, log_probs.shape[1])
    return flat[best], parents.astype(np.int64), tokens.astype(np.int64)


# ---- cross_attention_mask ----------------------------------------------------------------------------------

@st.composite
def cross_mask_inputs(draw, padded: bool = True, square: bool = False) -> dict:
    """source_padding (B, S), B 1-3, S 1-5: each row right-padded after 1..S real tokens (none if not
    padded); target_length 1-5, equal to S if square."""
    batch, source_length = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    real = [draw(st.integers(1, source_length)) if padded else source_length for _ in range(batch)]
    source_padding = np.arange(source_length)[None, :] >= np.array(real)[:, None]
    target_length = source_length if square else draw(st.integers(1, 5))
    return {"source_padding": source_padding, "target_length": target_length}


ZERO_OR_MINUS_INF = ("holds only 0 (visible) and -inf (hidden): the mask is added to the scores, and a hidden key "
                     "needs exp(-inf) = 0")
NO_CAUSAL_PART = ("with no padding every decoder query sees EVERY source key: cross-attention reads the whole "
                  "source, it has no causal part")
HIDES_KEYS = ("padding hides KEYS (the last axis, the source positions) for every query: mask[b, t, s] is -inf "
              "exactly where source_padding[b, s]")
ANY_LENGTHS = "works when the target and source lengths differ (T != S)"


def _zero_or_minus_inf(learner, drawn: dict) -> None:
    mask = call_learner(learner, drawn, ZERO_OR_MINUS_INF)
    expected = cross_attention_mask(**drawn)
    expect_close(ZERO_OR_MINUS_INF, drawn, expected, mask, None, None)
    if not np.all((mask == 0) | (mask == -np.inf)):
        raise PropertyFailed(ZERO_OR_MINUS_INF, drawn, expected, mask,
                             "a 0/1 or True/False mask added to the scores hides nothing; use "
                             "np.where(hidden, -np.inf, 0.0)")


def _no_causal_part(learner, drawn: dict) -> None:
    mask = call_learner(learner, drawn, NO_CAUSAL_PART)
    expected = cross_attention_mask(**drawn)
    expect_close(NO_CAUSAL_PART, drawn, expected, mask, None, None)
    if np.any(mask != 0):
        t, s = (int(i) for i in np.argwhere(mask != 0)[0][1:])
        raise PropertyFailed(NO_CAUSAL_PART, drawn, expected, mask,
                             f"query {t} cannot see source key {s}, a real token. The decoder's SELF-attention is "
                             "causal (its future target tokens do not exist yet at inference), but the whole source "
                             "is known before decoding starts: only padding is hidden in cross-attention")


def _hides_keys(learner, drawn: dict) -> None:
    mask = call_learner(learner, drawn, HIDES_KEYS)
    expected = cross_attention_mask(**drawn)
    expect_close(HIDES_KEYS, drawn, expected, mask, None, None)
    if not np.array_equal(mask == -np.inf, expected == -np.inf):
        raise PropertyFailed(HIDES_KEYS, drawn, expected, mask,
                             "the padding flags index source positions, so they select columns (keys), not rows "
                             "(queries): broadcast source_padding as [:, None, :]. A query row that is all -inf "
                             "also gives a softmax of 0/0 = nan")


# ---- teacher_forcing_shift ---------------------------------------------------------------------------------

@st.composite
def shift_inputs(draw) -> dict:
    """1-4 target lists of 0-5 ids, with distinct special ids drawn from 0..5 and ignore_index -100 or -1."""
    bos_id, eos_id, pad_id = draw(st.permutations(range(6)))[:3]
    symbols = [i for i in range(10) if i not in (bos_id, eos_id, pad_id)]
    targets = draw(st.lists(st.lists(st.sampled_from(symbols), max_size=5), min_size=1, max_size=4))
    return {"targets": targets, "bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id,
            "ignore_index": draw(st.sampled_from([-100, -1]))}


SHIFT_SHAPES = "returns (decoder_input, decoder_target), both (B, T) int64 with T = longest target + 1"
INPUT_IS_BOS_PLUS_TARGET = ("decoder_input row b is [BOS] + targets[b], then pad_id: the decoder sees the tokens "
                            "BEFORE the one it predicts, never that token itself")
TARGET_IS_TARGET_PLUS_EOS = ("decoder_target row b starts with targets[b] + [EOS]: position t is scored on the "
                             "token that decoder_input shows at t + 1, and the last prediction is EOS")
PADS_IGNORED = "decoder_target is ignore_index after EOS, so padding gets no loss and no gradient"


def _shift_of(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    result = call_learner(learner, drawn, name)
    expect_close(name, drawn, teacher_forcing_shift(**drawn), result, None, None,
                 names=("decoder_input", "decoder_target"))
    return result


def _input_is_bos_plus_target(learner, drawn: dict) -> None:
    decoder_input, _ = _shift_of(learner, drawn, INPUT_IS_BOS_PLUS_TARGET)
    expected, _ = teacher_forcing_shift(**drawn)
    if not np.array_equal(decoder_input, expected):
        raise PropertyFailed(INPUT_IS_BOS_PLUS_TARGET, drawn, {"decoder_input": expected},
                             {"decoder_input": decoder_input},
                             "the input is the target shifted RIGHT by one with BOS in front: column 0 is BOS, so the "
                             "first prediction has a context, and column t + 1 holds target token t. An input that "
                             "already contains the token to predict lets the model copy it (teacher-forced loss ~0, "
                             "free-running output garbage)")


def _target_is_target_plus_eos(learner, drawn: dict) -> None:
    _, decoder_target = _shift_of(learner, drawn, TARGET_IS_TARGET_PLUS_EOS)
    _, expected = teacher_forcing_shift(**drawn)
    real = expected != drawn["ignore_index"]
    if not np.array_equal(decoder_target[real], expected[real]):
        raise PropertyFailed(TARGET_IS_TARGET_PLUS_EOS, drawn, {"decoder_target": expected},
                             {"decoder_target": decoder_target},
                             "decoder_target[b, t] is the token the decoder must produce after reading "
                             "decoder_input[b, :t + 1]: target token t, and EOS after the last one (that is how "
                             "the model learns to stop). Scoring the input itself (BOS first) is not shifted")


def _pads_ignored(learner, drawn: dict) -> None:
    _, decoder_target = _shift_of(learner, drawn, PADS_IGNORED)
    _, expected = teacher_forcing_shift(**drawn)
    if not np.array_equal(decoder_target, expected):
        raise PropertyFailed(PADS_IGNORED, drawn, {"decoder_target": expected}, {"decoder_target": decoder_target},
                             "cross_entropy(..., ignore_index=ignore_index) skips those entries; a pad_id there "
                             "trains every short row to predict padding after EOS and dilutes the mean loss")


# ---- beam_search_step --------------------------------------------------------------------------------------

@st.composite
def beam_inputs(draw, finished: bool | None = False, ties: bool = False) -> dict:
    """K 1-4 beams, V 2-5 tokens; log_probs rows are log-softmaxes; scores in [-8, 0]. finished: False = no
    beam finished, True = at least one, None = either. ties: logits from {0, 1} and scores from {-1, -2},
    so many candidates tie."""
    beams, vocab = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    if ties:
        logits = np.array(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=beams * vocab,
                                        max_size=beams * vocab))).reshape(beams, vocab)
        scores = np.array(draw(st.lists(st.sampled_from([-1.0, -2.0]), min_size=beams, max_size=beams)))
    else:
        logits, scores = draw(float_arrays((beams, vocab), -4.0, 4.0)), draw(float_arrays((beams,), -8.0, 0.0))
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    if finished is None:
        done = np.array(draw(st.lists(st.booleans(), min_size=beams, max_size=beams)))
    elif finished:
        done = np.array(draw(st.lists(st.booleans(), min_size=beams, max_size=beams)))
        done[draw(st.integers(0, beams - 1))] = True
    else:
        done = np.zeros(beams, dtype=bool)
    return {"scores": scores, "log_probs": log_probs, "finished": done, "eos_id": draw(st.integers(0, vocab - 1))}


BEAM_SHAPES = "returns (new_scores (K,) float64, parents (K,) int64, tokens (K,) int64)"
ADDS_LOG_PROBS = ("each new score is its parent's score + the token's log-prob: log-probabilities ADD along a "
                  "sequence (probabilities would multiply)")
BEST_OF_ALL = ("keeps the K best of ALL K * V extensions, best first: one beam may have several children and "
               "another none")
FINISHED_CARRIED = ("a finished beam is carried over unchanged: its only extension is EOS at its old score, so it "
                    "has at most one child")
TIES = "matches the reference exactly, ties included (lower beam, then lower token)"


def _step_of(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    result = call_learner(learner, drawn, name)
    expect_close(name, drawn, beam_search_step(**drawn), result, None, None, names=("new_scores", "parents", "tokens"))
    new_scores, parents, tokens = (np.asarray(item) for item in result)
    beams, vocab = drawn["log_probs"].shape
    if not (np.issubdtype(parents.dtype, np.integer) and np.issubdtype(tokens.dtype, np.integer)
            and np.all((0 <= parents) & (parents < beams)) and np.all((0 <= tokens) & (tokens < vocab))):
        raise PropertyFailed(name, drawn, beam_search_step(**drawn), result,
                             f"parents must be integer beam indices in 0..{beams - 1} and tokens integer ids in "
                             f"0..{vocab - 1}")
    return new_scores, parents, tokens


def _adds_log_probs(learner, drawn: dict) -> None:
    new_scores, parents, tokens = _step_of(learner, drawn, ADDS_LOG_PROBS)
    implied = drawn["scores"][parents] + drawn["log_probs"][parents, tokens]
    if not np.allclose(new_scores, implied, rtol=1e-12, atol=1e-12):
        raise PropertyFailed(ADDS_LOG_PROBS, drawn, {"scores[parents] + log_probs[parents, tokens]": implied},
                             {"new_scores": new_scores},
                             "log P(prefix + v) = log P(prefix) + log P(v | prefix). Adding probabilities (or "
                             "multiplying log-probs) ranks candidates by a quantity that is no probability")


def _best_of_all(learner, drawn: dict) -> None:
    new_scores, _, _ = _step_of(learner, drawn, BEST_OF_ALL)
    expected, _, _ = beam_search_step(**drawn)
    if not np.allclose(new_scores, expected, rtol=1e-12, atol=1e-12):
        raise PropertyFailed(BEST_OF_ALL, drawn, {"new_scores": expected}, {"new_scores": new_scores},
                             "rank every (beam, token) pair together: flatten the (K, V) candidate scores and take "
                             "the K largest. Keeping the best token of each beam is K separate greedy searches")


def _finished_carried(learner, drawn: dict) -> None:
    new_scores, parents, tokens = _step_of(learner, drawn, FINISHED_CARRIED)
    expected = beam_search_step(**drawn)
    for k in np.flatnonzero(drawn["finished"]):
        children = np.flatnonzero(parents == k)
        if len(children) > 1 or any(tokens[c] != drawn["eos_id"] or new_scores[c] != drawn["scores"][k]
                                    for c in children):
            raise PropertyFailed(FINISHED_CARRIED, drawn, expected, (new_scores, parents, tokens),
                                 f"beam {k} is finished, so its only possible child is (score "
                                 f"{float(drawn['scores'][k])}, token {drawn['eos_id']}); its children (score, token) "
                                 f"are {[(float(new_scores[c]), int(tokens[c])) for c in children]}. A hypothesis "
                                 "ends at EOS: give a finished beam -inf for every token except eos_id, which keeps "
                                 "its score, so it competes with the live beams without growing")


CROSS_ATTENTION_MASK = Exercise(
    name="cross_attention_mask",
    title="The cross-attention mask of an encoder-decoder: padding hides keys, nothing is causal (Q15)",
    statement=(
        "In a decoder layer, cross-attention lets each of the T target positions (queries) read the S encoder\n"
        "states (keys and values) of its own source row. Implement cross_attention_mask(source_padding,\n"
        "target_length): source_padding (B, S) bool is True where the source is padding; return the additive\n"
        "mask (B, T, S), float64, with 0.0 where query t of row b may read source position s and -inf where\n"
        "not. It is added to the (B, T, S) scores before the softmax over the keys. Every source row has at\n"
        "least one real token. Exact comparison."
    ),
    reference=cross_attention_mask,
    hints=(
        "Which positions are hidden depends only on the source position s: a padded source token is no key for "
        "any query. Nothing depends on t: the whole source exists before the decoder starts, so there is no "
        "causal part (that belongs to the decoder's self-attention).",
        "Give the padding a new axis of size 1 for the queries, between B and S; broadcast that to (B, T, S) "
        "(np.broadcast_to), and map True (padding) to minus infinity and False to 0.0.",
    ),
    checks=(
        has_reference_shapes(cross_attention_mask, cross_mask_inputs(square=True),
                             "returns a (B, T, S) float64 array"),
        Check(ZERO_OR_MINUS_INF, cross_mask_inputs(square=True), _zero_or_minus_inf),
        Check(NO_CAUSAL_PART, cross_mask_inputs(padded=False, square=True), _no_causal_part),
        Check(HIDES_KEYS, cross_mask_inputs(square=True), _hides_keys),
        matches_reference(cross_attention_mask, cross_mask_inputs(), rtol=0, atol=0, name=ANY_LENGTHS),
    ),
)

TEACHER_FORCING_SHIFT = Exercise(
    name="teacher_forcing_shift",
    title="Teacher forcing: the decoder input is the target shifted right behind BOS (Q14, M31)",
    statement=(
        "A decoder is trained on every target position at once: it reads the gold prefix and predicts the next\n"
        "token. Implement teacher_forcing_shift(targets, bos_id, eos_id, pad_id, ignore_index) for a list of B\n"
        "target id lists (some may be empty): return (decoder_input, decoder_target), both (B, T) int64 with\n"
        "T = longest target + 1, right-padded. Row b of decoder_input is [bos_id] + targets[b] then pad_id;\n"
        "row b of decoder_target is targets[b] + [eos_id] then ignore_index. Example: targets [[7, 8], [9]],\n"
        "BOS 1, EOS 2, PAD 0, ignore -100 -> input [[1, 7, 8], [1, 9, 0]], target [[7, 8, 2], [9, 2, -100]].\n"
        "Exact comparison."
    ),
    reference=teacher_forcing_shift,
    hints=(
        "Decoder position t must predict target token t from the tokens BEFORE it: so the input at t is token "
        "t - 1 (BOS for t = 0) and the target at t is token t (EOS after the last one).",
        "Start from two (B, T) int64 arrays filled with pad_id and with ignore_index. In row b, the first "
        "len(targets[b]) + 1 input entries are BOS followed by the targets, and the same entries of the target row "
        "are the targets followed by EOS.",
    ),
    checks=(
        has_reference_shapes(teacher_forcing_shift, shift_inputs(), SHIFT_SHAPES,
                             names=("decoder_input", "decoder_target")),
        Check(INPUT_IS_BOS_PLUS_TARGET, shift_inputs(), _input_is_bos_plus_target),
        Check(TARGET_IS_TARGET_PLUS_EOS, shift_inputs(), _target_is_target_plus_eos),
        Check(PADS_IGNORED, shift_inputs(), _pads_ignored),
    ),
)

BEAM_SEARCH_STEP = Exercise(
    name="beam_search_step",
    title="One step of beam search: the K best of all K x V extensions (Q14, Q19)",
    statement=(
        "Implement beam_search_step(scores, log_probs, finished, eos_id) for K beams over V tokens:\n"
        "scores (K,) float64 are the beams' summed log-probabilities, log_probs (K, V) float64 the model's\n"
        "next-token log-probabilities per beam, finished (K,) bool marks beams that already emitted EOS.\n"
        "A live beam k extended by token v scores scores[k] + log_probs[k, v]. A finished beam is carried\n"
        "over unchanged: its only extension is eos_id, at its old score (so it keeps competing, never grows).\n"
        "Return the K best extensions of all K * V as (new_scores (K,) float64 best first, parents (K,) int64,\n"
        "tokens (K,) int64). Ties go to the lower flat index k * V + v. Exact comparison, ties included."
    ),
    reference=beam_search_step,
    hints=(
        "Build all K x V candidate scores with broadcasting: scores[:, None] + log_probs. For finished rows, "
        "overwrite with -inf everywhere, then put scores[k] back at column eos_id.",
        "Flatten to K * V, sort descending with a stable sort (np.argsort(-flat, kind=\"stable\")) and keep the "
        "first K; np.divmod(index, V) turns a flat index back into (parent beam, token).",
    ),
    checks=(
        has_reference_shapes(beam_search_step, beam_inputs(finished=None), BEAM_SHAPES,
                             names=("new_scores", "parents", "tokens")),
        Check(ADDS_LOG_PROBS, beam_inputs(), _adds_log_probs),
        Check(BEST_OF_ALL, beam_inputs(), _best_of_all),
        Check(FINISHED_CARRIED, beam_inputs(finished=True), _finished_carried),
        matches_reference(beam_search_step, beam_inputs(finished=None, ties=True), rtol=0, atol=0, name=TIES,
                          names=("new_scores", "parents", "tokens")),
    ),
)

EXERCISES = (CROSS_ATTENTION_MASK, TEACHER_FORCING_SHIFT, BEAM_SEARCH_STEP)
