"""Exercises on compression and serving (chapter 9, after decoding): per-channel int8 quantization, int4 packing,
a magnitude-pruning mask, the distillation loss, speculative decoding's acceptance step, one token boundary of a
continuous batcher, and what batching does to throughput and latency.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..kernels.reference.int4_packing import unpack_int4
from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import finite_floats, float_arrays, logits_and_targets, small_shapes

# ---- quantize_per_channel_int8 ---------------------------------------------------------------------------


def quantize_per_channel_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric int8 quantization of a float64 weight matrix w (N, K) with one scale per output channel (row).

    A row's scale is its largest |w| divided by 127, so that weight becomes +-127; q = w / scale rounded to the
    nearest integer, clipped to -127..127 and stored as int8. A row of zeros gets scale 1. Returns
    (q, scales, dequantized): q int8 (N, K), scales float64 (N, 1), dequantized = q * scales float64 (N, K).
    """
    largest = np.abs(w).max(axis=1, keepdims=True)
    scales = np.where(largest > 0, largest / 127, 1.0)
    q = np.clip(np.rint(w / scales), -127, 127).astype(np.int8)
    return q, scales, q * scales


@st.composite
def weight_matrices(draw, zero_rows: bool = False) -> dict:
    """{"w": (N, K)} with sides 1 to 5 and entries rounded to 3 decimals (short to read; no scale near 1e-300).

    With `zero_rows` one row at least is all zeros; without, every row has a non-zero entry.
    """
    w = np.round(draw(float_arrays(st.tuples(st.integers(1, 5), st.integers(1, 5)))), 3)
    if zero_rows:
        w[draw(st.integers(0, len(w) - 1))] = 0.0
    else:
        w[np.abs(w).max(axis=1) == 0, draw(st.integers(0, w.shape[1] - 1))] = draw(st.sampled_from([1.0, -1.0]))
    return {"w": w}


QUANTIZED = ("q", "scales", "dequantized")
HALF_STEP = ("dequantized = q * scales lies within half a step (scale / 2) of every weight: round to the nearest "
             "integer, and take the scale from max|w| so that nothing is clipped")
OWN_SCALE = ("every row has its own scale max|w| / 127, so its largest weight becomes +-127 (per output channel, "
             "from the max: not the mean, not one scale for the whole matrix)")
ZERO_ROW = "a row of zeros gets scale 1 and q = 0 (max|w| / 127 would be 0, and 0 / 0 is nan)"


def _quantized_of(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The learner's (q, scales, dequantized), after checking the shapes and that q is stored as int8."""
    output = call_learner(learner, drawn, name)
    expect_close(name, drawn, quantize_per_channel_int8(**drawn), output, None, None, names=QUANTIZED)
    if np.asarray(output[0]).dtype != np.int8:
        raise PropertyFailed(name, drawn, "q as an int8 array", output[0],
                             "store q with .astype(np.int8): one byte per weight, 4x less than float32, is the point")
    return output


def _within_half_a_step(learner, drawn: dict) -> None:
    q, scales, dequantized = _quantized_of(learner, drawn, HALF_STEP)
    expect_close(HALF_STEP, drawn, {"dequantized": q * scales}, {"dequantized": dequantized}, 1e-12, 0.0)
    error, half_step = np.abs(dequantized - drawn["w"]), np.broadcast_to(scales / 2, drawn["w"].shape)
    if np.any(error > half_step * (1 + 1e-9)):
        raise PropertyFailed(HALF_STEP, drawn, {"|dequantized - w| at most": half_step},
                             {"|dequantized - w|": error},
                             "np.rint rounds to the nearest integer; .astype(int) alone truncates toward zero, an "
                             "error of up to a whole step. A scale below max|w| / 127 pushes the largest weights "
                             "past 127, where clipping cuts them")


def _own_scale_per_row(learner, drawn: dict) -> None:
    _, scales, _ = _quantized_of(learner, drawn, OWN_SCALE)
    expected = quantize_per_channel_int8(**drawn)[1]
    expect_close(OWN_SCALE, drawn, {"scales": expected}, {"scales": scales}, 1e-12, 0.0)


def _zero_row_gets_scale_one(learner, drawn: dict) -> None:
    q, scales, dequantized = _quantized_of(learner, drawn, ZERO_ROW)
    zero = np.abs(drawn["w"]).max(axis=1) == 0
    expected = {"q": np.zeros_like(q[zero]), "scales": np.ones_like(scales[zero]),
                "dequantized": np.zeros_like(dequantized[zero])}
    expect_close(ZERO_ROW, drawn, expected, {"q": q[zero], "scales": scales[zero], "dequantized": dequantized[zero]},
                 0.0, 0.0)


# ---- pack_int4 -------------------------------------------------------------------------------------------


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack signed 4-bit integers two to a byte: values is an int8 array (N, K), K even, every entry in -8..7.

    Byte j of a row holds values[:, 2j] in its LOW 4 bits and values[:, 2j + 1] in its HIGH 4 bits, each in two's
    complement (-1 is 0b1111, -8 is 0b1000). Returns a uint8 array (N, K // 2).
    """
    nibbles = values.astype(np.uint8) & 0x0F  # -1 becomes 255 = 0b1111_1111: keep only its low 4 bits
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


@st.composite
def int4_inputs(draw, low: int = -8) -> dict:
    """{"values": int8 (N, K)} with N 1 to 4, K even from 2 to 6, entries in low..7."""
    shape = (draw(st.integers(1, 4)), 2 * draw(st.integers(1, 3)))
    return {"values": draw(hnp.arrays(np.int8, shape, elements=st.integers(low, 7)))}


LOW_NIBBLE_FIRST = ("byte j holds values[2j] in its low nibble and values[2j + 1] in its high nibble: "
                    "byte = values[2j] + 16 * values[2j + 1] for values 0..7")
ROUND_TRIP = ("negative values round-trip: unpacking the bytes (sign-extending each nibble) gives back the values, "
              "so each value must be cut to its own 4 bits (-1 is 0xF, not 0xFF)")


def _hex(packed: np.ndarray) -> list[list[str]]:
    """Bytes as rows of hex strings, where a nibble is one digit: 0xE3 is high nibble E, low nibble 3."""
    return [[f"0x{int(byte):02X}" for byte in row] for row in packed]


def _packed_of(learner, drawn: dict, name: str) -> np.ndarray:
    """The learner's bytes, after checking the shape and that they are unsigned."""
    packed = call_learner(learner, drawn, name)
    expect_close(name, drawn, pack_int4(**drawn), packed, None, None)
    if packed.dtype != np.uint8:
        raise PropertyFailed(name, drawn, "a uint8 array", packed,
                             "return unsigned bytes (uint8): a nibble pattern such as 0xE3 is the byte 227, which "
                             "int8 would show as -29")
    return packed


def _low_nibble_first(learner, drawn: dict) -> None:
    packed = _packed_of(learner, drawn, LOW_NIBBLE_FIRST)
    expected = pack_int4(**drawn)
    if not np.array_equal(packed, expected):
        raise PropertyFailed(LOW_NIBBLE_FIRST, drawn, _hex(expected), _hex(packed),
                             "in hex each digit is one nibble: the right digit (low) is the even column")


def _round_trip(learner, drawn: dict) -> None:
    unpacked = unpack_int4(_packed_of(learner, drawn, ROUND_TRIP))
    if not np.array_equal(unpacked, drawn["values"]):
        raise PropertyFailed(ROUND_TRIP, drawn, drawn["values"], unpacked,
                             "these are your bytes unpacked; mask each value with & 0x0F before combining: "
                             "a negative int8 cast to uint8 has all four high bits set, and OR-ing them in "
                             "overwrites the other nibble")


# ---- magnitude_prune_mask --------------------------------------------------------------------------------


def magnitude_prune_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """The mask of unstructured magnitude pruning for one weight tensor w (any shape, float64).

    sparsity in [0, 1] is the fraction of weights to remove: keep exactly ceil((1 - sparsity) * w.size) weights,
    those of largest |w| (ties broken any way you like), and prune the rest. Returns a bool array of w's shape,
    True where the weight is kept.
    """
    keep = int(np.ceil((1 - sparsity) * w.size))
    most_important_first = np.argsort(-np.abs(w), axis=None, kind="stable")
    mask = np.zeros(w.size, dtype=bool)
    mask[most_important_first[:keep]] = True
    return mask.reshape(w.shape)


@st.composite
def pruning_inputs(draw) -> dict:
    """A tensor of 1 to 3 dimensions and a sparsity that is a multiple of 1/16, which a float holds exactly."""
    return {"w": draw(float_arrays(small_shapes())), "sparsity": draw(st.integers(0, 16)) / 16}


KEEP_COUNT = ("keeps exactly ceil((1 - sparsity) * w.size) weights: the kept count rounds UP, so sparsity 0 keeps "
              "every weight")
KEEP_LARGEST = ("the kept weights are those of largest magnitude: every kept |w| >= every pruned |w| (|w|, not w: "
                "-5 matters more than 0.1)")


def _mask_of(learner, drawn: dict, name: str) -> np.ndarray:
    mask = call_learner(learner, drawn, name)
    if not (isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == drawn["w"].shape):
        raise PropertyFailed(name, drawn, f"a bool array of w's shape {drawn['w'].shape}", mask,
                             "return the comparison itself (True = kept), not the pruned weights or 0/1 numbers")
    return mask


def _keeps_the_count(learner, drawn: dict) -> None:
    mask = _mask_of(learner, drawn, KEEP_COUNT)
    expected = int(np.ceil((1 - drawn["sparsity"]) * drawn["w"].size))
    if mask.sum() != expected:
        raise PropertyFailed(KEEP_COUNT, drawn, f"{expected} weights kept", f"{mask.sum()} weights kept: {mask}",
                             "floor or int() rounds the kept count down; a threshold test |w| >= t keeps every "
                             "weight tied with the threshold")


def _keeps_the_largest(learner, drawn: dict) -> None:
    mask = _mask_of(learner, drawn, KEEP_LARGEST)
    magnitudes = np.abs(drawn["w"])
    if mask.any() and not mask.all() and magnitudes[mask].min() < magnitudes[~mask].max():
        raise PropertyFailed(KEEP_LARGEST, drawn, magnitude_prune_mask(**drawn), mask,
                             f"you keep a weight of |w| = {magnitudes[mask].min():g} and prune one of |w| = "
                             f"{magnitudes[~mask].max():g}; sort by np.abs(w), largest first")


# ---- distillation_loss -----------------------------------------------------------------------------------


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, computed stably (subtract each row's max before exp)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def distillation_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, targets: np.ndarray,
                      temperature: float, alpha: float) -> float:
    """The knowledge-distillation loss of a student on a batch: float64 logits (N, C) of the student and of the
    teacher, and integer hard labels targets (N,) in [0, C).

    alpha * T**2 * KL(softmax(teacher_logits / T) || softmax(student_logits / T))
      + (1 - alpha) * cross-entropy(student_logits, targets),
    with T = temperature > 0 and 0 <= alpha <= 1; the KL and the cross-entropy (at T = 1) are each averaged over the
    N rows. Returns a float.
    """
    log_p_teacher = log_softmax_rows(teacher_logits / temperature)
    log_p_student = log_softmax_rows(student_logits / temperature)
    kl = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=-1).mean()
    cross_entropy = -log_softmax_rows(student_logits)[np.arange(len(targets)), targets].mean()
    return float(alpha * temperature**2 * kl + (1 - alpha) * cross_entropy)


@st.composite
def distillation_inputs(draw, temperature=finite_floats(0.5, 8.0), alpha=finite_floats(0.0, 1.0)) -> dict:
    batch = draw(logits_and_targets())
    return {"student_logits": batch["logits"], "teacher_logits": draw(float_arrays(batch["logits"].shape)),
            "targets": batch["targets"], "temperature": draw(temperature), "alpha": draw(alpha)}


def _hard_labels_only(student_logits, teacher_logits, targets, temperature, alpha) -> float:
    """alpha = 0: the student's mean cross-entropy on the hard labels; the teacher plays no part."""
    return float(-log_softmax_rows(student_logits)[np.arange(len(targets)), targets].mean())


KD_HARD = "alpha = 0 is the student's mean cross-entropy on the hard labels (the teacher plays no part)"
KD_DIRECTION = ("alpha = 1, T = 1 is the mean over rows of KL(teacher || student) = sum p_teacher * log(p_teacher / "
                "p_student): the teacher's distribution comes first")
KD_SOFTENING = ("softening: with both logits multiplied by T and temperature T, the alpha = 1 loss is T**2 times the "
                "loss at T = 1 (divide the logits by T in the softmax, multiply the KL by T**2)")


def _softening_scales_by_t_squared(learner, drawn: dict) -> None:
    at_one = {**drawn, "temperature": 1.0}
    scaled = {**drawn, "student_logits": drawn["student_logits"] * drawn["temperature"],
              "teacher_logits": drawn["teacher_logits"] * drawn["temperature"]}
    loss_at_one = call_learner(learner, at_one, KD_SOFTENING)
    expect_close(KD_SOFTENING, at_one, distillation_loss(**at_one), loss_at_one, 1e-9, 1e-12)
    expect_close(KD_SOFTENING, scaled, drawn["temperature"] ** 2 * loss_at_one,
                 call_learner(learner, scaled, KD_SOFTENING), 1e-7, 1e-10)


# ---- speculative_accept ----------------------------------------------------------------------------------


def inverse_cdf_sample(weights: np.ndarray, u: float) -> int:
    """The token j where the running sum of the non-negative weights first exceeds u times their total."""
    cumulative = np.cumsum(weights)
    return int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))


def speculative_accept(target_probs: np.ndarray, draft_probs: np.ndarray, draft_tokens: np.ndarray,
                       u: np.ndarray) -> tuple[int, int]:
    """The verification step of speculative decoding, with the randomness passed in as uniforms u.

    A draft model proposed k tokens draft_tokens (k,), drawing token i from draft_probs[i] (k, V). The target
    model scored the same positions: target_probs (k + 1, V), its row k being the distribution after all k drafts.
    u (k + 1,) holds uniforms in [0, 1). Draft token i is accepted iff u[i] < target_probs[i, t] / draft_probs[i, t]
    (t = draft_tokens[i]); the first rejection stops. After a rejection at i the next token is drawn from the
    residual max(0, target_probs[i] - draft_probs[i]), normalised; if all k were accepted it is drawn from
    target_probs[k]. Either draw uses u[k]: the first token whose cumulative probability exceeds u[k].
    Returns (num_accepted, next_token) as ints.
    """
    k = len(draft_tokens)
    for i, token in enumerate(draft_tokens):
        if u[i] < target_probs[i, token] / draft_probs[i, token]:
            continue  # accepted with probability min(1, p / q)
        residual = np.maximum(target_probs[i] - draft_probs[i], 0.0)  # the mass the draft under-proposed
        return i, inverse_cdf_sample(residual, u[k])
    return k, inverse_cdf_sample(target_probs[k], u[k])


UNIFORM_DENOMINATOR = 1009  # a prime above every denominator a drawn probability, ratio or cumulative sum has


def _normalised(weights: np.ndarray) -> np.ndarray:
    """Rows of integer weights as probabilities; a row of zero weights becomes one-hot at token 0."""
    weights = weights.astype(np.float64)
    weights[weights.sum(axis=1) == 0, 0] = 1.0
    return weights / weights.sum(axis=1, keepdims=True)


@st.composite
def speculative_inputs(draw, draft_matches_target: bool = False, rejection: bool = False) -> dict:
    """k = 1 to 4 drafts over V = 2 to 4 tokens, with probabilities weight / row total for weights 0 to 4.

    Each draft token has weight >= 1 in its draft row: the draft model could have proposed it. With `rejection` the
    target gives one draft token probability 0, so some draft is rejected. Uniforms are j / 1009: no ratio or
    cumulative sum of these probabilities equals one, so how a solution breaks exact ties (< or <=, normalised or
    not) never decides its grade.
    """
    drafts, vocabulary = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    weights = draw(hnp.arrays(np.int64, (2 * drafts + 1, vocabulary), elements=st.integers(0, 4)))
    tokens = draw(hnp.arrays(np.int64, drafts, elements=st.integers(0, vocabulary - 1)))
    draft_weights = weights[:drafts] if draft_matches_target else weights[drafts + 1:]
    draft_weights[np.arange(drafts), tokens] = np.maximum(draft_weights[np.arange(drafts), tokens], 1)
    if rejection:
        position = draw(st.integers(0, drafts - 1))
        weights[position, tokens[position]] = 0
        weights[position, (tokens[position] + 1) % vocabulary] += 1  # the target still likes some token
    target = _normalised(weights[:drafts + 1])
    u = draw(hnp.arrays(np.int64, drafts + 1, elements=st.integers(1, UNIFORM_DENOMINATOR - 1)))
    return {"target_probs": target, "draft_probs": target[:drafts] if draft_matches_target else
            _normalised(draft_weights), "draft_tokens": tokens, "u": u / UNIFORM_DENOMINATOR}


@st.composite
def one_draft_models(draw) -> dict:
    """A target (2, V) and a draft model (1, V) over V = 2 or 3 tokens, for the first-token distribution check."""
    weights = _normalised(draw(hnp.arrays(np.int64, (3, draw(st.integers(2, 3))), elements=st.integers(0, 4))))
    return {"target_probs": weights[:2], "draft_probs": weights[2:]}


GRID_SIZE = 16  # uniforms per axis in the first-token check; a correct rule's estimate is off by at most 1.5 / 16
GRID = np.rint((np.arange(GRID_SIZE) + 0.5) / GRID_SIZE * UNIFORM_DENOMINATOR) / UNIFORM_DENOMINATOR
SPEC_TYPES = "returns (num_accepted, next_token): two ints, 0 <= num_accepted <= k and 0 <= next_token < V"
SPEC_DISTRIBUTION = ("the first token it emits follows the target's distribution target_probs[0] whatever the draft "
                     f"proposes (estimated over a {GRID_SIZE} x {GRID_SIZE} grid of (u[0], u[1]) and the draft's "
                     f"tokens, within 2 / {GRID_SIZE})")
SPEC_ACCEPT = ("draft token i is accepted iff u[i] < target_probs[i, t] / draft_probs[i, t], and the first rejection "
               "stops: num_accepted is the number accepted before it")
SPEC_BONUS = ("when the draft model equals the target every draft is accepted, and the bonus token is the inverse-CDF "
              "draw from target_probs[k] with u[k]")
SPEC_RESIDUAL = ("after a rejection at i the next token is the inverse-CDF draw with u[k] from the residual "
                 "max(0, target_probs[i] - draft_probs[i]), normalised")


def _decision_of(learner, arguments: dict, name: str) -> tuple[int, int]:
    """The learner's (num_accepted, next_token), after checking they are two ints in range."""
    received = call_learner(learner, arguments, name)
    drafts, vocabulary = arguments["draft_probs"].shape
    if not (isinstance(received, (tuple, list)) and len(received) == 2
            and all(isinstance(item, (int, np.integer)) and not isinstance(item, bool) for item in received)
            and 0 <= received[0] <= drafts and 0 <= received[1] < vocabulary):
        raise PropertyFailed(SPEC_TYPES, arguments, speculative_accept(**arguments), received,
                             "return a tuple of two ints in range. A rejection happens only where the draft "
                             "over-proposed (p < q), so the residual then has mass on some other token")
    return int(received[0]), int(received[1])


def _first_token_follows_the_target(learner, drawn: dict) -> None:
    """Add up, over the draft's tokens and the grid of uniforms, how often each token comes out first."""
    draft = drawn["draft_probs"][0]
    emitted = np.zeros_like(draft)
    for token in np.flatnonzero(draft > 0):
        for u_accept in GRID:
            for u_draw in GRID:
                arguments = {**drawn, "draft_tokens": np.array([token]), "u": np.array([u_accept, u_draw])}
                num_accepted, next_token = _decision_of(learner, arguments, SPEC_DISTRIBUTION)
                emitted[token if num_accepted else next_token] += draft[token] / GRID_SIZE**2
    if np.abs(emitted - drawn["target_probs"][0]).max() > 2 / GRID_SIZE:
        raise PropertyFailed(SPEC_DISTRIBUTION, drawn, {"P(first token)": drawn["target_probs"][0]},
                             {"P(first token)": emitted},
                             "accept with probability min(1, p / q), where p and q are the target's and the draft's "
                             "probabilities of the drafted token; after a rejection draw from max(0, p - q) "
                             "normalised, the mass the draft proposed too rarely, not from p")


def _decision_matches(name: str, part: slice):
    """A verify function: the learner's decision equals the reference's, in the part (num_accepted, next_token)
    named by `part`."""
    def verify(learner, drawn: dict) -> None:
        expected, received = speculative_accept(**drawn), _decision_of(learner, drawn, name)
        if received[part] != expected[part]:
            raise PropertyFailed(name, drawn, dict(zip(("num_accepted", "next_token"), expected)),
                                 dict(zip(("num_accepted", "next_token"), received)))

    return verify


# ---- continuous_batching_step ----------------------------------------------------------------------------


def continuous_batching_step(running: list[tuple[int, int]], waiting: list[tuple[int, int]],
                             max_batch: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """What a continuous batcher does at a token boundary, between two decoding steps.

    running: the requests in the batch (at most max_batch), each (request_id, tokens_left), in batch order;
    tokens_left == 0 means the request has just produced its last token. waiting: the queue, each
    (request_id, max_tokens), oldest first. Finished requests leave, the others keep their order, then the oldest
    waiting requests join at the end while fewer than max_batch are running. Returns the new (running, waiting).
    """
    still_running = [request for request in running if request[1] > 0]
    free_slots = max_batch - len(still_running)
    return still_running + waiting[:free_slots], waiting[free_slots:]


@st.composite
def batcher_inputs(draw) -> dict:
    """max_batch 1 to 4, a batch of at most max_batch requests (some finished) and 0 to 5 waiting; distinct ids."""
    max_batch = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(0, 99), unique=True, max_size=max_batch + 5))
    batch_size = draw(st.integers(0, min(max_batch, len(ids))))
    return {"running": [(request, draw(st.integers(0, 3))) for request in ids[:batch_size]],
            "waiting": [(request, draw(st.integers(1, 5))) for request in ids[batch_size:]], "max_batch": max_batch}


BATCH_ONCE = ("every request is kept exactly once: each unfinished running request and each waiting request is in "
              "exactly one of the two lists, a finished one in neither")
BATCH_CAPACITY = "at most max_batch requests run after the boundary"
BATCH_NO_IDLE = ("no slot stays idle while a request waits: after the boundary the batch is full or the queue is "
                 "empty (continuous batching does not wait for the whole batch to finish)")
BATCH_FIFO = ("the oldest waiting requests join, at the end of the batch; the running ones and the rest of the "
              "queue keep their order (FIFO)")


def _batch_of(learner, drawn: dict, name: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The learner's (running, waiting) as lists of (id, tokens) tuples of ints, after checking their form."""
    received = call_learner(learner, drawn, name)
    try:
        running, waiting = received
        return [(int(r), int(t)) for r, t in running], [(int(r), int(t)) for r, t in waiting]
    except (TypeError, ValueError):
        raise PropertyFailed(name, drawn, continuous_batching_step(**drawn), received,
                             "return a tuple (running, waiting) of two lists of (request_id, tokens) pairs") from None


def _every_request_once(learner, drawn: dict) -> None:
    running, waiting = _batch_of(learner, drawn, BATCH_ONCE)
    expected = sorted([request for request in drawn["running"] if request[1] > 0] + drawn["waiting"])
    if sorted(running + waiting) != expected:
        raise PropertyFailed(BATCH_ONCE, drawn, {"running + waiting, sorted": expected},
                             {"running + waiting, sorted": sorted(running + waiting)},
                             "a request that leaves the queue must join the batch (not vanish, not stay in both); "
                             "only a request with 0 tokens left may leave")


def _within_capacity(learner, drawn: dict) -> None:
    running, _ = _batch_of(learner, drawn, BATCH_CAPACITY)
    if len(running) > drawn["max_batch"]:
        raise PropertyFailed(BATCH_CAPACITY, drawn, f"at most {drawn['max_batch']} running", {"running": running},
                             "admit only as many as there are free slots: max_batch minus the unfinished ones")


def _no_idle_slot(learner, drawn: dict) -> None:
    running, waiting = _batch_of(learner, drawn, BATCH_NO_IDLE)
    if waiting and len(running) < drawn["max_batch"]:
        raise PropertyFailed(BATCH_NO_IDLE, drawn, continuous_batching_step(**drawn), (running, waiting),
                             "a slot freed by a finished request is filled at once, while the others keep "
                             "decoding")


def _first_in_first_out(learner, drawn: dict) -> None:
    expected, received = continuous_batching_step(**drawn), _batch_of(learner, drawn, BATCH_FIFO)
    if received != tuple(expected):
        raise PropertyFailed(BATCH_FIFO, drawn, {"running": expected[0], "waiting": expected[1]},
                             {"running": received[0], "waiting": received[1]},
                             "waiting[0] arrived first: admit from the front of the queue")


# ---- batching_throughput_and_latency ---------------------------------------------------------------------


def batching_throughput_and_latency(batch_sizes: np.ndarray, step_fixed: float, step_per_request: float,
                                    arrival_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Capacity and mean latency of a server that answers requests in batches of b, for each b in batch_sizes
    (an int64 array).

    A batch of b requests takes t(b) = step_fixed + step_per_request * b seconds: the fixed part (reading every
    weight once) is shared by the batch. Requests arrive evenly spaced, arrival_rate per second, and the server
    starts a batch when its b-th request has arrived; it is never behind. Returns (capacity, mean_latency), float64
    arrays of batch_sizes' shape: the requests per second it can answer, and the mean time in seconds from a
    request's arrival to its answer.
    """
    step_time = step_fixed + step_per_request * batch_sizes
    wait_for_the_batch = (batch_sizes - 1) / (2 * arrival_rate)  # the first waits for b - 1 arrivals, the last for 0
    return batch_sizes / step_time, wait_for_the_batch + step_time


@st.composite
def batching_inputs(draw, batch_sizes=None) -> dict:
    """A fixed cost of 1 to 100 ms, 0.1 to 10 ms per request, and an arrival rate the server keeps up with even
    unbatched (below 1 / t(1))."""
    step_fixed, step_per_request = draw(finite_floats(1e-3, 0.1)), draw(finite_floats(1e-4, 1e-2))
    sizes = hnp.arrays(np.int64, st.integers(1, 5), elements=st.integers(1, 64)) if batch_sizes is None else batch_sizes
    return {"batch_sizes": draw(sizes), "step_fixed": step_fixed, "step_per_request": step_per_request,
            "arrival_rate": draw(finite_floats(0.05, 0.95)) / (step_fixed + step_per_request)}


def _unbatched(batch_sizes, step_fixed, step_per_request, arrival_rate) -> tuple[np.ndarray, np.ndarray]:
    step_time = np.full(batch_sizes.shape, step_fixed + step_per_request)
    return 1 / step_time, step_time


LATENCY_FIELDS = ("capacity", "mean_latency")
UNBATCHED = "b = 1 is no batching: capacity 1 / t(1) requests per second and latency t(1), with no wait"
CAPACITY = ("capacity b / t(b) rises with b toward 1 / step_per_request: a batch answers b requests in one step "
            "whose fixed cost they share")
LATENCY = ("mean latency is the wait for the batch to fill, (b - 1) / (2 * arrival_rate), plus the whole step t(b): "
           "batching makes no request faster (M41)")


def _batching_part_matches(name: str, index: int):
    """A verify function: output `index` of the learner's (capacity, mean_latency) equals the reference's."""
    def verify(learner, drawn: dict) -> None:
        received = call_learner(learner, drawn, name)
        expected = batching_throughput_and_latency(**drawn)
        expect_close(name, drawn, expected, received, None, None, names=LATENCY_FIELDS)
        expect_close(name, drawn, {LATENCY_FIELDS[index]: expected[index]}, {LATENCY_FIELDS[index]: received[index]},
                     1e-12, 0.0)

    return verify


# ---- the exercises ---------------------------------------------------------------------------------------

QUANTIZE_PER_CHANNEL_INT8 = Exercise(
    name="quantize_per_channel_int8",
    title="Per-channel symmetric int8 quantization of a weight matrix, and back (Q20)",
    statement=(
        "Post-training quantization stores a Linear layer's weight W (N output channels, K inputs) as int8 codes q\n"
        "and a float scale per output channel (row), and computes with q * scale. Symmetric int8 uses -127..127, so 0\n"
        "stays exact. For each row: scale = max|w| / 127 (a row of zeros gets scale 1), q = w / scale rounded to the\n"
        "nearest integer and clipped to -127..127, stored as int8. Return (q, scales, dequantized) with scales of\n"
        "shape (N, 1) and dequantized = q * scales. Every dequantized weight is then within scale / 2 of the\n"
        "original. Quantization keeps the number of parameters; each one just takes 1 byte instead of 4 (M35)."
    ),
    reference=quantize_per_channel_int8,
    hints=(
        "Work row by row with keepdims=True so the (N, 1) scales broadcast against the (N, K) weights. The largest "
        "|w| of a row must land exactly on 127: anything smaller would be clipped, anything larger wastes codes.",
        "Use np.rint (round to nearest), not .astype(np.int8) on w / scale alone, which truncates toward zero. A "
        "zero row would divide 0 by 0: np.where(largest > 0, largest / 127, 1.0) avoids it.",
        "Per row: the scale is the largest |w| over 127, or 1 for an all-zero row. The codes are w over the scale, "
        "rounded with np.rint, clipped to [-127, 127] and cast to int8. The dequantized weights are codes times "
        "scales.",
    ),
    checks=(
        Check(HALF_STEP, weight_matrices(), _within_half_a_step),
        Check(OWN_SCALE, weight_matrices(), _own_scale_per_row),
        Check(ZERO_ROW, weight_matrices(zero_rows=True), _zero_row_gets_scale_one),
    ),
)

PACK_INT4 = Exercise(
    name="pack_int4",
    title="Pack two signed 4-bit weights into one byte (Q20)",
    statement=(
        "int4 weights take half a byte each, so two share a byte. Given an int8 array values (N, K) with K even and\n"
        "every entry in -8..7, return a uint8 array (N, K // 2) whose byte j holds values[:, 2j] in its low 4 bits\n"
        "and values[:, 2j + 1] in its high 4 bits, each as a 4-bit two's complement number (-1 is 0b1111, -8 is\n"
        "0b1000). Example: [[3, -2, 7, -8]] packs to [[0xE3, 0x87]]. The grader unpacks your bytes with the\n"
        "library's unpack_int4, which sign-extends each nibble (a nibble of 8 or more stands for nibble - 16)."
    ),
    reference=pack_int4,
    hints=(
        "Cast to uint8 first: a negative int8 becomes its two's complement byte (-2 is 0b1111_1110 = 254). Its low "
        "4 bits are the 4-bit two's complement you want.",
        "Keep only the low 4 bits of every value (& 0x0F) before combining, or the four high bits of a negative "
        "value overwrite its neighbour. Then byte = even column | (odd column << 4).",
        "Cast to uint8 and keep the low four bits of every value with a bitwise and. Each output byte is the even "
        "column OR the odd column shifted left by 4.",
    ),
    checks=(
        Check(LOW_NIBBLE_FIRST, int4_inputs(low=0), _low_nibble_first),
        Check(ROUND_TRIP, int4_inputs(), _round_trip),
    ),
)

MAGNITUDE_PRUNE_MASK = Exercise(
    name="magnitude_prune_mask",
    title="The mask of magnitude pruning at a given sparsity (Q20, M35, M45)",
    statement=(
        "Unstructured magnitude pruning sets the weights of smallest |w| to zero and keeps the others. Given a\n"
        "float64 weight tensor w (any shape) and a sparsity in [0, 1], the fraction of weights to remove, return a\n"
        "bool mask of w's shape, True where a weight is kept. It keeps exactly ceil((1 - sparsity) * w.size)\n"
        "weights, those of largest |w|; ties may be broken any way. The grader uses sparsities that are multiples of\n"
        "1/16, which floats hold exactly. The zeros stay in a dense matrix, so a dense matmul is no faster (M35)."
    ),
    reference=magnitude_prune_mask,
    hints=(
        "Importance is magnitude: a weight of -5 matters more than one of 0.1. Rank all entries of the tensor "
        "together (one mask for the whole tensor), not row by row.",
        "Round the kept count UP with ceil, so sparsity 0 keeps everything. A threshold (|w| >= the k-th largest) "
        "keeps too many when weights tie; take exactly k positions from an argsort instead.",
        "keep = ceil((1 - sparsity) * w.size). A stable argsort of -|w| over the flattened tensor (axis=None) ranks "
        "the entries; set the first `keep` of them True in a flat False mask, then reshape it to w's shape.",
    ),
    checks=(
        Check(KEEP_COUNT, pruning_inputs(), _keeps_the_count),
        Check(KEEP_LARGEST, pruning_inputs(), _keeps_the_largest),
    ),
)

DISTILLATION_LOSS = Exercise(
    name="distillation_loss",
    title="The knowledge-distillation loss with a temperature (Q28)",
    statement=(
        "Distillation trains a small student on a teacher's soft predictions as well as on the hard labels:\n"
        "  loss = alpha * T**2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, targets)\n"
        "for student logits z_s and teacher logits z_t (float64, (N, C)), targets (N,), temperature T > 0 and\n"
        "0 <= alpha <= 1. The KL (teacher's distribution first) and the cross-entropy (at T = 1) are each averaged\n"
        "over the N rows. A higher T flattens both distributions so that the teacher's small probabilities carry\n"
        "signal; the T**2 keeps the soft term's gradients the same size as T changes. Return a float. Must stay\n"
        "finite for logits of +-10 divided by T down to 0.5. Tolerance: rtol=1e-9."
    ),
    reference=distillation_loss,
    helpers=(log_softmax_rows,),
    hints=(
        "Work in log space: log_softmax(x) = x - max - log(sum(exp(x - max))). KL(p || q) = sum p * (log p - log q), "
        "with p the teacher's softened distribution and q the student's.",
        "Divide the logits by T inside both softmaxes, but compute the cross-entropy on the raw student logits. "
        "Average each term over the rows, then weight: alpha * T**2 * KL + (1 - alpha) * CE.",
        "KL per row: the sum over classes of the teacher's softened probabilities times (teacher minus student "
        "log-probabilities), both at logits / T; average it over rows. CE: minus the mean over rows of the raw "
        "student's log-softmax at the target column. Weight and add them, as a float.",
    ),
    checks=(
        has_reference_shapes(distillation_loss, distillation_inputs(), "returns one float"),
        matches_reference(_hard_labels_only, distillation_inputs(alpha=st.just(0.0)), rtol=1e-9, atol=1e-12,
                          name=KD_HARD),
        matches_reference(distillation_loss, distillation_inputs(temperature=st.just(1.0), alpha=st.just(1.0)),
                          rtol=1e-9, atol=1e-12, name=KD_DIRECTION),
        Check(KD_SOFTENING, distillation_inputs(temperature=finite_floats(1.5, 8.0), alpha=st.just(1.0)),
              _softening_scales_by_t_squared),
        matches_reference(distillation_loss, distillation_inputs(), rtol=1e-9, atol=1e-12,
                          name="matches the reference for every T and alpha: alpha * T**2 * KL + (1 - alpha) * CE"),
    ),
)

SPECULATIVE_ACCEPT = Exercise(
    name="speculative_accept",
    title="Speculative decoding: keep the draft's tokens or resample, without changing the target's distribution (Q20)",
    statement=(
        "A small draft model proposes k tokens; the target model scores all k positions in one forward pass and\n"
        "keeps a prefix of them. Draft token t at position i is accepted with probability min(1, p / q), where\n"
        "p = target_probs[i, t] and q = draft_probs[i, t]; the first rejection stops, and the next token is then\n"
        "drawn from the residual max(0, target_probs[i] - draft_probs[i]), normalised. If all k are accepted, a bonus\n"
        "token is drawn from target_probs[k]. The tokens that come out then follow the target model exactly.\n"
        "The randomness comes in as uniforms u (k + 1,) in [0, 1) so that grading is repeatable: accept token i\n"
        "iff u[i] < p / q, and make the one extra draw with u[k] by inverse CDF (the first token whose cumulative\n"
        "probability exceeds u[k]). Return (num_accepted, next_token) as two ints."
    ),
    reference=speculative_accept,
    helpers=(inverse_cdf_sample,),
    hints=(
        "Walk the drafts in order and stop at the first rejection. A token the target likes at least as much as the "
        "draft (p >= q) is always accepted; one the draft over-proposes is kept only with probability p / q.",
        "The residual max(0, p - q) is the probability the target wants that the draft did not already deliver "
        "through accepted tokens: resampling from the target's own p would count that mass twice. The inverse CDF: "
        "np.searchsorted(np.cumsum(w), u * w.sum(), side='right').",
        "Accept draft i while u[i] is below its token's target probability over its draft probability. At the first "
        "rejection, return i with a draw (using u[k]) from the residual of row i, max(0, p - q); if every draft is "
        "accepted, return k with a draw from the target's row k.",
    ),
    checks=(
        Check(SPEC_DISTRIBUTION, one_draft_models(), _first_token_follows_the_target, max_examples=15),
        Check(SPEC_ACCEPT, speculative_inputs(), _decision_matches(SPEC_ACCEPT, slice(0, 1))),
        Check(SPEC_BONUS, speculative_inputs(draft_matches_target=True), _decision_matches(SPEC_BONUS, slice(0, 2))),
        Check(SPEC_RESIDUAL, speculative_inputs(rejection=True), _decision_matches(SPEC_RESIDUAL, slice(0, 2))),
    ),
)

CONTINUOUS_BATCHING_STEP = Exercise(
    name="continuous_batching_step",
    title="Continuous batching: who decodes after this token (Q22)",
    statement=(
        "A server decodes a batch of up to max_batch requests one token at a time. Between two steps, finished\n"
        "requests leave and waiting ones take their slots, so a long request never holds up a short one. running\n"
        "lists the batch as (request_id, tokens_left) pairs, where 0 tokens left means the request has just\n"
        "produced its last token; waiting lists the queue as (request_id, max_tokens) pairs, oldest first. Return\n"
        "(running, waiting) after the boundary: the unfinished requests in their order, then the oldest waiting\n"
        "requests while fewer than max_batch run; the rest of the queue in its order. Use new lists."
    ),
    reference=continuous_batching_step,
    hints=(
        "Two moves: drop every request with 0 tokens left, then fill the free slots from the FRONT of the queue. "
        "Every request must end up in exactly one place.",
        "free = max_batch - (number still running); the first `free` waiting requests join (slicing past the end "
        "of a list is fine) and the rest stay queued, in their order.",
        "Keep the running requests that still have tokens left, in their order; the free slots are max_batch minus "
        "how many remain. The new batch appends that many requests from the front of the queue; the new queue is the "
        "rest of it.",
    ),
    checks=(
        Check(BATCH_ONCE, batcher_inputs(), _every_request_once),
        Check(BATCH_CAPACITY, batcher_inputs(), _within_capacity),
        Check(BATCH_NO_IDLE, batcher_inputs(), _no_idle_slot),
        Check(BATCH_FIFO, batcher_inputs(), _first_in_first_out),
    ),
)

BATCHING_THROUGHPUT_AND_LATENCY = Exercise(
    name="batching_throughput_and_latency",
    title="Batching raises throughput, not the speed of one request (Q22, M41)",
    statement=(
        "Decoding one step reads every weight once, whatever the batch, so a batch of b requests takes\n"
        "t(b) = step_fixed + step_per_request * b seconds. A server that waits for b requests, then answers them in\n"
        "one step, can answer b / t(b) requests per second (its capacity). Requests arrive evenly spaced,\n"
        "arrival_rate per second, slowly enough that the server never falls behind; a request waits for the rest of\n"
        "its batch to arrive, then for the step. For each b in batch_sizes (int64) return (capacity, mean_latency)\n"
        "as float64 arrays of batch_sizes' shape, the latency in seconds averaged over the b requests of a batch.\n"
        "Tolerance: rtol=1e-12."
    ),
    reference=batching_throughput_and_latency,
    hints=(
        "Capacity: b requests every t(b) seconds. Latency: a request's answer comes at the END of its batch's step, "
        "however many requests share that step.",
        "In a batch the i-th arrival (i = 0..b-1) waits (b - 1 - i) / arrival_rate for the last one; the mean wait "
        "is (b - 1) / (2 * arrival_rate). Dividing t(b) by b is the time per request of the server, not what any "
        "request waits.",
        "The step time is step_fixed plus step_per_request times the batch size. Throughput is batch size over step "
        "time; latency is the mean wait for the batch to fill, (b - 1) / (2 * arrival_rate), plus one step time.",
    ),
    checks=(
        has_reference_shapes(batching_throughput_and_latency, batching_inputs(),
                             "returns (capacity, mean_latency), float64 arrays of batch_sizes' shape",
                             names=LATENCY_FIELDS),
        matches_reference(_unbatched, batching_inputs(hnp.arrays(np.int64, st.integers(1, 3), elements=st.just(1))),
                          rtol=1e-12, atol=0.0, names=LATENCY_FIELDS, name=UNBATCHED),
        Check(CAPACITY, batching_inputs(), _batching_part_matches(CAPACITY, 0)),
        Check(LATENCY, batching_inputs(), _batching_part_matches(LATENCY, 1)),
    ),
)

EXERCISES = (QUANTIZE_PER_CHANNEL_INT8, PACK_INT4, MAGNITUDE_PRUNE_MASK, DISTILLATION_LOSS, SPECULATIVE_ACCEPT,
             CONTINUOUS_BATCHING_STEP, BATCHING_THROUGHPUT_AND_LATENCY)
