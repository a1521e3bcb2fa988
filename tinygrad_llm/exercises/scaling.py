"""Exercises on efficient and scaled training (chapter 10): a ring all-reduce on simulated ranks, the
dynamic loss scaler's update, a data-parallel sampler's shards, the pipeline bubble, a power-law fit, gradient
accumulation over uneven micro-batches, ZeRO's memory per parameter and the spacing of float16 numbers.

None of them needs MPI: ranks are entries of a Python list. Each reference below is the solution a learner sees on
request; its def line and docstring are the starter code.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import finite_floats, float_arrays

# ---- ring_all_reduce -------------------------------------------------------------------------------------


def pass_to_the_right(chunks: list[list[np.ndarray]], chunk_sent_by: list[int], combine, sent: list[int]) -> None:
    """One ring step: every rank r sends its chunk chunk_sent_by[r] to rank (r + 1) % K, all at the same time.

    The receiver stores combine(its own copy, the received chunk), a function of two arrays; sent[r] counts the
    elements rank r sent.
    """
    ranks = len(chunks)
    payloads = [chunks[rank][chunk_sent_by[rank]].copy() for rank in range(ranks)]  # sent before anyone receives
    for rank, payload in enumerate(payloads):
        receiver, index = chunks[(rank + 1) % ranks], chunk_sent_by[rank]
        receiver[index] = combine(receiver[index], payload)
        sent[rank] += payload.size


def ring_all_reduce(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Average K 1-D float64 arrays of one length n (rank r holds arrays[r]) with a ring all-reduce.

    Every rank cuts its array into K chunks with np.array_split. Reduce-scatter: K - 1 steps in which each rank
    sends one chunk to its right neighbour (r + 1) % K, which adds it to its own copy of that chunk. All-gather:
    K - 1 steps in which each rank passes a finished chunk to the right, and the neighbour overwrites its copy.
    Returns (averaged, sent): averaged[r] is rank r's final array, sent[r] the number of elements rank r sent.
    """
    ranks = len(arrays)
    chunks = [np.array_split(array.copy(), ranks) for array in arrays]
    sent = [0] * ranks
    for step in range(ranks - 1):  # afterwards rank r holds the full sum of chunk (r + 1) % K
        pass_to_the_right(chunks, [(rank - step) % ranks for rank in range(ranks)], np.add, sent)
    for step in range(ranks - 1):  # each finished chunk travels once around the ring
        pass_to_the_right(chunks, [(rank + 1 - step) % ranks for rank in range(ranks)],
                          lambda mine, received: received, sent)
    return [np.concatenate(rank_chunks) / ranks for rank_chunks in chunks], sent


@st.composite
def ring_inputs(draw) -> dict:
    """K = 1..5 ranks holding arrays of one length n = 1..12 (so n < K and K not dividing n both come up)."""
    length = draw(st.integers(1, 12))
    return {"arrays": [draw(float_arrays(length)) for _ in range(draw(st.integers(1, 5)))]}


RING_MEAN = "every rank ends with the mean of the K arrays (an all-reduce that averages gradients)"
RING_TRAFFIC = ("each rank sends 2(K-1) chunks: 2(K-1)/K * n elements when K divides n, 2(K-1) * n for all ranks "
                "together (M42: data parallelism adds this traffic every step)")


def _ring_output(learner, drawn: dict, name: str) -> tuple[list, list]:
    output = call_learner(learner, drawn, name)
    expect_close(name, drawn, ring_all_reduce(**drawn), output, None, None, names=("averaged", "sent"))
    return output


def _every_rank_holds_the_mean(learner, drawn: dict) -> None:
    averaged, _ = _ring_output(learner, drawn, RING_MEAN)
    mean = np.mean(drawn["arrays"], axis=0)
    expect_close(RING_MEAN, drawn, {"averaged": [mean] * len(averaged)}, {"averaged": list(averaged)}, 1e-9, 1e-12)


def _ring_traffic(learner, drawn: dict) -> None:
    _, sent = _ring_output(learner, drawn, RING_TRAFFIC)
    ranks, length = len(drawn["arrays"]), drawn["arrays"][0].size
    sent = [int(count) for count in sent]
    fewest, most = 2 * (ranks - 1) * (length // ranks), 2 * (ranks - 1) * -(-length // ranks)
    if sum(sent) != 2 * (ranks - 1) * length or not all(fewest <= count <= most for count in sent):
        raise PropertyFailed(RING_TRAFFIC, drawn, f"counts summing to {2 * (ranks - 1) * length}, each from "
                             f"{fewest} to {most}", {"sent": sent},
                             "in every step each rank sends one chunk of about n/K elements, never a whole array")


# ---- loss_scaler_update ----------------------------------------------------------------------------------


def loss_scaler_update(scale: float, found_inf: bool, clean_steps: int, growth_interval: int,
                       growth_factor: float, backoff_factor: float) -> tuple[float, int, bool]:
    """One update of a dynamic loss scaler (the rule of PyTorch's GradScaler), after this step's gradients
    were checked.

    found_inf: some gradient of this step was inf or nan. clean_steps: overflow-free steps counted since the
    scale last changed. Returns (new_scale, new_clean_steps, step_taken); step_taken says whether the optimizer
    may apply this step's gradients.
    """
    if found_inf:
        return scale * backoff_factor, 0, False
    clean_steps += 1
    if clean_steps == growth_interval:
        return scale * growth_factor, 0, True
    return scale, clean_steps, True


@st.composite
def scaler_inputs(draw, found_inf: bool) -> dict:
    """A power-of-two scale, a count below growth_interval and PyTorch-like factors (defaults among them)."""
    growth_interval = draw(st.sampled_from([1, 2, 3, 5, 2000]))
    return {"scale": 2.0 ** draw(st.integers(-4, 24)), "found_inf": found_inf,
            "clean_steps": draw(st.integers(0, growth_interval - 1)), "growth_interval": growth_interval,
            "growth_factor": draw(st.sampled_from([2.0, 4.0, 1.5])),
            "backoff_factor": draw(st.sampled_from([0.5, 0.25, 0.125]))}


SCALER_FIELDS = ("new_scale", "new_clean_steps", "step_taken")
OVERFLOW = ("an overflow skips the step, multiplies the scale by backoff_factor and restarts the clean-step "
            "count at 0")
CLEAN_STEP = ("a clean step is taken and counted; when the count reaches growth_interval the scale grows by "
              "growth_factor and the count restarts at 0")


def _scaler_follows_the_rule(name: str) -> Callable[[Callable, dict], None]:
    """A verify function: the learner's (new_scale, new_clean_steps, step_taken) equals the reference's exactly."""

    def verify(learner, drawn: dict) -> None:
        expected = loss_scaler_update(**drawn)
        received = call_learner(learner, drawn, name)
        if not isinstance(received, (tuple, list)) or len(received) != 3:
            raise PropertyFailed(name, drawn, expected, received, f"return a tuple ({', '.join(SCALER_FIELDS)})")
        new_scale, new_clean_steps, step_taken = received
        if not (isinstance(new_scale, (float, int, np.floating, np.integer)) and not isinstance(new_scale, bool)
                and isinstance(new_clean_steps, (int, np.integer)) and not isinstance(new_clean_steps, bool)
                and isinstance(step_taken, (bool, np.bool_))):
            raise PropertyFailed(name, drawn, expected, received,
                                 "new_scale is a number, new_clean_steps an int and step_taken a bool")
        if not (np.isclose(new_scale, expected[0], rtol=1e-12, atol=0)
                and new_clean_steps == expected[1] and step_taken == expected[2]):
            raise PropertyFailed(name, drawn, dict(zip(SCALER_FIELDS, expected)),
                                 dict(zip(SCALER_FIELDS, (new_scale, new_clean_steps, step_taken))))

    return verify


# ---- shard_indices ---------------------------------------------------------------------------------------


def shard_indices(num_samples: int, num_ranks: int, rank: int, seed: int, epoch: int) -> np.ndarray:
    """The indices of the samples that rank `rank` of `num_ranks` reads in epoch `epoch`, as an int64 array.

    Every rank runs this on its own, without talking to the others, and the K shards of one epoch must be
    disjoint, cover all num_samples samples once and differ in size by at most one; the order changes from
    one epoch to the next. seed is the same on every rank.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)  # the same on every rank
    return order[rank::num_ranks]


@st.composite
def shard_inputs(draw, min_samples: int = 1) -> dict:
    """A data set of num_samples, K = 1..5 ranks (sometimes more ranks than samples), a seed and an epoch."""
    return {"num_samples": draw(st.integers(min_samples, 30)), "num_ranks": draw(st.integers(1, 5)),
            "seed": draw(st.integers(0, 1000)), "epoch": draw(st.integers(0, 5))}


DISJOINT_COVER = ("the K shards are disjoint and together hold every sample exactly once (M46: a rank must not "
                  "read the whole data set, nor hard-code its rank)")
BALANCED = "every rank gets num_samples // K samples or one more"
RESHUFFLED = "every epoch reshuffles: the shards of epoch e + 1 are not those of epoch e"


def _all_shards(learner, drawn: dict, name: str, epoch: int | None = None) -> dict[str, np.ndarray]:
    """{"rank r": the learner's shard of rank r} for every rank, each checked to be a 1-D integer array."""
    shards = {}
    for rank in range(drawn["num_ranks"]):
        arguments = {"num_samples": drawn["num_samples"], "num_ranks": drawn["num_ranks"], "rank": rank,
                     "seed": drawn["seed"], "epoch": drawn["epoch"] if epoch is None else epoch}
        shard = call_learner(learner, arguments, name)
        if not (isinstance(shard, np.ndarray) and shard.ndim == 1 and np.issubdtype(shard.dtype, np.integer)):
            raise PropertyFailed(name, arguments, "a 1-D integer array of sample indices", shard)
        shards[f"rank {rank}"] = shard
    return shards


def _disjoint_and_cover(learner, drawn: dict) -> None:
    shards = _all_shards(learner, drawn, DISJOINT_COVER)
    every_index = np.sort(np.concatenate(list(shards.values())))
    if not np.array_equal(every_index, np.arange(drawn["num_samples"])):
        raise PropertyFailed(DISJOINT_COVER, drawn, f"each of 0..{drawn['num_samples'] - 1} in exactly one shard",
                             shards)


def _balanced(learner, drawn: dict) -> None:
    shards = _all_shards(learner, drawn, BALANCED)
    fewest = drawn["num_samples"] // drawn["num_ranks"]
    if not all(fewest <= shard.size <= fewest + 1 for shard in shards.values()):
        raise PropertyFailed(BALANCED, drawn, f"shards of {fewest} or {fewest + 1} samples", shards)


def _reshuffled(learner, drawn: dict) -> None:
    this_epoch = _all_shards(learner, drawn, RESHUFFLED)
    next_epoch = _all_shards(learner, drawn, RESHUFFLED, epoch=drawn["epoch"] + 1)
    if all(np.array_equal(this_epoch[rank], next_epoch[rank]) for rank in this_epoch):
        raise PropertyFailed(RESHUFFLED, drawn, "a different order in the next epoch", next_epoch,
                             "derive the permutation from (seed, epoch), not from the seed alone")


# ---- pipeline_bubble_fraction ----------------------------------------------------------------------------


def pipeline_bubble_fraction(stages: int, micro_batches: int) -> float:
    """The fraction of a GPipe step that the pipeline's stages spend idle, for `stages` stages (one per device)
    and the batch cut into `micro_batches` micro-batches.

    Every stage spends one time slot on each micro-batch and hands it on to the next stage.
    """
    return (stages - 1) / (micro_batches + stages - 1)


def gpipe_idle_fraction(stages: int, micro_batches: int) -> float:
    """Count the idle slots of GPipe's forward time table, where stage s works on micro-batch j in slot s + j."""
    slots = (stages - 1) + (micro_batches - 1) + 1  # the last micro-batch leaves the last stage in the last slot
    busy = np.zeros((stages, slots), dtype=bool)
    for stage in range(stages):
        for micro_batch in range(micro_batches):
            busy[stage, stage + micro_batch] = True
    return float(1.0 - busy.mean())


@st.composite
def bubble_inputs(draw, stages=st.integers(1, 8), micro_batches=st.integers(1, 32)) -> dict:
    return {"stages": draw(stages), "micro_batches": draw(micro_batches)}


def _one_stage_never_waits(stages, micro_batches) -> float:
    return 0.0


def _one_micro_batch_at_a_time(stages, micro_batches) -> float:
    """With one micro-batch only one stage is busy in each of the p slots: p - 1 of every p are idle."""
    return (stages - 1) / stages


# ---- fit_power_law_exponent ------------------------------------------------------------------------------


def fit_power_law_exponent(N: np.ndarray, L: np.ndarray, c: float) -> tuple[float, float]:
    """Fit L = a * N**(-alpha) + c by least squares in log-log space, the irreducible loss c being known.

    N (model sizes) and L (their losses, all above c) are 1-D float64 arrays of one length, with at least two
    different sizes. Returns (a, alpha) as floats.
    """
    slope, intercept = np.polyfit(np.log(N), np.log(L - c), 1)  # log(L - c) = log(a) - alpha * log(N)
    return float(np.exp(intercept)), float(-slope)


@st.composite
def power_law_inputs(draw, noisy: bool) -> dict:
    """3 to 8 sizes spread over 1 to 3 decades from 1e3 on, losses a * N**-alpha + c, times exp(noise) on the
    reducible part when `noisy`."""
    points = draw(st.integers(3, 8))
    first, decades = draw(finite_floats(3.0, 5.0)), draw(finite_floats(1.0, 3.0))
    N = 10.0 ** np.linspace(first, first + decades, points)
    a, alpha, c = draw(finite_floats(1.0, 100.0)), draw(finite_floats(0.05, 1.0)), draw(finite_floats(0.5, 3.0))
    noise = draw(float_arrays(points, -0.1, 0.1)) if noisy else np.zeros(points)
    return {"N": N, "L": a * N ** -alpha * np.exp(noise) + c, "c": c}


def _true_law(N, L, c) -> tuple[float, float]:
    """The (a, alpha) that made noiseless data, read back from two of its points."""
    alpha = np.log((L[0] - c) / (L[-1] - c)) / np.log(N[-1] / N[0])
    return float((L[0] - c) * N[0] ** alpha), float(alpha)


# ---- accumulated_gradient --------------------------------------------------------------------------------


def accumulated_gradient(X: np.ndarray, y: np.ndarray, w: np.ndarray, micro_batch_size: int) -> np.ndarray:
    """The gradient of L(w) = mean over all N rows of 0.5 * (X[i] @ w - y[i])**2, built one micro-batch at a time.

    X is (N, D), y is (N,), w is (D,), all float64. Visit the micro-batches X[start:start + micro_batch_size]
    in order (the last one may be shorter), compute each one's gradient, scale it, and add it to a running sum,
    as gradient accumulation does within one optimizer step. Returns that sum, of shape (D,).
    """
    total_rows = len(y)
    gradient = np.zeros_like(w)
    for start in range(0, total_rows, micro_batch_size):
        rows = slice(start, start + micro_batch_size)
        residuals = X[rows] @ w - y[rows]
        gradient += X[rows].T @ residuals / total_rows  # this micro-batch's summed gradient over the FULL row count
    return gradient


def full_batch_gradient(X, y, w, micro_batch_size) -> np.ndarray:
    """The gradient of the mean loss over all rows at once, which accumulation must reproduce."""
    return X.T @ (X @ w - y) / len(y)


@st.composite
def accumulation_inputs(draw, uneven: bool) -> dict:
    """1 to 4 micro-batches of 1 to 5 rows; with `uneven`, one more micro-batch that is shorter than the rest."""
    micro_batch_size = draw(st.integers(2 if uneven else 1, 5))
    rows = micro_batch_size * draw(st.integers(1, 4)) + (draw(st.integers(1, micro_batch_size - 1)) if uneven else 0)
    features = draw(st.integers(1, 4))
    return {"X": draw(float_arrays((rows, features), -5.0, 5.0)), "y": draw(float_arrays(rows, -5.0, 5.0)),
            "w": draw(float_arrays(features, -5.0, 5.0)), "micro_batch_size": micro_batch_size}


# ---- zero_bytes_per_parameter ----------------------------------------------------------------------------


def zero_bytes_per_parameter(stage: int, num_ranks: int) -> dict[str, float]:
    """Bytes that each of num_ranks data-parallel ranks holds per model parameter, under ZeRO stage 0 to 3,
    when training with mixed precision and Adam.

    Unsharded, one parameter costs 2 bytes of float16 weight, 2 of float16 gradient and 12 of optimizer state
    (float32 master weight, Adam's m and v): 16 bytes. Stage 0 is plain data parallelism; stage 1 shards the
    optimizer state over the ranks, stage 2 the gradients too, stage 3 the weights too. Returns a dict with the
    keys "weights", "gradients" and "optimizer_state".
    """
    unsharded = {"weights": 2.0, "gradients": 2.0, "optimizer_state": 12.0}
    sharded_from_stage = {"weights": 3, "gradients": 2, "optimizer_state": 1}
    return {part: full / num_ranks if stage >= sharded_from_stage[part] else full for part, full in unsharded.items()}


@st.composite
def zero_inputs(draw, stages=st.integers(0, 3)) -> dict:
    return {"stage": draw(stages), "num_ranks": draw(st.sampled_from([1, 2, 3, 4, 8, 64, 1024]))}


def _plain_data_parallel(stage, num_ranks) -> dict[str, float]:
    """Stage 0: every rank holds a full replica, 2 + 2 + 12 bytes, however many ranks there are."""
    return {"weights": 2.0, "gradients": 2.0, "optimizer_state": 12.0}


# ---- float16_spacing -------------------------------------------------------------------------------------


def float16_spacing(x: np.ndarray) -> np.ndarray:
    """The gap between each value of x and the next larger float16, as float64 (x's shape).

    x is a float64 array of values that float16 represents exactly, 0 <= x < 65504 (the largest float16).
    float16 has 1 sign bit, 5 exponent bits and 10 fraction bits; its smallest normal number is 2**-14, and
    below it the subnormal numbers are spaced like the numbers in [2**-14, 2**-13).
    """
    _, exponent = np.frexp(x)  # x = fraction * 2**exponent with 0.5 <= fraction < 1
    binade = np.where(x > 0, exponent - 1, -14)  # x lies in [2**binade, 2**(binade + 1))
    return np.ldexp(1.0, np.maximum(binade, -14) - 10)  # 10 fraction bits; subnormals share the gap of binade -14


@st.composite
def float16_inputs(draw, lowest: float = 0.0, highest: float = 65504.0) -> dict:
    """1 to 6 float16 values in [lowest, highest), drawn as bit patterns so every representable value can come up."""
    first, stop = (int(np.array(bound, np.float16).view(np.uint16)) for bound in (lowest, highest))
    bits = draw(hnp.arrays(np.uint16, draw(st.integers(1, 6)), elements=st.integers(first, stop - 1)))
    return {"x": bits.view(np.float16).astype(np.float64)}


def distance_to_the_next_float16(x) -> np.ndarray:
    """What the spacing means, asked of NumPy: next float16 above x, minus x."""
    return np.nextafter(x.astype(np.float16), np.float16(np.inf)).astype(np.float64) - x


def _between_one_and_two(x) -> np.ndarray:
    return np.full_like(x, 2.0 ** -10)


def _smallest_subnormal(x) -> np.ndarray:
    return np.full_like(x, 2.0 ** -24)


# ---- the exercises ---------------------------------------------------------------------------------------

RING_ALL_REDUCE = Exercise(
    name="ring_all_reduce",
    title="Ring all-reduce on K simulated ranks: reduce-scatter, then all-gather (Q23)",
    statement=(
        "Data-parallel training averages the K ranks' gradients every step. Simulate the ring all-reduce that\n"
        "does it: arrays is a list of K 1-D float64 arrays of one length n, arrays[r] held by rank r. Each rank\n"
        "cuts its array into K chunks with np.array_split (when K does not divide n the first chunks are one\n"
        "longer; when n < K some are empty). Ranks sit on a ring and only ever send to their right neighbour\n"
        "(r + 1) % K, all ranks at once in each step:\n"
        "  reduce-scatter, K - 1 steps: each rank sends one chunk; the neighbour adds it to its own copy. Choose\n"
        "    the chunks so that afterwards every chunk's full sum sits on some rank.\n"
        "  all-gather, K - 1 steps: each rank sends a finished chunk; the neighbour overwrites its copy.\n"
        "Then divide by K. Return (averaged, sent): averaged[r] is rank r's array of length n, sent[r] the number\n"
        "of elements rank r sent in both phases together (a ring moves 2(K-1)/K * n per rank, almost\n"
        "independent of K). Tolerance: rtol=1e-9, atol=1e-12; the counts are exact."
    ),
    reference=ring_all_reduce,
    helpers=(pass_to_the_right,),
    hints=(
        "Keep chunks[r][c], rank r's copy of chunk c. In step s of the reduce-scatter let rank r send chunk "
        "(r - s) % K: that is the chunk it received (and added to) in step s - 1, so the partial sums travel "
        "around the ring and grow by one rank per step.",
        "After the reduce-scatter rank r holds the complete sum of chunk (r + 1) % K. In step s of the all-gather "
        "it sends chunk (r + 1 - s) % K. Copy every outgoing chunk before any rank receives: all sends happen at "
        "once. Divide by K once at the end, never at each hop.",
        "Two phases of K - 1 steps, each rank sending its scheduled chunk to (r + 1) % K: in the first the receiver "
        "adds it to its copy, in the second it overwrites its copy. Every message adds the chunk's length to its "
        "sender's count. At the end each rank joins its K chunks back in order and divides by K.",
    ),
    checks=(
        has_reference_shapes(ring_all_reduce, ring_inputs(), "returns (averaged: K arrays of length n, sent: K ints)",
                             names=("averaged", "sent")),
        Check(RING_MEAN, ring_inputs(), _every_rank_holds_the_mean),
        Check(RING_TRAFFIC, ring_inputs(), _ring_traffic),
    ),
)

LOSS_SCALER_UPDATE = Exercise(
    name="loss_scaler_update",
    title="The dynamic loss scaler's update: back off and skip on overflow, grow after clean steps (Q23)",
    statement=(
        "Training in float16 multiplies the loss by a scale S so that small gradients do not flush to zero,\n"
        "then divides the gradients by S. If S is too large some gradient overflows to inf (or nan). Implement\n"
        "the scaler's update after the gradients of one step were checked:\n"
        "  found_inf:  the step is skipped (step_taken = False), S is multiplied by backoff_factor and the\n"
        "              clean-step count restarts at 0;\n"
        "  otherwise:  the step is taken and counted; when the count reaches growth_interval, S is multiplied\n"
        "              by growth_factor and the count restarts at 0.\n"
        "clean_steps (0 <= clean_steps < growth_interval) is the count before this step. Return\n"
        "(new_scale, new_clean_steps, step_taken): a float, an int and a bool. PyTorch's defaults are\n"
        "S = 2**16, growth_factor = 2, backoff_factor = 0.5, growth_interval = 2000. Values are exact."
    ),
    reference=loss_scaler_update,
    hints=(
        "Two cases. An overflow means this step's gradients are garbage: never apply them, and make S smaller. "
        "A clean step is evidence that S could be larger, but only after growth_interval of them in a row.",
        "The count must restart at 0 both after an overflow and after a growth: it counts clean steps since "
        "the scale last changed. An overflow never grows the scale, even when the count was about to reach "
        "growth_interval.",
        "On an overflow: the scale times backoff_factor, a count of 0, and False (skip the step). Otherwise count one "
        "more clean step; at growth_interval, the scale times growth_factor and a count of 0; below it, the scale "
        "unchanged with the new count. Both clean cases apply the step (True).",
    ),
    checks=(
        Check(OVERFLOW, scaler_inputs(found_inf=True), _scaler_follows_the_rule(OVERFLOW)),
        Check(CLEAN_STEP, scaler_inputs(found_inf=False), _scaler_follows_the_rule(CLEAN_STEP)),
    ),
)

SHARD_INDICES = Exercise(
    name="shard_indices",
    title="A data-parallel sampler: rank r's shard of one epoch (Q23, M46)",
    statement=(
        "K processes train one model, each on its own part of every epoch. Write the function each rank calls\n"
        "on its own to find the sample indices it reads in an epoch: num_samples samples (indices 0..N-1),\n"
        "num_ranks = K, rank in 0..K-1, a seed shared by all ranks, and the epoch number. The ranks never talk\n"
        "to each other, yet in every epoch their K shards must be disjoint and together cover every sample\n"
        "exactly once, each rank must get N // K samples or one more (K may exceed N), and the order must\n"
        "change from one epoch to the next. Return a 1-D integer array. How you shuffle is up to you."
    ),
    reference=shard_indices,
    hints=(
        "All ranks must agree on one shuffled order of 0..N-1 without sending it: build it from numbers every "
        "rank already has. Then each rank takes its own, non-overlapping part of that order.",
        "A generator seeded with (seed, epoch) gives the same permutation on every rank and a new one every "
        "epoch; a seed that includes the rank does not (the shards then overlap). Taking every K-th index "
        "from position `rank` keeps the sizes within one of each other.",
        "Seed np.random.default_rng with the pair [seed, epoch] and permute num_samples; rank r keeps every "
        "num_ranks-th entry of that permutation, starting at position r.",
    ),
    checks=(
        Check(DISJOINT_COVER, shard_inputs(), _disjoint_and_cover),
        Check(BALANCED, shard_inputs(), _balanced),
        Check(RESHUFFLED, shard_inputs(min_samples=10), _reshuffled),
    ),
)

PIPELINE_BUBBLE_FRACTION = Exercise(
    name="pipeline_bubble_fraction",
    title="The idle bubble of a GPipe pipeline with p stages and m micro-batches (Q23)",
    statement=(
        "Pipeline parallelism puts consecutive layers on `stages` devices and cuts the batch into\n"
        "`micro_batches` micro-batches. Stage s can start micro-batch j only after stage s - 1 has finished it,\n"
        "and every stage takes one time slot per micro-batch. Return the fraction of the stages' time slots,\n"
        "from the first slot to the one in which the last stage finishes, that are idle (the same fraction holds\n"
        "for the backward pass, which runs the schedule in reverse). Tolerance: rtol=1e-12."
    ),
    reference=pipeline_bubble_fraction,
    hints=(
        "Draw the time table: a row per stage, a column per slot, and mark which micro-batch each stage works on. "
        "The work forms a parallelogram; the empty triangles on both sides are the bubble.",
        "Stage s works in slots s .. s + m - 1, so the last stage finishes in slot (p - 1) + (m - 1): the "
        "schedule lasts m + p - 1 slots, of which each stage is busy for m.",
        "The bubble is the idle part of the schedule: (p - 1) idle slots per stage out of the m + p - 1 slots the "
        "schedule lasts.",
    ),
    checks=(
        matches_reference(_one_stage_never_waits, bubble_inputs(stages=st.just(1)), rtol=1e-12, atol=0.0,
                          name="a single stage never waits: the bubble is 0"),
        matches_reference(_one_micro_batch_at_a_time, bubble_inputs(micro_batches=st.just(1)), rtol=1e-12,
                          atol=0.0, name="with one micro-batch only one stage works at a time: (p - 1) / p idle"),
        matches_reference(gpipe_idle_fraction, bubble_inputs(), rtol=1e-12, atol=1e-15,
                          name="equals the idle share of the GPipe time table (stage s runs micro-batch j in "
                               "slot s + j)"),
    ),
)

FIT_POWER_LAW_EXPONENT = Exercise(
    name="fit_power_law_exponent",
    title="Fit a scaling law L(N) = a N^-alpha + c with the irreducible loss c known (Q25)",
    statement=(
        "Losses of models of N parameters often follow L(N) = a * N**(-alpha) + c, where c is the loss no\n"
        "model size removes. Given the sizes N and losses L (1-D float64 arrays, every L above c, at least\n"
        "two different sizes) and c, return (a, alpha) as floats: the least-squares straight line through the\n"
        "points (log N, log(L - c)) has slope -alpha and intercept log a. On noiseless data the fit must give\n"
        "back the a and alpha that made it. Tolerance: rtol=1e-6."
    ),
    reference=fit_power_law_exponent,
    hints=(
        "A power law is a straight line on log-log axes, but only its reducible part a * N**-alpha is a power "
        "law: L itself bends towards c for large N.",
        "Subtract c BEFORE taking logs: log(L - c) = log(a) - alpha * log(N). A line through (log N, log L) "
        "gives a smaller, wrong alpha. Fit the line by least squares through all points, not through two.",
        "Fit a degree-1 polynomial (np.polyfit) to log N against log(L - c). The intercept is log a and the slope is "
        "-alpha: return exp of the intercept and minus the slope, as floats.",
    ),
    checks=(
        has_reference_shapes(fit_power_law_exponent, power_law_inputs(noisy=False), "returns (a, alpha), two floats",
                             names=("a", "alpha")),
        matches_reference(_true_law, power_law_inputs(noisy=False), rtol=1e-6, atol=0.0, names=("a", "alpha"),
                          name="gives back the a and alpha of noiseless data (subtract c before the log)"),
        matches_reference(fit_power_law_exponent, power_law_inputs(noisy=True), rtol=1e-6, atol=1e-9,
                          names=("a", "alpha"),
                          name="on noisy losses it is the least-squares line through all the (log N, log(L - c))"),
    ),
)

ACCUMULATED_GRADIENT = Exercise(
    name="accumulated_gradient",
    title="Gradient accumulation over uneven micro-batches equals the full-batch gradient (Q23, M44)",
    statement=(
        "Gradient accumulation splits one optimizer step's batch into micro-batches that fit in memory, runs\n"
        "forward and backward on each in turn, and adds up their gradients before the single update. The loss\n"
        "of the step is L(w) = mean over all N rows of 0.5 * (X[i] @ w - y[i])**2, for X (N, D), y (N,) and\n"
        "w (D,), float64. Visit the micro-batches X[start:start + micro_batch_size] in order (the last one may be\n"
        "shorter), scale each micro-batch's gradient and add it to a running sum so that the sum is exactly the\n"
        "gradient of L. Return it, of shape (D,). Tolerance: rtol=1e-9, atol=1e-12."
    ),
    reference=accumulated_gradient,
    hints=(
        "The gradient of a mean is a mean: the full-batch gradient is (1/N) times the sum over all rows of "
        "X[i] * (X[i] @ w - y[i]). Split that sum by micro-batch.",
        "A micro-batch's own mean loss has gradient (1/n_b) * its row sum; it must enter the total with weight "
        "n_b / N. Adding the micro-batch means unscaled counts every row once per micro-batch too many; dividing "
        "by the number of micro-batches is right only when they all have the same size.",
        "For each micro-batch of rows: the residuals are its rows of X times w minus its targets; add the transpose "
        "of its X rows times those residuals, divided by the TOTAL number of rows, to a gradient that starts at zero.",
    ),
    checks=(
        has_reference_shapes(accumulated_gradient, accumulation_inputs(uneven=False), "returns an array of w's shape"),
        matches_reference(full_batch_gradient, accumulation_inputs(uneven=False), rtol=1e-9, atol=1e-12,
                          name="equals the full-batch gradient X.T @ (X @ w - y) / N for equal micro-batches"),
        matches_reference(full_batch_gradient, accumulation_inputs(uneven=True), rtol=1e-9, atol=1e-12,
                          name="equals the full-batch gradient when the last micro-batch is shorter (weight each "
                               "by its share of the rows)"),
    ),
)

ZERO_BYTES_PER_PARAMETER = Exercise(
    name="zero_bytes_per_parameter",
    title="Memory per parameter on each rank under ZeRO stages 0 to 3 (Q23)",
    statement=(
        "Mixed-precision training with Adam keeps, per parameter, a float16 weight (2 bytes), a float16\n"
        "gradient (2 bytes) and 12 bytes of optimizer state (a float32 master weight and Adam's two float32\n"
        "moments): 16 bytes. Plain data parallelism (stage 0) keeps all of it on every rank. ZeRO shards state\n"
        "over the num_ranks ranks, each rank keeping 1/num_ranks of a sharded part: stage 1 shards the\n"
        "optimizer state, stage 2 also the gradients, stage 3 also the weights. Return the bytes per parameter\n"
        "one rank holds, as {\"weights\": ..., \"gradients\": ..., \"optimizer_state\": ...} (floats).\n"
        "Tolerance: rtol=1e-12."
    ),
    reference=zero_bytes_per_parameter,
    hints=(
        "Start from the unsharded 2 + 2 + 12 bytes; each stage divides one more of the three parts by the number "
        "of ranks and leaves the others whole.",
        "Stage 1 gives 2 + 2 + 12/K, stage 2 gives 2 + (2 + 12)/K, stage 3 gives 16/K. Stage 0 holds 16 bytes "
        "per parameter on every rank whatever K: more ranks add no memory relief without sharding.",
        "Per parameter, unsharded: 2 bytes of weights, 2 of gradients, 12 of optimizer state. A part is divided by "
        "num_ranks once the stage reaches the one that shards it (1 for the optimizer state, 2 for the gradients, 3 "
        "for the weights).",
    ),
    checks=(
        has_reference_shapes(zero_bytes_per_parameter, zero_inputs(),
                             "returns a dict with keys weights, gradients, optimizer_state"),
        matches_reference(_plain_data_parallel, zero_inputs(stages=st.just(0)), rtol=1e-12, atol=0.0,
                          name="stage 0 (plain data parallelism) holds all 16 bytes on every rank, whatever K"),
        matches_reference(zero_bytes_per_parameter, zero_inputs(stages=st.integers(1, 3)), rtol=1e-12, atol=0.0,
                          name="stage 1 shards the optimizer state, stage 2 the gradients too, stage 3 the weights "
                               "too: each sharded part divided by K"),
    ),
)

FLOAT16_SPACING = Exercise(
    name="float16_spacing",
    title="The gap between neighbouring float16 numbers: why 1 + 1e-4 == 1 and 6e-8 is the floor (Q23)",
    statement=(
        "float16 has 1 sign bit, 5 exponent bits and 10 fraction bits; its largest value is 65504 and its\n"
        "smallest normal number 2**-14. Below 2**-14 come the subnormal numbers, spaced like those of\n"
        "[2**-14, 2**-13) down to 0. Given a float64 array x of values that float16 holds exactly, with\n"
        "0 <= x < 65504, return the distance from each value to the next larger float16, as a float64 array of\n"
        "x's shape. It tells you which updates survive: 1 + 1e-4 rounds back to 1 in float16, and a gradient\n"
        "below half the smallest subnormal (about 3e-8) becomes 0. Use the format, not np.spacing or\n"
        "np.nextafter. Values are exact."
    ),
    reference=float16_spacing,
    hints=(
        "Between two powers of two, 2**e <= x < 2**(e + 1), the 2**10 float16 values are evenly spaced, so the "
        "gap is 2**e / 2**10. Find e for each x (np.frexp or np.log2).",
        "np.frexp(x) gives x = fraction * 2**E with 0.5 <= fraction < 1, so e = E - 1. Subnormals (and 0) do not "
        "get smaller gaps: their e is held at -14, so the gap never drops below 2**-24, about 6e-8.",
        "e is frexp's exponent minus 1 where x > 0, and -14 where x is 0; raise any e below -14 to -14. The gap is 2 "
        "to the power (e - 10), built exactly with np.ldexp from 1.0.",
    ),
    checks=(
        has_reference_shapes(float16_spacing, float16_inputs(), "returns a float64 array of x's shape"),
        matches_reference(_between_one_and_two, float16_inputs(1.0, 2.0), rtol=0.0, atol=0.0,
                          name="between 1 and 2 the gap is 2**-10 (10 fraction bits), so 1 + 1e-4 rounds back to 1"),
        matches_reference(_smallest_subnormal, float16_inputs(0.0, 2.0 ** -14), rtol=0.0, atol=0.0,
                          name="below 2**-14 (subnormals and 0) the gap stays 2**-24, about 6e-8, the smallest "
                               "positive float16"),
        matches_reference(distance_to_the_next_float16, float16_inputs(), rtol=0.0, atol=0.0,
                          name="equals the distance to the next float16 for every value in [0, 65504)"),
    ),
)

EXERCISES = (RING_ALL_REDUCE, LOSS_SCALER_UPDATE, SHARD_INDICES, PIPELINE_BUBBLE_FRACTION, FIT_POWER_LAW_EXPONENT,
             ACCUMULATED_GRADIENT, ZERO_BYTES_PER_PARAMETER, FLOAT16_SPACING)
