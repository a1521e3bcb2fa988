"""Exercises on evaluation (chapter 8): BLEU's clipped n-gram precision and brevity penalty, precision,
recall and F1 from a confusion matrix, and perplexity from log-probabilities under a padding mask.

Each reference below is the solution a learner sees on request; its def line and docstring are the starter code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .feedback import PropertyFailed, call_learner, expect_close
from .framework import Check, Exercise, has_reference_shapes, matches_reference
from .strategies import float_arrays


def count_ngrams(tokens: list, n: int) -> dict:
    """{n-gram tuple: how often it occurs in tokens}; empty when tokens has fewer than n tokens."""
    counts = {}
    for start in range(len(tokens) - n + 1):
        gram = tuple(tokens[start:start + n])
        counts[gram] = counts.get(gram, 0) + 1
    return counts


def modified_precision(references: list[list[int]], hypothesis: list[int], n: int) -> tuple[int, int]:
    """BLEU's clipped n-gram matches of `hypothesis` against `references` (a list of token lists), for order n.

    Returns (matches, count): count is the number of n-grams in the hypothesis (repeats included), matches
    credits each distinct hypothesis n-gram min(its count in the hypothesis, the most times any ONE
    reference contains it). The modified precision p_n is matches / count.
    """
    hypothesis_counts = count_ngrams(hypothesis, n)
    reference_counts = [count_ngrams(reference, n) for reference in references]
    matches = 0
    for gram, count in hypothesis_counts.items():
        matches += min(count, max(counts.get(gram, 0) for counts in reference_counts))
    return matches, sum(hypothesis_counts.values())


def brevity_penalty(hyp_length: int, ref_lengths: list[int]) -> float:
    """BLEU's brevity penalty for a hypothesis of hyp_length tokens and references of ref_lengths tokens.

    r is the reference length closest to hyp_length (on a tie, the shorter). Returns 1.0 when
    hyp_length >= r, 0.0 for an empty hypothesis, otherwise exp(1 - r / hyp_length). Always a float.
    """
    r = min(ref_lengths, key=lambda length: (abs(length - hyp_length), length))
    if hyp_length >= r:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return float(np.exp(1.0 - r / hyp_length))


def safe_divide(numerator, denominator) -> np.ndarray:
    """numerator / denominator elementwise, and 0.0 where the denominator is 0 (no nan, no warning)."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def scores_from_confusion_matrix(matrix: np.ndarray, average: str) -> tuple[float, float, float]:
    """(precision, recall, f1) from a confusion matrix, averaged over the classes.

    matrix (C, C) int: matrix[i, j] = examples of TRUE class i PREDICTED as class j. average is "macro"
    (compute each class's P, R and F1, then take plain means) or "micro" (add up TP, FP and FN over the
    classes first, then compute P, R and F1 once). A ratio with denominator 0 is 0.0. Returns 3 floats.
    """
    tp = np.diag(matrix)
    predicted = matrix.sum(axis=0)  # TP + FP of each class
    actual = matrix.sum(axis=1)  # TP + FN of each class
    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
    precision = safe_divide(tp, predicted)
    recall = safe_divide(tp, actual)
    f1 = safe_divide(2 * tp, predicted + actual)  # 2TP / (2TP + FP + FN), the harmonic mean of P and R
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def masked_perplexity(log2_probs: np.ndarray, mask: np.ndarray) -> float:
    """Perplexity of a padded batch: log2_probs (B, T) float64 holds log2 p(token | its past) at every position,
    mask (B, T) bool is True for real tokens and False for padding (whose log2_probs are meaningless).

    Returns the perplexity over all real tokens of the batch as a float.
    """
    bits = -log2_probs[mask]
    return float(2.0 ** bits.mean())


# ---- modified_precision -----------------------------------------------------------------------------------

tokens = st.lists(st.integers(0, 3), min_size=0, max_size=8)


@st.composite
def precision_inputs(draw, num_references: tuple[int, int] = (1, 3), repeats: bool = False) -> dict:
    """References and a hypothesis over a 4-token vocabulary (so n-grams repeat and overlap), n from 1 to 3.

    `repeats` builds the hypothesis by repeating a short phrase, and puts that phrase once or twice into each
    reference between random tokens: some n-gram then occurs more often in the hypothesis than in a reference,
    and in different numbers in different references.
    """
    if not repeats:
        references = [draw(tokens) for _ in range(draw(st.integers(*num_references)))]
        return {"references": references, "hypothesis": draw(tokens), "n": draw(st.integers(1, 3))}
    phrase = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    references = [draw(tokens) + phrase * draw(st.integers(1, 2)) + draw(tokens)
                  for _ in range(draw(st.integers(*num_references)))]
    return {"references": references, "hypothesis": phrase * draw(st.integers(2, 4)), "n": draw(st.integers(1, 3))}


COUNTS_EVERY_NGRAM = ("count is the number of n-grams in the hypothesis, len(hypothesis) - n + 1 with repeats "
                      "included (0 when it is shorter than n)")


def _counts_every_ngram(learner, drawn: dict) -> None:
    received = call_learner(learner, drawn, COUNTS_EVERY_NGRAM)
    expected = modified_precision(**drawn)
    expect_close(COUNTS_EVERY_NGRAM, drawn, expected, received, None, None, ("matches", "count"))
    expect_close(COUNTS_EVERY_NGRAM, drawn, {"count": expected[1]}, {"count": received[1]}, 0, 0)


# ---- brevity_penalty --------------------------------------------------------------------------------------

@st.composite
def brevity_inputs(draw, relation: str = "any", num_references: tuple[int, int] = (1, 1)) -> dict:
    """relation: "longer" (hyp_length >= every reference), "shorter" (1 <= hyp_length < the reference),
    "empty" (hyp_length 0), "tie" (two references equally far, one shorter and one longer) or "any"."""
    if relation == "tie":
        hyp_length, distance = draw(st.integers(2, 30)), draw(st.integers(1, 5))
        distance = min(distance, hyp_length - 1)
        return {"hyp_length": hyp_length, "ref_lengths": draw(st.permutations([hyp_length - distance,
                                                                               hyp_length + distance]))}
    ref_lengths = [draw(st.integers(1, 30)) for _ in range(draw(st.integers(*num_references)))]
    low, high = {"longer": (max(ref_lengths), 40), "shorter": (1, min(ref_lengths) - 1), "empty": (0, 0),
                 "any": (0, 40)}[relation]
    if low > high:
        ref_lengths, low, high = [r + 2 for r in ref_lengths], 1, min(ref_lengths) + 1
    return {"hyp_length": draw(st.integers(low, high)), "ref_lengths": ref_lengths}


# ---- scores_from_confusion_matrix -------------------------------------------------------------------------

@st.composite
def confusion_inputs(draw, average: str | None = None, every_class_seen: bool = False,
                     never_predicted: bool = False) -> dict:
    """A C x C count matrix (C from 2 to 4) and "macro" or "micro".

    every_class_seen makes every row and column sum positive (no 0 / 0); never_predicted empties one column.
    """
    size = draw(st.integers(2, 4))
    matrix = draw(hnp.arrays(np.int64, (size, size), elements=st.integers(0, 6)))
    if every_class_seen:
        matrix += np.eye(size, dtype=np.int64)
    if never_predicted:
        matrix[:, draw(st.integers(0, size - 1))] = 0
    if matrix.sum() == 0:
        matrix[0, 0] = 1
    return {"matrix": matrix, "average": average or draw(st.sampled_from(["macro", "micro"]))}


SCORE_NAMES = ("precision", "recall", "f1")
ROWS_ARE_TRUE = ("rows are the TRUE classes: recall = TP / row sum, precision = TP / column sum (macro, every class "
                 "seen)")
MACRO_F1 = ("macro F1 is the mean of the per-class F1s, not the harmonic mean of macro precision and macro recall")


def _compares(name: str, items: tuple[int, ...]):
    """A check that compares only the named items of the returned (precision, recall, f1)."""
    def verify(learner, drawn: dict) -> None:
        received = call_learner(learner, drawn, name)
        expected = scores_from_confusion_matrix(**drawn)
        expect_close(name, drawn, expected, received, None, None, SCORE_NAMES)
        expect_close(name, drawn, {SCORE_NAMES[i]: expected[i] for i in items},
                     {SCORE_NAMES[i]: received[i] for i in items}, 1e-12, 1e-12)
    return verify


# ---- masked_perplexity ------------------------------------------------------------------------------------

@st.composite
def perplexity_inputs(draw, rows: tuple[int, int] = (1, 3), every_row_real: bool = False) -> dict:
    """log2_probs (B, T) in [-8, -0.1], padding positions holding any value in [-8, 0], and a mask with at least
    one real token (each row at least one with every_row_real)."""
    batch, length = draw(st.integers(*rows)), draw(st.integers(1, 5))
    log2_probs = draw(float_arrays((batch, length), -8.0, -0.1))
    mask = draw(hnp.arrays(np.bool_, (batch, length)))
    first_real = [draw(st.integers(0, length - 1)) for _ in range(batch)]
    if every_row_real:
        mask[np.arange(batch), first_real] = True
    mask[0, first_real[0]] = True
    padding = draw(float_arrays((batch, length), -8.0, 0.0))
    return {"log2_probs": np.where(mask, log2_probs, padding), "mask": mask}


@st.composite
def uniform_inputs(draw, lengths: tuple[int, int] = (2, 6)) -> dict:
    """A model uniform over V tokens (log2 p = -log2 V at every position), all real, T tokens in one row."""
    vocab, length = draw(st.integers(2, 50)), draw(st.integers(*lengths))
    return {"log2_probs": np.full((1, length), -np.log2(vocab)), "mask": np.ones((1, length), dtype=bool)}


AT_LEAST_ONE = "PPL >= 1: the loss is MINUS the log-probability (a probability is at most 1)"


def _at_least_one(learner, drawn: dict) -> None:
    received = call_learner(learner, drawn, AT_LEAST_ONE)
    expect_close(AT_LEAST_ONE, drawn, masked_perplexity(**drawn), received, None, None)
    if not received >= 1.0:
        raise PropertyFailed(AT_LEAST_ONE, drawn, "a perplexity >= 1", received,
                             "every log2 p here is negative, so the mean loss -log2 p is positive and PPL > 1")


MODIFIED_PRECISION = Exercise(
    name="modified_precision",
    title="BLEU's modified (clipped) n-gram precision (Q17)",
    statement=(
        "BLEU's precision for order n counts how many of the hypothesis's n-grams appear in the references, but\n"
        "CLIPS each n-gram: it is credited at most as many times as the most any ONE reference contains it, so\n"
        "'the the the the' cannot score 4/4 against 'the cat'. Implement modified_precision(references,\n"
        "hypothesis, n): references is a list of token lists, hypothesis a token list (tokens are ints), n >= 1.\n"
        "Return (matches, count): count = number of n-grams in the hypothesis, repeats included (0 when it is\n"
        "shorter than n); matches = sum over the distinct hypothesis n-grams g of\n"
        "min(count of g in the hypothesis, max over references of the count of g in that reference).\n"
        "Example: references [[1, 2, 1]], hypothesis [1, 1, 1, 1], n 1 -> (2, 4). Both are exact integers."
    ),
    reference=modified_precision,
    helpers=(count_ngrams,),
    hints=(
        "Write a helper that counts n-grams: a dict from tuple(tokens[i:i + n]) to its count, for i in "
        "range(len(tokens) - n + 1). count is the sum of the hypothesis's counts.",
        "Clipping is per n-gram: min(hypothesis count, reference count). With several references take, per "
        "n-gram, the MAX count over the references (not their sum: every reference is a full translation).",
        "matches adds up, over the DISTINCT hypothesis n-grams, the smaller of the n-gram's hypothesis count and its "
        "largest count in any single reference (0 in a reference that lacks it).",
    ),
    checks=(
        has_reference_shapes(modified_precision, precision_inputs(), "returns (matches, count): two integers"),
        Check(COUNTS_EVERY_NGRAM, precision_inputs(), _counts_every_ngram),
        matches_reference(modified_precision, precision_inputs((1, 1), repeats=True), rtol=0, atol=0,
                          name="clips: a repeated hypothesis n-gram is credited at most as often as the reference "
                               "contains it (one reference)", names=("matches", "count")),
        matches_reference(modified_precision, precision_inputs((2, 3), repeats=True), rtol=0, atol=0,
                          name="with several references, clips by the MOST in any ONE reference (not the sum or "
                               "the first)", names=("matches", "count")),
    ),
)

BREVITY_PENALTY = Exercise(
    name="brevity_penalty",
    title="BLEU's brevity penalty with several references (Q17)",
    statement=(
        "Precision alone rewards a hypothesis that says little: one correct word has precision 1. BLEU\n"
        "multiplies by a brevity penalty. Implement brevity_penalty(hyp_length, ref_lengths): hyp_length is the\n"
        "hypothesis length c (>= 0), ref_lengths the lengths of its references (each >= 1). Let r be the\n"
        "reference length CLOSEST to c (on a tie, the shorter one), as nltk and sacrebleu do. Return 1.0 when\n"
        "c >= r, 0.0 when c == 0, otherwise exp(1 - r / c), as a float.\n"
        "Example: brevity_penalty(8, [10]) = exp(1 - 10/8) = 0.7788; brevity_penalty(8, [5, 12]) = 1.0."
    ),
    reference=brevity_penalty,
    hints=(
        "First pick r: the reference length nearest to c. min(ref_lengths, key=...) with a key that sorts by "
        "distance first and length second breaks ties towards the shorter reference.",
        "Only a SHORT hypothesis is penalised: a longer one is already punished by its precision. For c < r, "
        "r / c > 1, so 1 - r / c < 0 and the penalty is below 1. Test c == 0 before dividing.",
        "Once r is chosen: a hypothesis at least as long as r gets 1.0, an empty one gets 0.0 (checked before "
        "dividing), and any other gets e to the power (1 - r / c), converted to a float.",
    ),
    checks=(
        matches_reference(brevity_penalty, brevity_inputs("longer"), rtol=0, atol=0,
                          name="is 1.0 when the hypothesis is at least as long as the reference (a long hypothesis "
                               "is not penalised)"),
        matches_reference(brevity_penalty, brevity_inputs("shorter"), rtol=1e-12, atol=0,
                          name="a shorter hypothesis gets exp(1 - r / c) < 1 (r the reference length, c the "
                               "hypothesis length)"),
        matches_reference(brevity_penalty, brevity_inputs("empty"), rtol=0, atol=0,
                          name="an empty hypothesis gets 0.0 (no division by zero)"),
        matches_reference(brevity_penalty, brevity_inputs("any", (2, 4)), rtol=1e-12, atol=0,
                          name="with several references, r is the CLOSEST reference length to c"),
        matches_reference(brevity_penalty, brevity_inputs("tie"), rtol=1e-12, atol=0,
                          name="two references equally far from c: r is the SHORTER one (ties: the shorter)"),
    ),
)

SCORES_FROM_CONFUSION_MATRIX = Exercise(
    name="scores_from_confusion_matrix",
    title="Precision, recall and F1 from a confusion matrix: macro and micro averaging (Q17)",
    statement=(
        "matrix (C, C) holds counts: matrix[i, j] = examples of TRUE class i that were PREDICTED as class j.\n"
        "For class k: TP = matrix[k, k], FP = rest of column k, FN = rest of row k; precision = TP / (TP + FP),\n"
        "recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN) (the harmonic mean of the two).\n"
        "Implement scores_from_confusion_matrix(matrix, average) returning (precision, recall, f1) as floats:\n"
        "  average = \"macro\": each class's three scores, then plain means over the classes;\n"
        "  average = \"micro\": add TP, FP and FN over the classes first, then compute each score once.\n"
        "A ratio whose denominator is 0 (a class never predicted, or absent) counts as 0.0, never nan.\n"
        "Example: [[2, 1], [0, 3]] macro -> (0.875, 0.8333, 0.8286); micro -> (0.8333, 0.8333, 0.8333).\n"
        "Tolerance: 1e-12."
    ),
    reference=scores_from_confusion_matrix,
    helpers=(safe_divide,),
    hints=(
        "np.diag(matrix) gives every TP at once; the column sums are TP + FP (everything predicted as k), the "
        "row sums TP + FN (everything that really is k).",
        "Micro: sum TP, the column sums and the row sums over classes BEFORE dividing; for single-label data "
        "every error is one FP and one FN, so all three equal the accuracy. Macro F1 is the mean of the per-"
        "class F1s. Guard 0 / 0 with np.where(denominator > 0, ..., 0.0).",
        "Per class, precision is TP over the column sum, recall TP over the row sum, F1 twice TP over (column sum + "
        "row sum), each 0.0 where its denominator is 0. For micro, total the three counts over the classes first. "
        "Return the mean of each as a float.",
    ),
    checks=(
        has_reference_shapes(scores_from_confusion_matrix, confusion_inputs(),
                             "returns (precision, recall, f1): three floats", names=SCORE_NAMES),
        Check(ROWS_ARE_TRUE, confusion_inputs("macro", every_class_seen=True), _compares(ROWS_ARE_TRUE, (0, 1))),
        matches_reference(scores_from_confusion_matrix, confusion_inputs("micro"), rtol=1e-12, atol=1e-12,
                          name="micro averaging pools TP, FP and FN over classes: precision = recall = F1 = "
                               "accuracy (trace / total)", names=SCORE_NAMES),
        Check(MACRO_F1, confusion_inputs("macro", every_class_seen=True), _compares(MACRO_F1, (2,))),
        matches_reference(scores_from_confusion_matrix, confusion_inputs("macro", never_predicted=True),
                          rtol=1e-12, atol=1e-12, name="a class that is never predicted scores 0.0, never nan",
                          names=SCORE_NAMES),
        matches_reference(scores_from_confusion_matrix, confusion_inputs(), rtol=1e-12, atol=1e-12,
                          names=SCORE_NAMES),
    ),
)

MASKED_PERPLEXITY = Exercise(
    name="masked_perplexity",
    title="Perplexity of a padded batch from log2-probabilities (Q17)",
    statement=(
        "A scorer gives log2 p(token | its past) at every position of a padded batch: log2_probs (B, T) float64,\n"
        "and mask (B, T) bool is True for real tokens, False for padding (padding positions hold arbitrary\n"
        "values). Implement masked_perplexity(log2_probs, mask): the perplexity over ALL real tokens of the\n"
        "batch, i.e. 2 ** (mean over real tokens of -log2 p), which equals exp(mean NLL in nats). Rows have\n"
        "different numbers of real tokens (a row may be all padding); pool the tokens, do not average rows.\n"
        "Return a float. Example: log2_probs [[-1, -3, 0.5]], mask [[True, True, False]] -> 2 ** 2 = 4.0.\n"
        "Tolerance: rtol=1e-12."
    ),
    reference=masked_perplexity,
    hints=(
        "Select the real positions first: log2_probs[mask] is a 1-D array of the real tokens' log2 p, from every "
        "row together. The loss of one token is -log2 p bits.",
        "PPL is the base raised to the MEAN loss per token: the values are base-2 logs, so use 2 ** mean (exp "
        "would need the loss in nats, ln p = log2 p * ln 2). The sum over tokens would give V ** T for a uniform "
        "model instead of V.",
        "Negate the selected log2 probabilities to get bits, average them over ALL real tokens of the batch together "
        "(not row by row), raise 2 to that mean and convert to a float.",
    ),
    checks=(
        has_reference_shapes(masked_perplexity, perplexity_inputs(), "returns one float"),
        Check(AT_LEAST_ONE, perplexity_inputs(), _at_least_one),
        matches_reference(masked_perplexity, uniform_inputs((1, 1)), rtol=1e-12, atol=0,
                          name="one real token with log2 p = -b has PPL 2 ** b (the inputs are BASE-2 logs: use "
                               "2 **, not exp)"),
        matches_reference(masked_perplexity, uniform_inputs(), rtol=1e-12, atol=0,
                          name="a uniform model over V tokens has PPL = V for any number of tokens (the MEAN "
                               "loss, not the sum)"),
        matches_reference(masked_perplexity, perplexity_inputs(rows=(1, 1)), rtol=1e-12, atol=0,
                          name="padding (mask False) is left out, whatever value it holds (one row)"),
        matches_reference(masked_perplexity, perplexity_inputs(every_row_real=True), rtol=1e-12, atol=0,
                          name="pools the real tokens of all rows: a row with more tokens weighs more (not a mean "
                               "of per-row values)"),
        matches_reference(masked_perplexity, perplexity_inputs(), rtol=1e-12, atol=0),
    ),
)

EXERCISES = [MODIFIED_PRECISION, BREVITY_PENALTY, SCORES_FROM_CONFUSION_MATRIX, MASKED_PERPLEXITY]
