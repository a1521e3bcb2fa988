"""Exercises on pretraining and transfer (chapter 11): masked-LM corruption, the LoRA forward pass and merge, the DPO
loss, TransE's score and margin loss, reservoir sampling, and fusing two modalities so that they can interact.

Randomness enters as arguments (uniforms, replacement ids, a seeded generator), so every grade is repeatable. Each
reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference, metamorphic

# ---- inputs on a grid ------------------------------------------------------------------------------------


def grid_arrays(shape, low: float, high: float, step: float = 0.5) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of `shape` whose entries are multiples of `step` in [low, high].

    Short to read in a failure message, quick for hypothesis to shrink, and exact in float64, so a quantity that
    cancels in exact arithmetic (a translation, an additive model's interaction contrast) is exactly 0.
    """
    return hnp.arrays(np.int64, shape, elements=st.integers(round(low / step), round(high / step))).map(
        lambda multiples: multiples * step)


def grid_numbers(low: float, high: float, step: float) -> st.SearchStrategy[float]:
    """Multiples of `step` in [low, high]."""
    return st.integers(round(low / step), round(high / step)).map(lambda multiple: multiple * step)


# ---- mlm_mask --------------------------------------------------------------------------------------------


def mlm_mask(ids: np.ndarray, padding: np.ndarray, mask_id: int, select_u: np.ndarray, action_u: np.ndarray,
             random_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masked-LM corruption of a batch of token ids, with the randomness passed in.

    ids (B, T) int64; padding (B, T) bool, True at padding; mask_id the id of [MASK]; select_u and action_u
    (B, T) float64 uniforms in [0, 1); random_ids (B, T) int64 replacement tokens. A position is SELECTED when it
    is not padding and select_u < 0.15. A selected position becomes mask_id when action_u < 0.8, random_ids there
    when 0.8 <= action_u < 0.9, and keeps its own token otherwise. Returns (inputs, targets), int64 arrays of ids'
    shape: the corrupted ids the model reads, and the original id at every selected position with -100 (the
    ignore index of the cross-entropy) everywhere else.
    """
    selected = ~padding & (select_u < 0.15)
    inputs = np.where(selected & (action_u < 0.8), mask_id, ids)
    inputs = np.where(selected & (action_u >= 0.8) & (action_u < 0.9), random_ids, inputs)
    targets = np.where(selected, ids, -100)
    return inputs.astype(np.int64), targets.astype(np.int64)


MLM_VOCABULARY = 20  # ordinary ids 0..19; [MASK] is id 20, so a masked position is easy to spot in a message
UNIFORM_STEPS = 100  # uniforms (j + 0.5) / 100: never exactly 0.15, 0.8 or 0.9, so < and <= grade the same


@st.composite
def mlm_inputs(draw, with_padding: bool = True) -> dict:
    """A batch (1 to 2, 1 to 6) of ids, padding (none without `with_padding`), uniforms and replacement ids."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)))
    ids = hnp.arrays(np.int64, shape, elements=st.integers(0, MLM_VOCABULARY - 1))
    uniforms = hnp.arrays(np.int64, shape, elements=st.integers(0, UNIFORM_STEPS - 1))
    padding = hnp.arrays(np.bool_, shape) if with_padding else st.just(np.zeros(shape, dtype=bool))
    return {"ids": draw(ids), "padding": draw(padding), "mask_id": MLM_VOCABULARY,
            "select_u": (draw(uniforms) + 0.5) / UNIFORM_STEPS, "action_u": (draw(uniforms) + 0.5) / UNIFORM_STEPS,
            "random_ids": draw(ids)}


MASKED = ("inputs", "targets")
MLM_SHAPES = "returns (inputs, targets): two int64 arrays of ids' shape"
MLM_TARGETS = ("the loss scores only the selected positions: targets = ids where select_u < 0.15, -100 everywhere "
               "else (M47)")
MLM_PADDING = "padding is never selected: its input stays as it was and its target is -100"
MLM_SPLIT = ("80/10/10: a selected position becomes [MASK] (action_u < 0.8), random_ids (0.8 <= action_u < 0.9) "
             "or stays itself; every other position is unchanged")


def _masked_of(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The learner's (inputs, targets), after checking their structure, shapes and integer dtype."""
    output = call_learner(learner, drawn, name)
    expect_close(name, drawn, mlm_mask(**drawn), output, None, None, names=MASKED)
    if not all(np.issubdtype(np.asarray(part).dtype, np.integer) for part in output):
        raise PropertyFailed(name, drawn, "two integer arrays", output,
                             "token ids are integers: an embedding lookup and the cross-entropy's targets need ints")
    return np.asarray(output[0]), np.asarray(output[1])


def _returns_two_id_arrays(learner, drawn: dict) -> None:
    _masked_of(learner, drawn, MLM_SHAPES)


def _targets_only_where_selected(learner, drawn: dict) -> None:
    _, targets = _masked_of(learner, drawn, MLM_TARGETS)
    expected = mlm_mask(**drawn)[1]
    if not np.array_equal(targets, expected):
        raise PropertyFailed(MLM_TARGETS, drawn, {"targets": expected}, {"targets": targets},
                             "an encoder sees every unselected token in its own input, so a loss there rewards copying "
                             "the input and teaches nothing; score the selected positions only, all three kinds "
                             "(masked, random and kept), and put -100 everywhere else")


def _padding_never_selected(learner, drawn: dict) -> None:
    inputs, targets = _masked_of(learner, drawn, MLM_PADDING)
    pad = drawn["padding"]
    received = {"inputs at padding": inputs[pad], "targets at padding": targets[pad]}
    expected = {"inputs at padding": drawn["ids"][pad], "targets at padding": np.full(int(pad.sum()), -100)}
    if not all(np.array_equal(received[key], expected[key]) for key in expected):
        raise PropertyFailed(MLM_PADDING, drawn, expected, received,
                             "padding is not text: select only where padding is False (~padding & (select_u < "
                             "0.15)), or the model learns to predict pad tokens and the 15% rate is off")


def _eighty_ten_ten(learner, drawn: dict) -> None:
    inputs, _ = _masked_of(learner, drawn, MLM_SPLIT)
    expected = mlm_mask(**drawn)[0]
    if not np.array_equal(inputs, expected):
        raise PropertyFailed(MLM_SPLIT, drawn, {"inputs": expected}, {"inputs": inputs},
                             "only 80% of the selected positions become [MASK]; 10% get a random token, so the model "
                             "cannot trust its input, and 10% keep theirs, so it also learns real tokens, which is "
                             "all it sees after pretraining, when [MASK] never appears")


# ---- lora_forward_and_merge ------------------------------------------------------------------------------


def lora_forward_and_merge(x: np.ndarray, W: np.ndarray, b: np.ndarray, A: np.ndarray, B: np.ndarray,
                           alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """A LoRA adapter on a frozen Linear layer (y = x W^T + b), and the same adapter merged into the weight.

    x (N, in), W (out, in), b (out,), A (r, in) and B (out, r) are float64, with r the adapter's rank; alpha > 0.
    Returns (y, merged_weight): y = x W^T + b + (alpha / r) x A^T B^T of shape (N, out), and the merged weight
    W + (alpha / r) B A of shape (out, in), with which x merged_weight^T + b computes the same y.
    """
    scale = alpha / A.shape[0]
    y = x @ W.T + b + scale * (x @ A.T) @ B.T
    return y, W + scale * (B @ A)


@st.composite
def lora_inputs(draw, zero_B: bool = False) -> dict:
    """N 1 to 3 rows, in and out 1 to 4, rank 1 to 3, entries multiples of 0.5 in +-3, alpha in 0.5..16; B = 0 with
    `zero_B`."""
    rows, rank = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    inputs, outputs = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    B = np.zeros((outputs, rank)) if zero_B else draw(grid_arrays((outputs, rank), -3, 3))
    return {"x": draw(grid_arrays((rows, inputs), -3, 3)), "W": draw(grid_arrays((outputs, inputs), -3, 3)),
            "b": draw(grid_arrays(outputs, -3, 3)), "A": draw(grid_arrays((rank, inputs), -3, 3)), "B": B,
            "alpha": draw(grid_numbers(0.5, 16.0, 0.5))}


LORA_FIELDS = ("y", "merged_weight")
LORA_SHAPES = "returns (y, merged_weight) of shapes (N, out) and (out, in), like the Linear layer's output and weight"
LORA_ZERO_B = ("B = 0 leaves the pretrained layer unchanged: y = x W^T + b and merged_weight = W (why LoRA starts "
               "with B = 0)")
LORA_SCALE = "the low-rank update is scaled by alpha / r: y - (x W^T + b) = (alpha / r) x A^T B^T"
LORA_MERGE = "merging keeps the function: x merged_weight^T + b equals your y"


def _lora_of(learner, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    output = call_learner(learner, drawn, name)
    expect_close(name, drawn, lora_forward_and_merge(**drawn), output, None, None, names=LORA_FIELDS)
    return output[0], output[1]


def _update_scaled_by_alpha_over_r(learner, drawn: dict) -> None:
    y, _ = _lora_of(learner, drawn, LORA_SCALE)
    expect_close(LORA_SCALE, drawn, {"y": lora_forward_and_merge(**drawn)[0]}, {"y": y}, 1e-9, 1e-9)


def _merge_keeps_the_function(learner, drawn: dict) -> None:
    y, merged = _lora_of(learner, drawn, LORA_MERGE)
    through_merged = drawn["x"] @ merged.T + drawn["b"]
    if not np.allclose(through_merged, y, rtol=1e-9, atol=1e-9):
        raise PropertyFailed(LORA_MERGE, drawn, {"x merged_weight^T + b": y}, {"x merged_weight^T + b": through_merged},
                             "x A^T B^T = x (B A)^T, so the weight to add is (alpha / r) B A, with the same scale as "
                             "in the forward pass: the merged layer must cost what the base layer did and compute "
                             "what the adapter did")


# ---- dpo_loss --------------------------------------------------------------------------------------------


def dpo_loss(policy_chosen: np.ndarray, policy_rejected: np.ndarray, reference_chosen: np.ndarray,
             reference_rejected: np.ndarray, beta: float) -> float:
    """The DPO loss of B preference pairs from four (B,) float64 arrays of summed response log-probabilities.

    policy_chosen[i] = log pi(y_w | x) under the policy being trained, reference_chosen[i] the same under the frozen
    reference model; likewise for the rejected response y_l. With beta > 0 and the margin
    m = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)), the loss is the mean
    over pairs of -log sigmoid(m). It must stay finite and exact for margins of thousands. Returns a float.
    """
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return float(np.mean(np.logaddexp(0.0, -margin)))  # -log sigmoid(m) = log(1 + e^-m), finite for every m


@st.composite
def dpo_inputs(draw, lowest: float = -50.0, step: float = 0.25, policy_is_reference: bool = False) -> dict:
    """B = 1 to 4 pairs of log-probabilities (multiples of `step`) in [lowest, 0] and beta in 0.01..1."""
    log_probs = grid_arrays(draw(st.integers(1, 4)), lowest, 0.0, step)
    chosen, rejected = draw(log_probs), draw(log_probs)
    reference = (chosen.copy(), rejected.copy()) if policy_is_reference else (draw(log_probs), draw(log_probs))
    return {"policy_chosen": chosen, "policy_rejected": rejected, "reference_chosen": reference[0],
            "reference_rejected": reference[1], "beta": draw(grid_numbers(0.01, 1.0, 0.01))}


def _ln_2(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta) -> float:
    """The policy equals the reference: every margin is 0 and -log sigmoid(0) = ln 2."""
    return math.log(2.0)


DPO_AT_REFERENCE = ("at the start the policy IS the reference: every log-ratio is 0 and the loss is ln 2 (the "
                    "reference terms enter with a minus sign)")
DPO_BETA = "beta multiplies the whole margin: loss = mean(-log sigmoid(beta * margin))"
DPO_LARGE = "stays finite and exact for large margins (log-probabilities down to -1e4)"

# ---- transe_scores_and_loss ------------------------------------------------------------------------------


def transe_scores_and_loss(heads: np.ndarray, relations: np.ndarray, tails: np.ndarray,
                           corrupted_heads: np.ndarray, corrupted_tails: np.ndarray, margin: float,
                           norm: int) -> tuple[np.ndarray, np.ndarray, float]:
    """TransE's scores of N true triples and of their corruptions, and the margin ranking loss that trains it.

    heads, relations, tails (N, d) float64 are the embeddings of the true triples (h, r, t); corrupted_heads and
    corrupted_tails (N, d) are the same triples with the head or the tail swapped for another entity (the relation
    is kept). score(h, r, t) = -||h + r - t||, with the L1 norm (norm = 1) or the L2 norm (norm = 2): 0 for a
    perfect translation h + r = t, lower the further off. margin > 0. Returns (true_scores (N,),
    corrupted_scores (N,), loss) with loss = the mean over N of max(0, margin - true_score + corrupted_score).
    """
    def score(h, t):
        return -np.linalg.norm(h + relations - t, ord=norm, axis=-1)

    true_scores, corrupted_scores = score(heads, tails), score(corrupted_heads, corrupted_tails)
    return true_scores, corrupted_scores, float(np.mean(np.maximum(0.0, margin - true_scores + corrupted_scores)))


@st.composite
def transe_inputs(draw, exact_translations: bool = False) -> dict:
    """N 1 to 3 triples of dimension 1 to 3, entries multiples of 0.5 in +-2, margin 0.25..4, norm 1 or 2; with
    `exact_translations` every true tail is its head plus its relation."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    heads, relations = draw(grid_arrays(shape, -2, 2)), draw(grid_arrays(shape, -2, 2))
    return {"heads": heads, "relations": relations,
            "tails": heads + relations if exact_translations else draw(grid_arrays(shape, -2, 2)),
            "corrupted_heads": draw(grid_arrays(shape, -2, 2)), "corrupted_tails": draw(grid_arrays(shape, -2, 2)),
            "margin": draw(grid_numbers(0.25, 4.0, 0.25)), "norm": draw(st.sampled_from([1, 2]))}


def _shift_every_entity(drawn: dict) -> tuple[dict, dict]:
    """The inputs, and the same with one vector (the first head) added to every entity embedding."""
    shift = drawn["heads"][:1]
    entities = ("heads", "tails", "corrupted_heads", "corrupted_tails")
    return drawn, {**drawn, **{name: drawn[name] + shift for name in entities}}


TRANSE_FIELDS = ("true_scores", "corrupted_scores", "loss")
TRANSE_SHAPES = "returns (true_scores, corrupted_scores, loss): two (N,) arrays and a float"
TRANSE_PERFECT = "an exact translation t = h + r scores 0, the best possible score"
TRANSE_INVARIANT = ("translation invariance: adding one vector to every entity embedding changes no score (the score "
                    "sees only h - t)")
TRANSE_NORM = "score = -||h + r - t||: the L1 norm sums |.|, the L2 norm is the Euclidean length (a square root)"
TRANSE_HINGE = ("the margin loss is mean(max(0, margin - true_score + corrupted_score)): a triple that beats its "
                "corruption by more than the margin adds 0, not a negative amount")


def _transe_part_matches(name: str, part: slice):
    """A verify function: the learner's outputs named by `part` equal the reference's."""
    def verify(learner, drawn: dict) -> None:
        received, expected = call_learner(learner, drawn, name), transe_scores_and_loss(**drawn)
        expect_close(name, drawn, expected, received, None, None, names=TRANSE_FIELDS)
        expect_close(name, drawn, dict(zip(TRANSE_FIELDS[part], expected[part])),
                     dict(zip(TRANSE_FIELDS[part], received[part])), 1e-9, 1e-9)

    return verify


def _perfect_translation_scores_zero(learner, drawn: dict) -> None:
    received = call_learner(learner, drawn, TRANSE_PERFECT)
    expect_close(TRANSE_PERFECT, drawn, transe_scores_and_loss(**drawn), received, None, None, names=TRANSE_FIELDS)
    if not np.allclose(received[0], 0.0, atol=1e-9):
        raise PropertyFailed(TRANSE_PERFECT, drawn, {"true_scores": np.zeros_like(received[0])},
                             {"true_scores": received[0]},
                             "TransE wants h + r = t for a true fact: the relation is a translation added to the "
                             "head, so the score is -||h + r - t|| (a common slip is h - r - t)")


# ---- reservoir_sample ------------------------------------------------------------------------------------


def reservoir_sample(stream, capacity: int, rng: np.random.Generator) -> list:
    """A uniform random sample of `capacity` items from a stream of unknown length, in one pass (Algorithm R).

    stream is an iterable that can be read once and has no len(); capacity >= 1; rng (a np.random.Generator) is the
    only source of randomness. Keep at most `capacity` items in memory. Every item of a stream of n items must end
    up in the sample with the same probability, capacity / n (all of them when n <= capacity). Returns the
    sample as a list.
    """
    sample = []
    for seen, item in enumerate(stream, start=1):
        if len(sample) < capacity:
            sample.append(item)
            continue
        slot = int(rng.integers(seen))  # uniform in 0..seen-1: below capacity with probability capacity / seen
        if slot < capacity:
            sample[slot] = item
    return sample


class OnePassStream:
    """The items 0, 1, ..., n - 1, readable once and without len(): a stream whose length is not known ahead."""

    def __init__(self, length: int):
        self._length, self._read = length, False

    def __iter__(self):
        if self._read:
            raise RuntimeError("this stream has been read already; a stream can be read once only, so keep what you "
                               "need while you pass over it")
        self._read = True
        return iter(range(self._length))

    def __repr__(self) -> str:
        return f"a one-pass stream of the {self._length} items 0..{self._length - 1}"


RESERVOIR_RUNS = 1000  # runs per drawn (n, capacity): enough to see a bias of a few percent in well under a second


@st.composite
def reservoir_inputs(draw, longer_than_capacity: bool = False) -> dict:
    """capacity 1 to 4, a stream of 0 to 12 items (capacity + 1 to capacity + 8 with `longer_than_capacity`) and
    the seed of the generator."""
    capacity = draw(st.integers(1, 4))
    length = draw(st.integers(capacity + 1, capacity + 8) if longer_than_capacity else st.integers(0, 12))
    return {"length": length, "capacity": capacity, "seed": draw(st.integers(0, 2**16))}


def _arguments(drawn: dict, rng: np.random.Generator) -> dict:
    return {"stream": OnePassStream(drawn["length"]), "capacity": drawn["capacity"], "rng": rng}


def _shown(drawn: dict, runs: int = 1) -> dict:
    """The arguments as a failure message shows them."""
    shown = {"stream": OnePassStream(drawn["length"]), "capacity": drawn["capacity"],
             "rng": f"np.random.default_rng({drawn['seed']})"}
    if runs > 1:
        shown["rng"] += f", one generator for all {runs} runs"
    return shown


RESERVOIR_SIZE = ("keeps min(capacity, n) distinct items of the stream: all of them when n <= capacity, never more "
                  "than capacity")
RESERVOIR_UNIFORM = (f"every item is kept with the same probability capacity / n (chi-square test over "
                     f"{RESERVOIR_RUNS} runs)")


def _sample_of(learner, drawn: dict, rng: np.random.Generator, shown: dict, name: str) -> list[int]:
    """One run of the learner's sampler: a list of min(capacity, n) distinct items of the stream, or a failure."""
    received = call_learner(learner, _arguments(drawn, rng), name)
    size = min(drawn["capacity"], drawn["length"])
    try:
        sample = [int(item) for item in received]
    except (TypeError, ValueError):
        raise PropertyFailed(name, shown, "a list of items of the stream", received,
                             "return the sample itself, a list of the items you kept") from None
    if len(sample) != size or len(set(sample)) != size or not set(sample) <= set(range(drawn["length"])):
        raise PropertyFailed(RESERVOIR_SIZE, shown, f"{size} distinct items of 0..{drawn['length'] - 1}", sample,
                             "fill the sample with the first capacity items, then let a new item only REPLACE one; "
                             "an item is in the sample at most once")
    return sample


def _keeps_the_right_number(learner, drawn: dict) -> None:
    _sample_of(learner, drawn, np.random.default_rng(drawn["seed"]), _shown(drawn), RESERVOIR_SIZE)


def reservoir_chi_square(counts: np.ndarray, runs: int, capacity: int) -> tuple[float, float]:
    """(statistic, bar) of a chi-square test that every item was kept in runs * capacity / n runs.

    Each count is binomial(runs, p = capacity / n); the counts add up to runs * capacity, which takes away one
    degree of freedom and scales the sum of squared standard scores by n / (n - 1). The bar is the mean of
    chi-square(n - 1) plus 6 standard deviations plus 10: a correct sampler essentially never reaches it.
    """
    n = len(counts)
    p = capacity / n
    statistic = (n - 1) / n * float((((counts - runs * p) ** 2) / (runs * p * (1 - p))).sum())
    return statistic, (n - 1) + 6 * math.sqrt(2 * (n - 1)) + 10


def _keeps_every_item_equally_often(learner, drawn: dict) -> None:
    shown, rng = _shown(drawn, RESERVOIR_RUNS), np.random.default_rng(drawn["seed"])
    counts = np.zeros(drawn["length"])
    for _ in range(RESERVOIR_RUNS):
        counts[_sample_of(learner, drawn, rng, shown, RESERVOIR_UNIFORM)] += 1
    statistic, bar = reservoir_chi_square(counts, RESERVOIR_RUNS, drawn["capacity"])
    if not statistic < bar:
        p = drawn["capacity"] / drawn["length"]
        raise PropertyFailed(RESERVOIR_UNIFORM, shown, {"P(kept) of every item": round(p, 4)},
                             {"P(kept) of items 0..n-1": np.round(counts / RESERVOIR_RUNS, 3)},
                             f"chi-square {statistic:.1f} > {bar:.1f}. Item number n (counting from 1) must enter "
                             "with probability capacity / n, into a uniformly random slot: draw j uniform in "
                             "0..n-1 and replace slot j if j < capacity. Replacing at every item favours the last "
                             "ones, keeping the first capacity items ignores the rest, and a count that is off by "
                             "one tilts the odds")


# ---- concat_mlp_fusion -----------------------------------------------------------------------------------


def concat_mlp_fusion(text: np.ndarray, image: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray,
                      b2: np.ndarray) -> np.ndarray:
    """Fuse a text embedding and an image embedding, then classify: concatenate, a hidden ReLU layer, logits.

    text (B, dt) and image (B, di) are float64 embeddings from two encoders; W1 (h, dt + di), b1 (h,), W2 (C, h),
    b2 (C,) are two Linear layers (y = x W^T + b). Returns the logits (B, C) = relu([text, image] W1^T + b1) W2^T
    + b2, where [text, image] is the (B, dt + di) concatenation.
    """
    hidden = np.maximum(np.concatenate([text, image], axis=1) @ W1.T + b1, 0.0)
    return hidden @ W2.T + b2


@st.composite
def fusion_inputs(draw, pairs: bool = False) -> dict:
    """B 1 to 3 examples, dt and di 1 to 2, h 1 to 3, C 1 or 2, entries multiples of 0.5 in +-2. With `pairs`, one
    example as two texts t0 = 0, t1 and two images i0 = 0, i1 (for the interaction contrast, which is 0 for an
    additive model whatever the four inputs are)."""
    batch = 1 if pairs else draw(st.integers(1, 3))
    text_dim, image_dim = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    hidden, classes = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    texts, images = grid_arrays((batch, text_dim), -2, 2), grid_arrays((batch, image_dim), -2, 2)
    modalities = ({"t0": np.zeros((1, text_dim)), "t1": draw(texts), "i0": np.zeros((1, image_dim)),
                   "i1": draw(images)} if pairs else {"text": draw(texts), "image": draw(images)})
    return {**modalities, "W1": draw(grid_arrays((hidden, text_dim + image_dim), -2, 2)),
            "b1": draw(grid_arrays(hidden, -2, 2)), "W2": draw(grid_arrays((classes, hidden), -2, 2)),
            "b2": draw(grid_arrays(classes, -2, 2))}


def interaction_contrast(fusion, drawn: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(contrast, the four logits) of `fusion`: f(t1, i1) - f(t1, i0) - f(t0, i1) + f(t0, i0), zero for any f of the
    form g(text) + k(image)."""
    weights = {key: drawn[key] for key in ("W1", "b1", "W2", "b2")}
    logits = [call_learner(fusion, {"text": drawn[t], "image": drawn[i], **weights}, name)
              for t, i in (("t1", "i1"), ("t1", "i0"), ("t0", "i1"), ("t0", "i0"))]
    for output in logits:
        expect_close(name, drawn, concat_mlp_fusion(drawn["t0"], drawn["i0"], **weights), output, None, None)
    return logits[0] - logits[1] - logits[2] + logits[3], np.stack(logits)


FUSION_SHAPES = "returns the logits, a (B, C) float64 array"
FUSION_INTERACTS = ("the modalities interact: the interaction contrast f(t1, i1) - f(t1, i0) - f(t0, i1) + f(t0, i0) "
                    "is nonzero where the reference's is (it is 0 for every additive model, which therefore cannot "
                    "fit XOR, M51)")
FUSION_MATCHES = "matches relu([text, image] W1^T + b1) W2^T + b2"


def _modalities_interact(learner, drawn: dict) -> None:
    received, logits = interaction_contrast(learner, drawn, FUSION_INTERACTS)
    expected, _ = interaction_contrast(concat_mlp_fusion, drawn, FUSION_INTERACTS)
    if np.abs(expected).max() > 1e-6 and np.abs(received).max() <= 1e-9 * (1 + np.abs(logits).max()):
        raise PropertyFailed(FUSION_INTERACTS, drawn, {"contrast": expected}, {"contrast": received},
                             "your logits are g(text) + k(image): linear layers after a concatenation split into a "
                             "text part plus an image part, and so does a ReLU applied to each modality before they "
                             "meet. Put the ReLU after the first Linear layer over the concatenation, where each "
                             "hidden unit sees both modalities")


# ---- the exercises ---------------------------------------------------------------------------------------

MLM_MASK = Exercise(
    name="mlm_mask",
    title="Masked-LM corruption: select 15%, then 80/10/10, and score only the selected positions (Q26, M47)",
    statement=(
        "BERT pretrains on raw text: the labels come from the text itself. Select each non-padding position with\n"
        "probability 0.15; a selected position becomes [MASK] 80% of the time, a random token 10% of the time, and\n"
        "keeps its token the other 10%. The loss covers the selected positions only, against the token that was\n"
        "there. Here the randomness is passed in: a position is selected when it is not padding and\n"
        "select_u < 0.15; then action_u < 0.8 gives [MASK] (mask_id), 0.8 <= action_u < 0.9 gives random_ids at that\n"
        "position, anything else keeps the token. Return (inputs, targets) as int64 arrays of ids' shape, with\n"
        "targets = the original id at selected positions and -100 (the ignore index) everywhere else."
    ),
    reference=mlm_mask,
    hints=(
        "Build one bool array `selected` first: not padding AND select_u below the rate. Everything else follows "
        "from it and from action_u.",
        "np.where(condition, a, b) picks per position. The random branch is action_u in [0.8, 0.9); the targets are "
        "ids where selected, -100 elsewhere, including the 10% that kept their token (the model is scored there too).",
        "Selected positions: not padding and select_u under 0.15. Among them, action_u under 0.8 becomes mask_id, "
        "action_u in [0.8, 0.9) becomes the random id, the rest keep their id (np.where, twice). The targets are the "
        "ids at selected positions and -100 everywhere else.",
    ),
    checks=(
        Check(MLM_SHAPES, mlm_inputs(), _returns_two_id_arrays),
        Check(MLM_TARGETS, mlm_inputs(with_padding=False), _targets_only_where_selected),
        Check(MLM_PADDING, mlm_inputs(), _padding_never_selected),
        Check(MLM_SPLIT, mlm_inputs(), _eighty_ten_ten),
    ),
)

LORA_FORWARD_AND_MERGE = Exercise(
    name="lora_forward_and_merge",
    title="The LoRA forward pass, and merging the adapter into the weight (Q27)",
    statement=(
        "LoRA freezes a pretrained weight W (out, in) and learns a low-rank change to it: two thin matrices\n"
        "A (r, in) and B (out, r), scaled by alpha / r. The adapted layer computes\n"
        "  y = x W^T + b + (alpha / r) x A^T B^T\n"
        "and after training the update can be merged into one ordinary weight, W + (alpha / r) B A, so inference\n"
        "costs what the base layer did. Given float64 x (N, in), W, b (out,), A, B and alpha > 0, return\n"
        "(y, merged_weight). The rank r is A.shape[0]. Tolerance: rtol = atol = 1e-9."
    ),
    reference=lora_forward_and_merge,
    hints=(
        "Compute the update through the thin matrices: (x A^T) is (N, r), then times B^T gives (N, out). Never "
        "build an (out, in) matrix for the forward pass; that is what the merge is for.",
        "x A^T B^T = x (B A)^T, so the weight that computes the same function is W + scale * (B @ A), shape (out, in). "
        "The scale alpha / r appears in both, so that changing r does not change the update's size.",
        "scale = alpha / r, with r the number of rows of A. The output is the frozen layer's output plus scale times "
        "x through A's transpose and then B's transpose. The merged weight is W plus scale times the product B A.",
    ),
    checks=(
        has_reference_shapes(lora_forward_and_merge, lora_inputs(), LORA_SHAPES, names=LORA_FIELDS),
        matches_reference(lora_forward_and_merge, lora_inputs(zero_B=True), rtol=1e-9, atol=1e-9, name=LORA_ZERO_B,
                          names=LORA_FIELDS),
        Check(LORA_SCALE, lora_inputs(), _update_scaled_by_alpha_over_r),
        Check(LORA_MERGE, lora_inputs(), _merge_keeps_the_function),
        matches_reference(lora_forward_and_merge, lora_inputs(), rtol=1e-9, atol=1e-9, names=LORA_FIELDS),
    ),
)

DPO_LOSS = Exercise(
    name="dpo_loss",
    title="The DPO loss from four sequence log-probabilities (Q42)",
    statement=(
        "Direct Preference Optimisation trains a policy on pairs (chosen y_w, rejected y_l) without a reward model.\n"
        "Each response's implicit reward is beta * (log pi(y | x) - log pi_ref(y | x)), how much more likely the\n"
        "policy makes it than the frozen reference model does, and the loss asks the chosen reward to beat the\n"
        "rejected one:\n"
        "  loss = mean over pairs of -log sigmoid(beta * ((pc - rc) - (pr - rr)))\n"
        "for the policy's (pc, pr) and the reference's (rc, rr) summed log-probabilities of the chosen and the\n"
        "rejected response, four (B,) float64 arrays. Return a float. Log-probabilities of long responses reach\n"
        "-1e4, so the loss must stay finite for margins that large. Tolerance: rtol = 1e-9."
    ),
    reference=dpo_loss,
    hints=(
        "Two log-ratios, chosen and rejected, each policy minus reference; the margin is their difference times "
        "beta. At the start the policy is the reference, so the margin is 0 and the loss is -log(1/2) = ln 2.",
        "-log sigmoid(m) = log(1 + e^-m). For m = -1e4, e^-m overflows; np.logaddexp(0, -m) computes log(e^0 + e^-m) "
        "without ever forming e^-m.",
        "The margin is beta times (chosen log-ratio minus rejected log-ratio), each log-ratio being policy minus "
        "reference. The loss is the mean over pairs of log(1 + e^-margin), computed as np.logaddexp of 0 and minus "
        "the margin.",
    ),
    checks=(
        has_reference_shapes(dpo_loss, dpo_inputs(), "returns one float"),
        matches_reference(_ln_2, dpo_inputs(policy_is_reference=True), rtol=1e-9, atol=1e-12,
                          name=DPO_AT_REFERENCE),
        matches_reference(dpo_loss, dpo_inputs(), rtol=1e-9, atol=1e-12, name=DPO_BETA),
        matches_reference(dpo_loss, dpo_inputs(lowest=-1e4, step=250.0), rtol=1e-9, atol=1e-12, name=DPO_LARGE),
    ),
)

TRANSE_SCORES_AND_LOSS = Exercise(
    name="transe_scores_and_loss",
    title="TransE: the translation score -||h + r - t|| and its margin ranking loss (Q28)",
    statement=(
        "TransE embeds a knowledge graph: every entity and every relation is a vector, and a true fact\n"
        "(head, relation, tail) should be a translation, h + r = t. Its score is -||h + r - t|| (L1 or L2 norm):\n"
        "0 for a perfect translation, lower the further off. It trains with a margin ranking loss: each true triple\n"
        "must score at least `margin` above a corrupted copy of it (head or tail swapped for another entity):\n"
        "  loss = mean over the N triples of max(0, margin - true_score + corrupted_score)\n"
        "Given the (N, d) float64 embeddings of the true triples and of the corrupted heads and tails (the relation\n"
        "is the same), a margin and norm 1 or 2, return (true_scores, corrupted_scores, loss). Tolerance: 1e-9."
    ),
    reference=transe_scores_and_loss,
    hints=(
        "One score function serves both kinds of triple: the difference h + r - t along the last axis, its norm, "
        "and a minus sign so that higher means more plausible.",
        "np.linalg.norm(v, ord=1, axis=-1) sums |v|, ord=2 is the Euclidean length. Without max(0, .), a triple that "
        "already wins by far lowers the loss further, and the easiest way to win is to push embeddings apart.",
        "Score a pair of entities as minus the norm (of order `norm`, over the last axis) of head + relation - tail, "
        "with the same relations for the true and the corrupted pairs. The loss is the mean over N of the hinge "
        "max(0, margin - true score + corrupted score), as a float.",
    ),
    checks=(
        has_reference_shapes(transe_scores_and_loss, transe_inputs(), TRANSE_SHAPES, names=TRANSE_FIELDS),
        Check(TRANSE_PERFECT, transe_inputs(exact_translations=True), _perfect_translation_scores_zero),
        metamorphic(TRANSE_INVARIANT, transe_inputs(), transe_scores_and_loss, _shift_every_entity,
                    lambda output: output, rtol=1e-9, atol=1e-9),
        Check(TRANSE_NORM, transe_inputs(), _transe_part_matches(TRANSE_NORM, slice(0, 2))),
        Check(TRANSE_HINGE, transe_inputs(), _transe_part_matches(TRANSE_HINGE, slice(2, 3))),
    ),
)

RESERVOIR_SAMPLE = Exercise(
    name="reservoir_sample",
    title="Reservoir sampling: a uniform sample of a stream of unknown length, in one pass (Q29)",
    statement=(
        "A replay buffer for continual learning must hold a fair sample of everything seen so far, in fixed memory,\n"
        "while the stream goes on. Algorithm R does it in one pass: keep the first `capacity` items; after that,\n"
        "item number n (counting from 1) enters with probability capacity / n and replaces a uniformly random one\n"
        "of the kept items. By induction every item seen so far is kept with probability capacity / n. The stream\n"
        "can be iterated once and has no len(); rng (a np.random.Generator) is your only source of randomness.\n"
        "Return the sample as a list. The grader runs your function many times with one generator and tests with a\n"
        "chi-square test that every item is kept equally often."
    ),
    reference=reservoir_sample,
    hints=(
        "Count the items as they come (enumerate(stream, start=1)). While the sample is not full, append. Once it "
        "is full, a new item must sometimes be skipped: otherwise the last items crowd out the early ones.",
        "One draw does both jobs: j = rng.integers(n) is uniform in 0..n-1, so j < capacity happens with probability "
        "capacity / n, and then j is a uniformly random slot to replace. rng.integers(n - 1) is off by one.",
        "For the n-th item (counting from 1): while the sample is short, append it; once it is full, draw j uniform "
        "in 0..n-1 with rng.integers(n), and if j is below the capacity, the item replaces slot j.",
    ),
    checks=(
        Check(RESERVOIR_SIZE, reservoir_inputs(), _keeps_the_right_number),
        Check(RESERVOIR_UNIFORM, reservoir_inputs(longer_than_capacity=True), _keeps_every_item_equally_often,
              max_examples=8),
    ),
)

CONCAT_MLP_FUSION = Exercise(
    name="concat_mlp_fusion",
    title="Multimodal fusion that can learn XOR: concatenate, then a nonlinearity (Q31, M51)",
    statement=(
        "A label that is XOR(text has token A, image has a vertical bar) cannot be read from either modality alone,\n"
        "and no model of the form g(text) + k(image) can fit it: its interaction contrast\n"
        "  f(t1, i1) - f(t1, i0) - f(t0, i1) + f(t0, i0)\n"
        "is 0 for any weights, while XOR's labels have contrast 0 - 1 - 1 + 0 = -2. Late fusion (adding per-modality\n"
        "logits) and a concatenation followed by Linear layers only are both of that form. Write the fusion that is\n"
        "not: concatenate the text and image embeddings, apply a Linear layer and a ReLU, then a Linear layer to the\n"
        "class logits. Inputs are float64: text (B, dt), image (B, di), W1 (h, dt + di), b1 (h,), W2 (C, h),\n"
        "b2 (C,); a Linear layer computes x W^T + b. Return the logits (B, C). Tolerance: 1e-9."
    ),
    reference=concat_mlp_fusion,
    hints=(
        "np.concatenate([text, image], axis=1) joins the features of each example: (B, dt + di). The order matters: "
        "the first dt columns of W1 read the text.",
        "The ReLU must come after the modalities meet: a hidden unit relu(u . text + v . image + c) bends on a "
        "mixture of both. A ReLU on each embedding before concatenating, or none at all, leaves the logits "
        "g(text) + k(image).",
        "Concatenate text and image along the feature axis, apply the first linear layer (W1 transposed, plus b1) and "
        "a ReLU (np.maximum with 0), then the second linear layer (W2 transposed, plus b2).",
    ),
    checks=(
        has_reference_shapes(concat_mlp_fusion, fusion_inputs(), FUSION_SHAPES),
        Check(FUSION_INTERACTS, fusion_inputs(pairs=True), _modalities_interact),
        matches_reference(concat_mlp_fusion, fusion_inputs(), rtol=1e-9, atol=1e-9, name=FUSION_MATCHES),
    ),
)

EXERCISES = (MLM_MASK, LORA_FORWARD_AND_MERGE, DPO_LOSS, TRANSE_SCORES_AND_LOSS, RESERVOIR_SAMPLE, CONCAT_MLP_FUSION)
