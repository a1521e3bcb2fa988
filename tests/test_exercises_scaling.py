"""The chapter 10 exercises (ring all-reduce, loss scaler, shards, pipeline bubble, power-law fit, gradient
accumulation, ZeRO memory, float16 spacing): every reference passes as printed, every starter reports "not implemented
yet", the references agree with independent computations (NumPy's float16, PyTorch's scaler update where installed),
and classic wrong answers are rejected by the property that names their bug. The wrong answers are real functions,
named after the bug (spot-the-bug material).
"""

import numpy as np
import pytest

import tinygrad_llm.exercises as ex
from tinygrad_llm.exercises.scaling import gpipe_idle_fraction, pass_to_the_right

pytestmark = [pytest.mark.scaling, pytest.mark.exercises]

SCALING_EXERCISES = ["ring_all_reduce", "loss_scaler_update", "shard_indices", "pipeline_bubble_fraction",
                     "fit_power_law_exponent", "accumulated_gradient", "zero_bytes_per_parameter", "float16_spacing"]

# ---- ring_all_reduce -------------------------------------------------------------------------------------

def _keep_received(mine, received):
    return received


def _ring(arrays, *, reduce_scatter=True, first_chunk=0, combine=np.add, divide=True):
    """The ring with a switch per classic bug; each wrong answer below flips one."""
    ranks = len(arrays)
    chunks = [np.array_split(array.copy(), ranks) for array in arrays]
    sent = [0] * ranks
    for step in range(ranks - 1 if reduce_scatter else 0):
        pass_to_the_right(chunks, [(rank + first_chunk - step) % ranks for rank in range(ranks)], combine, sent)
    for step in range(ranks - 1):
        pass_to_the_right(chunks, [(rank + 1 - step) % ranks for rank in range(ranks)], _keep_received, sent)
    return [np.concatenate(rank_chunks) / (ranks if divide else 1) for rank_chunks in chunks], sent


def ring_all_gather_without_reduce_scatter(arrays):
    return _ring(arrays, reduce_scatter=False)


def ring_reduce_scatter_sends_the_wrong_chunk(arrays):
    return _ring(arrays, first_chunk=1)


def ring_averages_at_each_hop(arrays):
    return _ring(arrays, combine=lambda mine, received: (mine + received) / 2, divide=False)


def ring_returns_the_sum(arrays):
    return _ring(arrays, divide=False)


def ring_every_rank_sends_its_whole_array(arrays):
    """Right result, wrong traffic: each array goes around the whole ring, (K-1) * n elements per rank."""
    ranks = len(arrays)
    return [np.mean(arrays, axis=0) for _ in arrays], [(ranks - 1) * arrays[0].size] * ranks


# ---- loss_scaler_update ----------------------------------------------------------------------------------

def scaler_takes_the_step_on_overflow(scale, found_inf, clean_steps, growth_interval, growth_factor, backoff_factor):
    if found_inf:
        return scale * backoff_factor, 0, True
    return ex.get_exercise("loss_scaler_update").reference(scale, False, clean_steps, growth_interval, growth_factor,
                                                           backoff_factor)


def scaler_keeps_counting_after_overflow(scale, found_inf, clean_steps, growth_interval, growth_factor,
                                         backoff_factor):
    if found_inf:
        return scale * backoff_factor, clean_steps, False
    return ex.get_exercise("loss_scaler_update").reference(scale, False, clean_steps, growth_interval, growth_factor,
                                                           backoff_factor)


def scaler_counts_overflows_toward_growth(scale, found_inf, clean_steps, growth_interval, growth_factor,
                                          backoff_factor):
    clean_steps += 1
    if clean_steps == growth_interval:
        return scale * growth_factor, 0, not found_inf
    if found_inf:
        return scale * backoff_factor, 0, False
    return scale, clean_steps, True


def scaler_never_restarts_the_count_after_growth(scale, found_inf, clean_steps, growth_interval, growth_factor,
                                                 backoff_factor):
    if found_inf:
        return scale * backoff_factor, 0, False
    clean_steps += 1
    return (scale * growth_factor if clean_steps >= growth_interval else scale), clean_steps, True


# ---- shard_indices ---------------------------------------------------------------------------------------

def shard_every_rank_reads_everything(num_samples, num_ranks, rank, seed, epoch):
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def shard_hard_coded_rank_zero(num_samples, num_ranks, rank, seed, epoch):
    return np.random.default_rng([seed, epoch]).permutation(num_samples)[0::num_ranks]


def shard_seeded_with_the_rank(num_samples, num_ranks, rank, seed, epoch):
    return np.random.default_rng([seed + rank, epoch]).permutation(num_samples)[rank::num_ranks]


def shard_drops_the_remainder(num_samples, num_ranks, rank, seed, epoch):
    per_rank = num_samples // num_ranks
    return np.random.default_rng([seed, epoch]).permutation(num_samples)[rank * per_rank:(rank + 1) * per_rank]


def shard_same_order_every_epoch(num_samples, num_ranks, rank, seed, epoch):
    return np.random.default_rng(seed).permutation(num_samples)[rank::num_ranks]


# ---- pipeline_bubble_fraction ----------------------------------------------------------------------------

def bubble_over_micro_batches_only(stages, micro_batches):
    return (stages - 1) / micro_batches


def bubble_one_over_stages(stages, micro_batches):
    return 1 / stages


def bubble_denominator_off_by_one(stages, micro_batches):
    return (stages - 1) / (micro_batches + stages)


# ---- fit_power_law_exponent ------------------------------------------------------------------------------

def power_law_ignores_c(N, L, c):
    slope, intercept = np.polyfit(np.log(N), np.log(L), 1)
    return float(np.exp(intercept)), float(-slope)


def power_law_mixes_log_bases(N, L, c):
    slope, intercept = np.polyfit(np.log(N), np.log10(L - c), 1)
    return float(10 ** intercept), float(-slope)


def power_law_through_the_end_points(N, L, c):
    alpha = np.log((L[0] - c) / (L[-1] - c)) / np.log(N[-1] / N[0])
    return float((L[0] - c) * N[0] ** alpha), float(alpha)


# ---- accumulated_gradient --------------------------------------------------------------------------------

def _accumulate(X, y, w, micro_batch_size, weight):
    """Sum over micro-batches of weight(rows in it, rows in all, micro-batches) * the micro-batch's mean gradient."""
    starts = range(0, len(y), micro_batch_size)
    gradient = np.zeros_like(w)
    for start in starts:
        rows = slice(start, start + micro_batch_size)
        mean_gradient = X[rows].T @ (X[rows] @ w - y[rows]) / len(y[rows])
        gradient += weight(len(y[rows]), len(y), len(starts)) * mean_gradient
    return gradient


def accumulate_without_scaling(X, y, w, micro_batch_size):
    return _accumulate(X, y, w, micro_batch_size, lambda rows, total, count: 1.0)


def accumulate_dividing_by_the_micro_batch_size(X, y, w, micro_batch_size):
    return _accumulate(X, y, w, micro_batch_size, lambda rows, total, count: rows / micro_batch_size)


def accumulate_averaging_micro_batch_means(X, y, w, micro_batch_size):
    return _accumulate(X, y, w, micro_batch_size, lambda rows, total, count: 1.0 / count)


# ---- zero_bytes_per_parameter ----------------------------------------------------------------------------

def zero_never_divides_by_the_ranks(stage, num_ranks):
    return {"weights": 2.0, "gradients": 2.0, "optimizer_state": 12.0}


def zero_divides_everything_at_every_stage(stage, num_ranks):
    return {"weights": 2 / num_ranks, "gradients": 2 / num_ranks, "optimizer_state": 12 / num_ranks}


def zero_stage_two_shards_the_weights_not_the_gradients(stage, num_ranks):
    return {"weights": 2 / num_ranks if stage >= 2 else 2.0, "gradients": 2 / num_ranks if stage >= 3 else 2.0,
            "optimizer_state": 12 / num_ranks if stage >= 1 else 12.0}


# ---- float16_spacing -------------------------------------------------------------------------------------

def _spacing(x, fraction_bits=10, floor=-14, binade_offset=-1):
    _, exponent = np.frexp(x)
    binade = np.where(x > 0, exponent + binade_offset, floor)
    return np.ldexp(1.0, np.maximum(binade, floor) - fraction_bits)


def spacing_forgets_subnormals(x):
    return _spacing(x, floor=-10_000)


def spacing_with_float32_fraction_bits(x):
    return _spacing(x, fraction_bits=23)


def spacing_with_bfloat16_fraction_bits(x):
    return _spacing(x, fraction_bits=7)


def spacing_binade_off_by_one(x):
    return _spacing(x, binade_offset=0)


# Each wrong answer with a phrase from the name of the property that must catch it (the first one to fail).
WRONG_ANSWERS = [
    ("ring_all_reduce", ring_all_gather_without_reduce_scatter, "mean of the K arrays"),
    ("ring_all_reduce", ring_reduce_scatter_sends_the_wrong_chunk, "mean of the K arrays"),
    ("ring_all_reduce", ring_averages_at_each_hop, "mean of the K arrays"),
    ("ring_all_reduce", ring_returns_the_sum, "mean of the K arrays"),
    ("ring_all_reduce", ring_every_rank_sends_its_whole_array, "2(K-1) chunks"),
    ("loss_scaler_update", scaler_takes_the_step_on_overflow, "an overflow skips the step"),
    ("loss_scaler_update", scaler_keeps_counting_after_overflow, "restarts the clean-step count"),
    ("loss_scaler_update", scaler_counts_overflows_toward_growth, "an overflow skips the step"),
    ("loss_scaler_update", scaler_never_restarts_the_count_after_growth, "the count restarts at 0"),
    ("shard_indices", shard_every_rank_reads_everything, "disjoint"),
    ("shard_indices", shard_hard_coded_rank_zero, "disjoint"),
    ("shard_indices", shard_seeded_with_the_rank, "disjoint"),
    ("shard_indices", shard_drops_the_remainder, "exactly once"),
    ("shard_indices", shard_same_order_every_epoch, "reshuffles"),
    ("pipeline_bubble_fraction", bubble_over_micro_batches_only, "one micro-batch"),
    ("pipeline_bubble_fraction", bubble_one_over_stages, "single stage never waits"),
    ("pipeline_bubble_fraction", bubble_denominator_off_by_one, "one micro-batch"),
    ("fit_power_law_exponent", power_law_ignores_c, "subtract c before the log"),
    ("fit_power_law_exponent", power_law_mixes_log_bases, "subtract c before the log"),
    ("fit_power_law_exponent", power_law_through_the_end_points, "least-squares line"),
    ("accumulated_gradient", accumulate_without_scaling, "equal micro-batches"),
    ("accumulated_gradient", accumulate_dividing_by_the_micro_batch_size, "equal micro-batches"),
    ("accumulated_gradient", accumulate_averaging_micro_batch_means, "last micro-batch is shorter"),
    ("zero_bytes_per_parameter", zero_never_divides_by_the_ranks, "each sharded part divided by K"),
    ("zero_bytes_per_parameter", zero_divides_everything_at_every_stage, "stage 0"),
    ("zero_bytes_per_parameter", zero_stage_two_shards_the_weights_not_the_gradients, "stage 2 the gradients"),
    ("float16_spacing", spacing_forgets_subnormals, "subnormals"),
    ("float16_spacing", spacing_with_float32_fraction_bits, "between 1 and 2"),
    ("float16_spacing", spacing_with_bfloat16_fraction_bits, "between 1 and 2"),
    ("float16_spacing", spacing_binade_off_by_one, "between 1 and 2"),
]


def test_the_scaling_exercises_are_registered_in_teaching_order():
    names = [name for name, _ in ex.list_exercises()]
    assert [name for name in names if name in SCALING_EXERCISES] == SCALING_EXERCISES
    assert names.index("ring_all_reduce") > names.index("kv_cache_decode_step")  # after chapter 9
    assert names.index("float16_spacing") < names.index("online_softmax")  # before chapter 15


# The reference, starter and wrong-answer checks run in tests/test_exercises.py over every registered exercise.


def test_every_scaling_exercise_has_at_least_two_wrong_answers():
    for name in SCALING_EXERCISES:
        assert sum(exercise == name for exercise, _, _ in WRONG_ANSWERS) >= 2, name


# ---- the references agree with independent computations -------------------------------------------------

@pytest.mark.parametrize("ranks, length", [(1, 5), (2, 6), (3, 7), (4, 3), (4, 1000)])
def test_ring_reference_averages_and_moves_the_textbook_bytes(ranks, length):
    arrays = [np.random.default_rng(rank).normal(size=length) for rank in range(ranks)]
    averaged, sent = ex.get_exercise("ring_all_reduce").reference(arrays)
    for result in averaged:
        np.testing.assert_allclose(result, np.mean(arrays, axis=0), rtol=1e-12, atol=1e-15)
    assert sum(sent) == 2 * (ranks - 1) * length
    if length % ranks == 0:
        assert sent == [2 * (ranks - 1) * length // ranks] * ranks


@pytest.mark.oracle
def test_loss_scaler_reference_follows_pytorch_over_a_run_of_steps():
    torch = pytest.importorskip("torch")
    update = ex.get_exercise("loss_scaler_update").reference
    overflows = np.random.default_rng(0).random(200) < 0.1
    scale, clean_steps = 2.0 ** 16, 0
    torch_scale, torch_count = torch.tensor([2.0 ** 16]), torch.tensor([0], dtype=torch.int32)
    for found_inf in overflows:
        scale, clean_steps, step_taken = update(scale, bool(found_inf), clean_steps, 3, 2.0, 0.5)
        torch._amp_update_scale_(torch_scale, torch_count, torch.tensor([float(found_inf)]), 2.0, 0.5, 3)
        assert (scale, clean_steps, step_taken) == (torch_scale.item(), torch_count.item(), not found_inf)


def test_shard_reference_partitions_every_epoch_and_reshuffles():
    shard = ex.get_exercise("shard_indices").reference
    epochs = [np.concatenate([shard(103, 4, rank, 7, epoch) for rank in range(4)]) for epoch in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(103))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_bubble_reference_equals_the_time_table_and_vanishes_with_many_micro_batches():
    bubble = ex.get_exercise("pipeline_bubble_fraction").reference
    for stages in range(1, 9):
        for micro_batches in range(1, 40):
            assert bubble(stages, micro_batches) == pytest.approx(gpipe_idle_fraction(stages, micro_batches))
    assert bubble(4, 4) == pytest.approx(3 / 7) and bubble(4, 1000) < 0.003


def test_power_law_reference_recovers_alpha_within_5_percent_from_noisy_losses():
    rng = np.random.default_rng(0)
    N = np.geomspace(1e4, 1e7, 8)
    for alpha in (0.076, 0.3, 0.7):
        L = 40.0 * N ** -alpha * np.exp(rng.normal(0, 0.02, N.size)) + 1.7
        _, fitted = ex.get_exercise("fit_power_law_exponent").reference(N, L, 1.7)
        assert fitted == pytest.approx(alpha, rel=0.05)


def test_zero_reference_gives_the_known_totals():
    """16 bytes per parameter unsharded; ZeRO-1 is 4 + 12/K, ZeRO-2 2 + 14/K, ZeRO-3 16/K."""
    zero = ex.get_exercise("zero_bytes_per_parameter").reference
    totals = [sum(zero(stage, 8).values()) for stage in range(4)]
    assert totals == pytest.approx([16.0, 4 + 12 / 8, 2 + 14 / 8, 16 / 8])


def test_float16_spacing_reference_equals_numpy_for_every_float16_and_the_statement_facts():
    every_value = np.arange(0, 0x7BFF, dtype=np.uint16).view(np.float16)  # 0 up to just below 65504
    spacing = ex.get_exercise("float16_spacing").reference(every_value.astype(np.float64))
    np.testing.assert_array_equal(spacing, np.spacing(every_value).astype(np.float64))
    assert np.float16(1 + 1e-4) == 1.0 and spacing[np.float16(1.0).view(np.uint16)] == 2.0 ** -10
    assert float(np.float16(6e-8)) == 2.0 ** -24 and np.float16(2.0 ** -26) == 0  # below half of 2**-24: flushed
    with np.errstate(over="ignore"):
        assert np.isinf(np.float16(65504) * np.float16(2))


# ---- other correct styles pass ---------------------------------------------------------------------------

def test_other_correct_styles_pass():
    """A ring that sends to the LEFT, contiguous shards of a permutation, a scaler written as one expression,
    accumulation through each micro-batch's mean loss weighted by its share, spacing through np.log2."""
    def ring_to_the_left(arrays):
        flipped, sent = ex.get_exercise("ring_all_reduce").reference(arrays[::-1])
        return flipped[::-1], sent[::-1]

    def contiguous_shards(num_samples, num_ranks, rank, seed, epoch):
        order = np.random.default_rng(seed * 1000 + epoch).permutation(num_samples)
        return np.array_split(order, num_ranks)[rank]

    def scaler_as_expressions(scale, found_inf, clean_steps, growth_interval, growth_factor, backoff_factor):
        grows = not found_inf and clean_steps + 1 == growth_interval
        new_scale = scale * (backoff_factor if found_inf else growth_factor if grows else 1.0)
        return new_scale, 0 if found_inf or grows else clean_steps + 1, not found_inf

    def accumulate_weighted_means(X, y, w, micro_batch_size):
        return _accumulate(X, y, w, micro_batch_size, lambda rows, total, count: rows / total)

    def spacing_by_log2(x):
        binade = np.floor(np.log2(np.maximum(x, 2.0 ** -14)))
        return 2.0 ** (binade - 10)

    for name, function in (("ring_all_reduce", ring_to_the_left), ("shard_indices", contiguous_shards),
                           ("loss_scaler_update", scaler_as_expressions),
                           ("accumulated_gradient", accumulate_weighted_means), ("float16_spacing", spacing_by_log2)):
        result = ex.get_exercise(name).grade(function)
        assert result, f"{name}: {result}"
