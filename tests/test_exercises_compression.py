"""The chapter 9 compression and serving exercises (int8 quantization, int4 packing, a pruning mask, the distillation
loss, speculative acceptance, continuous batching, batching's latency): the references agree with independent
computations (the library's int4 packing, PyTorch's losses where installed, a Monte Carlo run, a simulated server),
other correct styles pass, and classic wrong answers are rejected by the property that names their bug. The wrong
answers are real functions, named after the bug (spot-the-bug material).
"""

import math
from collections import deque

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.compression import log_softmax_rows
from tinygrad_llm.kernels.reference.int4_packing import pack_int4 as library_pack_int4, unpack_int4

pytestmark = [pytest.mark.compression, pytest.mark.exercises]

COMPRESSION_EXERCISES = ["quantize_per_channel_int8", "pack_int4", "magnitude_prune_mask", "distillation_loss",
                         "speculative_accept", "continuous_batching_step", "batching_throughput_and_latency"]

# ---- quantize_per_channel_int8 ---------------------------------------------------------------------------


def _quantize(w, scales, round_to_integer=np.rint):
    q = np.clip(round_to_integer(w / scales), -127, 127).astype(np.int8)
    return q, scales, q * scales


def _guarded(largest):
    return np.where(largest > 0, largest / 127, 1.0)


def quantize_scale_from_the_mean(w):
    return _quantize(w, _guarded(np.abs(w).mean(axis=1, keepdims=True)))


def quantize_by_truncation(w):
    return _quantize(w, _guarded(np.abs(w).max(axis=1, keepdims=True)), round_to_integer=np.trunc)


def quantize_one_scale_for_the_tensor(w):
    return _quantize(w, np.full((len(w), 1), _guarded(np.abs(w).max())))


def quantize_zero_row_divides_by_zero(w):
    return _quantize(w, np.abs(w).max(axis=1, keepdims=True) / 127)


# ---- pack_int4 -------------------------------------------------------------------------------------------

def pack_int4_nibbles_swapped(values):
    nibbles = values.astype(np.uint8) & 0x0F
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]


def pack_int4_without_masking(values):
    as_bytes = values.astype(np.uint8)
    return as_bytes[:, 0::2] | (as_bytes[:, 1::2] << 4)


def pack_int4_into_int8(values):
    return (values[:, 0::2] & 0x0F) | (values[:, 1::2] << 4)


# ---- magnitude_prune_mask --------------------------------------------------------------------------------

def _mask_of_first(order, keep, shape):
    mask = np.zeros(math.prod(shape), dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(shape)


def prune_the_largest(w, sparsity):
    return _mask_of_first(np.argsort(np.abs(w), axis=None), math.ceil((1 - sparsity) * w.size), w.shape)


def prune_keep_count_rounded_down(w, sparsity):
    return _mask_of_first(np.argsort(-np.abs(w), axis=None), math.floor((1 - sparsity) * w.size), w.shape)


def prune_by_signed_value(w, sparsity):
    return _mask_of_first(np.argsort(-w, axis=None), math.ceil((1 - sparsity) * w.size), w.shape)


def prune_by_threshold_keeps_ties(w, sparsity):
    keep = math.ceil((1 - sparsity) * w.size)
    if keep == 0:
        return np.zeros(w.shape, dtype=bool)
    return np.abs(w) >= np.sort(np.abs(w), axis=None)[-keep]


# ---- distillation_loss -----------------------------------------------------------------------------------

def _kd(student_logits, teacher_logits, targets, temperature, alpha, *, factor=None, student_first=False,
        soften=True):
    divisor = temperature if soften else 1.0
    log_p_teacher = log_softmax_rows(teacher_logits / divisor)
    log_p_student = log_softmax_rows(student_logits / divisor)
    if student_first:
        log_p_teacher, log_p_student = log_p_student, log_p_teacher
    kl = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=-1).mean()
    cross_entropy = -log_softmax_rows(student_logits)[np.arange(len(targets)), targets].mean()
    return float(alpha * (temperature**2 if factor is None else factor) * kl + (1 - alpha) * cross_entropy)


def kd_without_t_squared(student_logits, teacher_logits, targets, temperature, alpha):
    return _kd(student_logits, teacher_logits, targets, temperature, alpha, factor=1.0)


def kd_kl_student_first(student_logits, teacher_logits, targets, temperature, alpha):
    return _kd(student_logits, teacher_logits, targets, temperature, alpha, student_first=True)


def kd_softmax_without_temperature(student_logits, teacher_logits, targets, temperature, alpha):
    return _kd(student_logits, teacher_logits, targets, temperature, alpha, soften=False)


# ---- speculative_accept ----------------------------------------------------------------------------------

def _speculate(target_probs, draft_probs, draft_tokens, u, *, accept, resample_from):
    sample = ex.get_exercise("speculative_accept").helpers[0]
    k = len(draft_tokens)
    for i, token in enumerate(draft_tokens):
        if not accept(u[i], target_probs[i, token], draft_probs[i, token]):
            return i, sample(resample_from(target_probs[i], draft_probs[i]), u[k])
    return k, sample(target_probs[k], u[k])


def _ratio_test(u, p, q):
    return u < p / q


def _residual(p, q):
    return np.maximum(p - q, 0.0)


def speculative_accepts_when_target_likes_it_more(target_probs, draft_probs, draft_tokens, u):
    return _speculate(target_probs, draft_probs, draft_tokens, u, accept=lambda u, p, q: p >= q,
                      resample_from=_residual)


def speculative_resamples_from_the_target(target_probs, draft_probs, draft_tokens, u):
    return _speculate(target_probs, draft_probs, draft_tokens, u, accept=_ratio_test, resample_from=lambda p, q: p)


def speculative_bonus_from_the_last_draft_row(target_probs, draft_probs, draft_tokens, u):
    num_accepted, next_token = ex.get_exercise("speculative_accept").reference(target_probs, draft_probs, draft_tokens,
                                                                               u)
    if num_accepted == len(draft_tokens):
        return num_accepted, ex.get_exercise("speculative_accept").helpers[0](target_probs[-2], u[-1])
    return num_accepted, next_token


def speculative_redraws_with_the_rejecting_uniform(target_probs, draft_probs, draft_tokens, u):
    """Right distribution, wrong contract: u[i], which was >= p / q, is stretched back to [0, 1) and reused."""
    sample = ex.get_exercise("speculative_accept").helpers[0]
    for i, token in enumerate(draft_tokens):
        ratio = target_probs[i, token] / draft_probs[i, token]
        if u[i] >= ratio:
            return i, sample(np.maximum(target_probs[i] - draft_probs[i], 0.0), (u[i] - ratio) / (1 - ratio))
    return len(draft_tokens), sample(target_probs[-1], u[-1])


# ---- continuous_batching_step ----------------------------------------------------------------------------

def _unfinished(running):
    return [request for request in running if request[1] > 0]


def batcher_drops_who_does_not_fit(running, waiting, max_batch):
    still_running = _unfinished(running)
    return still_running + waiting[:max_batch - len(still_running)], []


def batcher_duplicates_the_admitted(running, waiting, max_batch):
    still_running = _unfinished(running)
    return still_running + waiting[:max_batch - len(still_running)], waiting


def batcher_keeps_finished_requests(running, waiting, max_batch):
    free_slots = max_batch - len(running)
    return running + waiting[:free_slots], waiting[free_slots:]


def batcher_admits_everyone(running, waiting, max_batch):
    return _unfinished(running) + waiting, []


def batcher_waits_for_the_whole_batch(running, waiting, max_batch):
    still_running = _unfinished(running)
    if still_running:
        return still_running, waiting
    return waiting[:max_batch], waiting[max_batch:]


def batcher_admits_newest_first(running, waiting, max_batch):
    still_running = _unfinished(running)
    free_slots = max_batch - len(still_running)
    admitted = waiting[::-1][:free_slots]
    return still_running + admitted, waiting[:len(waiting) - len(admitted)]


# ---- batching_throughput_and_latency ---------------------------------------------------------------------

def _batching(batch_sizes, step_fixed, step_per_request, arrival_rate, *, per_batch=False, per_request_time=False,
              wait=True):
    step_time = step_fixed + step_per_request * batch_sizes
    capacity = 1 / step_time if per_batch else batch_sizes / step_time
    latency = (batch_sizes - 1) / (2 * arrival_rate) * wait + (step_time / batch_sizes if per_request_time
                                                               else step_time)
    return capacity, latency


def capacity_counts_batches_not_requests(batch_sizes, step_fixed, step_per_request, arrival_rate):
    return _batching(batch_sizes, step_fixed, step_per_request, arrival_rate, per_batch=True)


def latency_shares_the_step_among_the_batch(batch_sizes, step_fixed, step_per_request, arrival_rate):
    return _batching(batch_sizes, step_fixed, step_per_request, arrival_rate, per_request_time=True)


def latency_forgets_the_wait_to_fill_the_batch(batch_sizes, step_fixed, step_per_request, arrival_rate):
    return _batching(batch_sizes, step_fixed, step_per_request, arrival_rate, wait=False)


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("quantize_per_channel_int8", quantize_scale_from_the_mean, "within half a step"),
    ("quantize_per_channel_int8", quantize_by_truncation, "within half a step"),
    ("quantize_per_channel_int8", quantize_one_scale_for_the_tensor, "its own scale"),
    ("quantize_per_channel_int8", quantize_zero_row_divides_by_zero, "row of zeros"),
    ("pack_int4", pack_int4_nibbles_swapped, "low nibble"),
    ("pack_int4", pack_int4_without_masking, "round-trip"),
    ("pack_int4", pack_int4_into_int8, "low nibble"),
    ("magnitude_prune_mask", prune_the_largest, "largest magnitude"),
    ("magnitude_prune_mask", prune_keep_count_rounded_down, "rounds UP"),
    ("magnitude_prune_mask", prune_by_signed_value, "largest magnitude"),
    ("magnitude_prune_mask", prune_by_threshold_keeps_ties, "rounds UP"),
    ("distillation_loss", kd_without_t_squared, "softening"),
    ("distillation_loss", kd_kl_student_first, "teacher's distribution comes first"),
    ("distillation_loss", kd_softmax_without_temperature, "softening"),
    ("speculative_accept", speculative_accepts_when_target_likes_it_more, "target's distribution"),
    ("speculative_accept", speculative_resamples_from_the_target, "target's distribution"),
    ("speculative_accept", speculative_bonus_from_the_last_draft_row, "bonus token"),
    ("speculative_accept", speculative_redraws_with_the_rejecting_uniform, "residual"),
    ("continuous_batching_step", batcher_drops_who_does_not_fit, "exactly once"),
    ("continuous_batching_step", batcher_duplicates_the_admitted, "exactly once"),
    ("continuous_batching_step", batcher_keeps_finished_requests, "exactly once"),
    ("continuous_batching_step", batcher_admits_everyone, "at most max_batch"),
    ("continuous_batching_step", batcher_waits_for_the_whole_batch, "no slot stays idle"),
    ("continuous_batching_step", batcher_admits_newest_first, "FIFO"),
    ("batching_throughput_and_latency", capacity_counts_batches_not_requests, "capacity b / t(b)"),
    ("batching_throughput_and_latency", latency_shares_the_step_among_the_batch, "M41"),
    ("batching_throughput_and_latency", latency_forgets_the_wait_to_fill_the_batch, "M41"),
]


def test_the_compression_exercises_are_registered_in_teaching_order():
    names = [name for name, _ in ex.list_exercises()]
    assert [name for name in names if name in COMPRESSION_EXERCISES] == COMPRESSION_EXERCISES
    assert names.index("kv_cache_decode_step") < names.index("quantize_per_channel_int8")  # after decoding
    assert names.index("batching_throughput_and_latency") < names.index("ring_all_reduce")  # before chapter 10


# The reference, starter and wrong-answer checks run in tests/test_exercises.py over every registered exercise.


def test_every_compression_exercise_has_at_least_two_wrong_answers():
    for name in COMPRESSION_EXERCISES:
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# ---- the references agree with independent computations -------------------------------------------------

def test_quantize_reference_is_within_half_a_step_idempotent_and_beats_one_scale_per_tensor():
    quantize = ex.get_exercise("quantize_per_channel_int8").reference
    w = np.random.default_rng(0).normal(size=(16, 64)) * np.geomspace(0.01, 10, 16)[:, None]  # rows of unlike size
    w[3] = 0.0
    q, scales, dequantized = quantize(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and scales[3, 0] == 1.0
    assert np.all(np.abs(dequantized - w) <= scales / 2 * (1 + 1e-12))
    again = quantize(dequantized)
    np.testing.assert_array_equal(again[0], q)
    np.testing.assert_allclose(again[1], scales, rtol=1e-15)
    one_scale = np.abs(w).max() / 127
    per_tensor_error = np.abs(np.clip(np.rint(w / one_scale), -127, 127) * one_scale - w).mean(axis=1)
    per_channel_error = np.abs(dequantized - w).mean(axis=1)
    assert np.all(per_channel_error <= per_tensor_error * (1 + 1e-12))  # equal only on the row of largest |w|
    size = np.maximum(np.abs(w).mean(axis=1), 1e-300)
    assert (per_channel_error / size).max() < 0.01 and (per_tensor_error / size).max() > 0.9  # small rows round to 0


def test_pack_int4_reference_equals_the_library_on_every_pair_of_values():
    pairs = np.array([(low, high) for low in range(-8, 8) for high in range(-8, 8)], dtype=np.int8)
    packed = ex.get_exercise("pack_int4").reference(pairs)
    np.testing.assert_array_equal(packed, library_pack_int4(pairs))
    np.testing.assert_array_equal(unpack_int4(packed), pairs)
    assert packed.dtype == np.uint8 and len(np.unique(packed)) == 256
    np.testing.assert_array_equal(ex.get_exercise("pack_int4").reference(np.array([[3, -2, 7, -8]], np.int8)),
                                  [[0xE3, 0x87]])  # the example of the statement


@pytest.mark.parametrize("size", [1, 7, 10, 100])
def test_prune_reference_keeps_the_ceiling_count_at_every_sparsity(size):
    prune = ex.get_exercise("magnitude_prune_mask").reference
    w = np.random.default_rng(size).normal(size=size)
    np.testing.assert_array_equal(prune(w, 0.0), np.ones(size, dtype=bool))
    for step in range(17):
        mask = prune(w, step / 16)
        assert mask.sum() == math.ceil(size * (16 - step) / 16)  # exact integer arithmetic
        if mask.any() and not mask.all():
            assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


@pytest.mark.oracle
def test_distillation_reference_equals_pytorch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(0)
    student, teacher, targets = rng.normal(0, 3, (6, 5)), rng.normal(0, 3, (6, 5)), rng.integers(0, 5, 6)
    for temperature, alpha in [(1.0, 1.0), (2.0, 0.5), (4.0, 0.9), (8.0, 0.0)]:
        z_s, z_t = torch.tensor(student), torch.tensor(teacher)
        log_p_student, log_p_teacher = (functional.log_softmax(z / temperature, -1) for z in (z_s, z_t))
        kl = functional.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        expected = alpha * temperature**2 * kl + (1 - alpha) * functional.cross_entropy(z_s, torch.tensor(targets))
        loss = ex.get_exercise("distillation_loss").reference(student, teacher, targets, temperature, alpha)
        assert loss == pytest.approx(expected.item(), rel=1e-12)


def test_distillation_reference_is_zero_for_a_perfect_student_and_soft_targets_flatten_with_temperature():
    loss = ex.get_exercise("distillation_loss").reference
    logits = np.random.default_rng(1).normal(0, 3, (4, 6))
    assert loss(logits, logits, np.zeros(4, dtype=int), 3.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    soft_targets = [np.exp(log_softmax_rows(logits / temperature)) for temperature in (1, 2, 4, 8, 64)]
    spreads = [np.ptp(probabilities, axis=-1).max() for probabilities in soft_targets]
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] < 0.05


def test_speculative_reference_emits_the_target_distribution_in_a_monte_carlo_run():
    """Draft tokens drawn from the draft model, uniforms from a generator: every emitted position follows the target's
    row for it (given that the run got there), within 5 standard errors."""
    accept = ex.get_exercise("speculative_accept").reference
    rng = np.random.default_rng(0)
    target = np.array([[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    draft = np.array([[0.2, 0.2, 0.2, 0.4], [0.7, 0.1, 0.1, 0.1]])
    runs = 20_000
    drafted = np.stack([rng.choice(4, size=runs, p=row) for row in draft], axis=1)
    emitted = np.zeros((3, 4))  # counts of each token emitted at position 0, 1, 2
    for tokens, u in zip(drafted, rng.random((runs, 3))):
        num_accepted, next_token = accept(target, draft, tokens, u)
        for position, token in enumerate([*tokens[:num_accepted], next_token]):
            emitted[position, token] += 1
    for position in range(3):
        reached = emitted[position].sum()
        standard_error = np.sqrt(target[position] * (1 - target[position]) / reached)
        assert np.all(np.abs(emitted[position] / reached - target[position]) <= 5 * standard_error + 1e-12), position


def test_batcher_reference_runs_every_request_to_completion_and_is_fifo_with_one_slot():
    step = ex.get_exercise("continuous_batching_step").reference
    rng = np.random.default_rng(0)
    for max_batch in (1, 3):
        lengths = {request: int(rng.integers(1, 6)) for request in range(12)}
        running, waiting, generated, finished = [], [(request, length) for request, length in lengths.items()], {}, []
        running, waiting = step(running, waiting, max_batch)
        while running:
            assert len(running) <= max_batch
            running = [(request, left - 1) for request, left in running]  # one decoding step: a token each
            for request, _ in running:
                generated[request] = generated.get(request, 0) + 1
            finished += [request for request, left in running if left == 0]
            running, waiting = step(running, waiting, max_batch)
        assert generated == lengths and sorted(finished) == list(lengths)
        if max_batch == 1:
            assert finished == list(lengths)  # one slot: first come, first served


def test_batching_reference_equals_a_simulated_server():
    """Requests arrive every 1 / rate seconds; each batch starts when its last request arrives (or when the server
    frees up) and answers all of them t(b) later."""
    batching = ex.get_exercise("batching_throughput_and_latency").reference
    step_fixed, step_per_request, rate = 0.02, 0.002, 30.0
    sizes = np.array([1, 2, 4, 8, 16])
    capacity, latency = batching(sizes, step_fixed, step_per_request, rate)
    for size, expected_latency in zip(sizes, latency):
        arrivals, free_at, latencies = np.arange(size * 50) / rate, 0.0, []
        for batch in arrivals.reshape(-1, size):
            free_at = max(free_at, batch[-1]) + step_fixed + step_per_request * size
            latencies += list(free_at - batch)
        assert np.mean(latencies) == pytest.approx(expected_latency, rel=1e-9)
    assert np.all(np.diff(capacity) > 0) and np.all(np.diff(latency) > 0)  # M41: more throughput, slower requests


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """Quantization that multiplies by 127 / max, packing by arithmetic, pruning through np.argpartition, the KL as
    cross-entropy minus entropy, the residual normalised before an argmax over its CDF, a batcher on a deque."""
    def quantize_by_multiplying(w):
        largest = np.abs(w).max(axis=1, keepdims=True)
        largest[largest == 0] = 127.0
        q = np.clip(np.round(w * (127 / largest)), -127, 127).astype(np.int8)
        return q, largest / 127, q.astype(np.float64) * (largest / 127)

    def pack_by_arithmetic(values):
        nibbles = np.where(values < 0, values + 16, values).astype(np.int64)
        return (nibbles[:, ::2] + 16 * nibbles[:, 1::2]).astype(np.uint8)

    def prune_by_partition(w, sparsity):
        keep = w.size - int(sparsity * w.size)  # sparsities of the grader are exact multiples of 1/16
        mask = np.zeros(w.size, dtype=bool)
        if keep:
            mask[np.argpartition(-np.abs(w).ravel(), keep - 1)[:keep]] = True
        return mask.reshape(w.shape)

    def distillation_as_cross_entropy_minus_entropy(student_logits, teacher_logits, targets, temperature, alpha):
        log_p_teacher = log_softmax_rows(teacher_logits / temperature)
        p_teacher = np.exp(log_p_teacher)
        soft_cross_entropy = -(p_teacher * log_softmax_rows(student_logits / temperature)).sum(-1)
        kl = np.mean(soft_cross_entropy + (p_teacher * log_p_teacher).sum(-1))
        hard = -np.mean(log_softmax_rows(student_logits)[np.arange(len(targets)), targets])
        return alpha * temperature**2 * kl + (1 - alpha) * hard

    def speculative_with_normalised_residual(target_probs, draft_probs, draft_tokens, u):
        distribution = target_probs[len(draft_tokens)]
        for i, token in enumerate(draft_tokens):
            if u[i] >= target_probs[i, token] / draft_probs[i, token]:
                residual = np.clip(target_probs[i] - draft_probs[i], 0, None)
                distribution = residual / residual.sum()
                return i, int(np.argmax(np.cumsum(distribution) > u[-1]))
        return len(draft_tokens), int(np.argmax(np.cumsum(distribution) > u[-1]))

    def batcher_on_a_deque(running, waiting, max_batch):
        queue, batch = deque(waiting), [request for request in running if request[1] != 0]
        while queue and len(batch) < max_batch:
            batch.append(queue.popleft())
        return batch, list(queue)

    for name, function in (("quantize_per_channel_int8", quantize_by_multiplying), ("pack_int4", pack_by_arithmetic),
                           ("magnitude_prune_mask", prune_by_partition),
                           ("distillation_loss", distillation_as_cross_entropy_minus_entropy),
                           ("speculative_accept", speculative_with_normalised_residual),
                           ("continuous_batching_step", batcher_on_a_deque)):
        result = ex.get_exercise(name).grade(function)
        assert result, f"{name}: {result}"
