"""BLEU (Papineni et al., 2002): how many of a hypothesis's n-grams also appear in the reference translations.

    p_n  = clipped n-gram matches / hypothesis n-grams          (modified precision, n = 1..max_order)
    BP   = 1 if c > r else exp(1 - r / c)                        (brevity penalty; c hypothesis, r reference length)
    BLEU = BP * exp(sum_n w_n * log p_n)                         (weights w_n default 1 / max_order)

Clipping: a hypothesis n-gram counts at most as often as it appears in any ONE reference, so "the the the"
cannot score against "the cat". The reference length r is the CLOSEST reference length to c (ties go to the
shorter one), as in nltk and sacrebleu. Without the brevity penalty, a one-word hypothesis could have precision 1.

Argument order: REFERENCES FIRST, as in nltk: sentence_bleu(references, hypothesis) and
corpus_bleu(list_of_references, hypotheses). BLEU is not symmetric (precision divides by the hypothesis counts,
and the penalty punishes only a short hypothesis): swapping the two sentences changes the score, and a swapped call
whose types give it away (a list of tokens where a list of references belongs) raises a TypeError.

Inputs are TOKEN LISTS (words or integer ids), never raw strings: the score depends on the tokenization, so
it is the caller's choice. tokenize_13a reproduces sacrebleu's default '13a' tokenizer, for scores comparable
with published sacrebleu numbers.

Corpus BLEU adds the matches, n-gram counts and lengths of all sentences BEFORE dividing: it is not the mean of
sentence BLEUs. One short sentence with no 4-gram match sends its own sentence BLEU to 0; in a corpus it only
adds to the counts. For sentence BLEU, smoothing replaces a zero precision (see SMOOTHING).

Conventions where the oracles differ, stated: an order with no hypothesis n-gram at all (text shorter than n) has
0 matches out of 1, as in nltk; in a corpus the counts are the true sums over sentences, as in sacrebleu (nltk
floors each sentence's count at 1). With no unigram match BLEU is 0 whatever the smoothing (both oracles do this).
"""
from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

SMOOTHING = {
    "none": "no smoothing: any order with 0 matches makes BLEU 0 (nltk method0, sacrebleu 'none')",
    "floor": "a 0-match order gets precision smooth_value / count, default 0.1 (nltk method1 epsilon, "
             "sacrebleu 'floor')",
    "add-k": "orders n >= 2 get (matches + k) / (count + k), k = smooth_value, default 1 (nltk method2 is k = 1, "
             "sacrebleu 'add-k')",
    "exp": "the i-th order with 0 matches gets 1 / (2**i * count) (NIST mteval: nltk method3, sacrebleu 'exp', "
           "sacrebleu's default)",
    "exp-length": "the i-th order with 0 matches gets ln(c) / (K * 2**i * count) with c the hypothesis length and "
                  "K = smooth_value, default 5; 0 when c <= 1 (nltk method4, Chen and Cherry 2014)",
}
DEFAULT_SMOOTH_VALUE = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None, "exp-length": 5.0}


@dataclass(frozen=True)
class BLEUResult:
    """BLEU with everything it was computed from, so each step can be shown (float(result) is the score).

    matches[n-1] / counts[n-1] are the clipped n-gram matches and the hypothesis n-gram counts; precisions are
    the (smoothed) p_n that enter the geometric mean; score is in [0, 1] (sacrebleu reports 100 * score).
    """

    score: float
    precisions: tuple[float, ...]
    matches: tuple[int, ...]
    counts: tuple[int, ...]
    brevity_penalty: float
    hyp_length: int
    ref_length: int
    weights: tuple[float, ...]
    smoothing: str

    def __float__(self) -> float:
        return self.score

    @property
    def length_ratio(self) -> float:
        """c / r: below 1 the brevity penalty bites."""
        return self.hyp_length / self.ref_length if self.ref_length else math.inf

    def __str__(self) -> str:
        precisions = " / ".join(f"{p:.4f}" for p in self.precisions)
        return (f"BLEU = {self.score:.4f} (precisions {precisions}, BP = {self.brevity_penalty:.4f}, "
                f"ratio = {self.length_ratio:.3f}, hyp_len = {self.hyp_length}, ref_len = {self.ref_length}, "
                f"smoothing = {self.smoothing})")


# ================================================================================================ tokenization
# sacrebleu's '13a' (mteval-v13a) rules: every ASCII punctuation mark except ' , - . becomes its own token;
# a period or comma does too, unless it sits between digits (3.14, 1,000); a dash after a digit splits off.
_SEPARATE_SYMBOLS = re.compile(r"""([!"#$%&()*+/:;<=>?@\[\\\]^_`{|}~])""")
_PERIOD_COMMA_AFTER_NON_DIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NON_DIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def tokenize_13a(text: str) -> list[str]:
    """Split `text` into tokens the way sacrebleu's default tokenizer ('13a') does, so scores are comparable.

    Removes "<skipped>" and hyphenated line breaks, turns newlines into spaces, unescapes &quot; &amp; &lt;
    &gt;, splits off punctuation (rules above) and splits on whitespace. Case is kept.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize_13a: expected one string, got {type(text).__name__}")
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for escaped, symbol in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        text = text.replace(escaped, symbol)
    text = f" {text} "
    for pattern, replacement in ((_SEPARATE_SYMBOLS, r" \1 "), (_PERIOD_COMMA_AFTER_NON_DIGIT, r"\1 \2 "),
                                 (_PERIOD_COMMA_BEFORE_NON_DIGIT, r" \1 \2"), (_DASH_AFTER_DIGIT, r"\1 \2 ")):
        text = pattern.sub(replacement, text)
    return text.split()


# ================================================================================================ the pieces
def ngram_counts(tokens, n: int) -> Counter:
    """How often each n-gram (a tuple of n tokens) occurs in `tokens`; empty when len(tokens) < n."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def clipped_matches(references, hypothesis, n: int) -> tuple[int, int]:
    """(clipped matches, hypothesis n-gram count) for order n: the numerator and denominator of p_n.

    Each hypothesis n-gram is credited min(its count, the most times any single reference contains it).
    """
    hypothesis_counts = ngram_counts(hypothesis, n)
    most_in_one_reference = Counter()
    for reference in references:
        most_in_one_reference |= ngram_counts(reference, n)  # | keeps the maximum count per n-gram
    matches = sum(min(count, most_in_one_reference[gram]) for gram, count in hypothesis_counts.items())
    return matches, sum(hypothesis_counts.values())


def closest_reference_length(references, hyp_length: int) -> int:
    """The reference length nearest to the hypothesis length; on a tie, the shorter one (nltk and sacrebleu)."""
    return min((len(reference) for reference in references), key=lambda length: (abs(length - hyp_length), length))


def brevity_penalty(hyp_length: int, ref_length: int) -> float:
    """1 when the hypothesis is at least as long as the reference, exp(1 - r / c) when shorter, 0 when empty."""
    if hyp_length >= ref_length:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return math.exp(1.0 - ref_length / hyp_length)


def smoothed_precisions(matches, counts, hyp_length: int, smoothing: str = "none", smooth_value=None) -> list[float]:
    """p_n for each order from clipped matches and hypothesis n-gram counts, with the chosen smoothing (SMOOTHING).

    An order with no hypothesis n-gram at all counts as 0 matches out of 1.
    """
    value = DEFAULT_SMOOTH_VALUE[smoothing] if smooth_value is None else smooth_value
    precisions, zero_orders_so_far = [], 0
    for order, (matched, count) in enumerate(zip(matches, counts), start=1):
        count = max(count, 1)
        if smoothing == "add-k" and order > 1:
            precisions.append((matched + value) / (count + value))
        elif matched > 0 or smoothing in ("none", "add-k"):
            precisions.append(matched / count)
        elif smoothing == "floor":
            precisions.append(value / count)
        else:  # "exp" and "exp-length": 1/2, 1/4, ... for the successive orders without a match
            zero_orders_so_far += 1
            numerator = 1.0 if smoothing == "exp" else (math.log(hyp_length) / value if hyp_length > 1 else 0.0)
            precisions.append(numerator / (2 ** zero_orders_so_far * count))
    return precisions


# ================================================================================================ BLEU
def sentence_bleu(references, hypothesis, *, max_order: int | None = None, weights=None, smoothing: str = "none",
                  smooth_value: float | None = None) -> BLEUResult:
    """BLEU of one hypothesis (a token list) against its references (a LIST of token lists), references first.

    sentence_bleu([["the", "cat", "sat"]], ["the", "cat"]) -- one reference, wrapped in a list. A sentence
    shorter than max_order has no max_order-gram, so unsmoothed BLEU is 0: pass smoothing= (see SMOOTHING).
    """
    return _bleu([references], [hypothesis], max_order, weights, smoothing, smooth_value, "sentence_bleu")


def corpus_bleu(list_of_references, hypotheses, *, max_order: int | None = None, weights=None,
                smoothing: str = "none", smooth_value: float | None = None) -> BLEUResult:
    """Corpus BLEU: matches, counts and lengths summed over all sentences, then one BLEU (references first).

    list_of_references[i] is the list of reference token lists for hypotheses[i] (any number per sentence).
    max_order defaults to 4; weights are one per n-gram order (default uniform 1 / max_order), so giving
    weights sets the order.
    """
    return _bleu(list_of_references, hypotheses, max_order, weights, smoothing, smooth_value, "corpus_bleu")


def _bleu(list_of_references, hypotheses, max_order, weights, smoothing, smooth_value, caller: str) -> BLEUResult:
    weights = _check_weights(weights, max_order, caller)
    _check_smoothing(smoothing, smooth_value, caller)
    hypotheses, list_of_references = _check_corpus(list_of_references, hypotheses, caller)
    order = len(weights)
    matches, counts, hyp_length, ref_length = [0] * order, [0] * order, 0, 0
    for references, hypothesis in zip(list_of_references, hypotheses):
        for n in range(1, order + 1):
            matched, count = clipped_matches(references, hypothesis, n)
            matches[n - 1] += matched
            counts[n - 1] += count
        hyp_length += len(hypothesis)
        ref_length += closest_reference_length(references, len(hypothesis))

    penalty = brevity_penalty(hyp_length, ref_length)
    precisions = smoothed_precisions(matches, counts, hyp_length, smoothing, smooth_value)
    if matches[0] == 0 or any(p == 0 and w > 0 for p, w in zip(precisions, weights)):
        score = 0.0
    else:
        score = penalty * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, precisions) if w > 0))
    return BLEUResult(score=score, precisions=tuple(precisions), matches=tuple(matches), counts=tuple(counts),
                      brevity_penalty=penalty, hyp_length=hyp_length, ref_length=ref_length, weights=weights,
                      smoothing=smoothing)


# ================================================================================================ input checks
def _check_weights(weights, max_order, caller: str) -> tuple[float, ...]:
    if max_order is not None and (isinstance(max_order, bool) or not isinstance(max_order, numbers.Integral)
                                  or max_order < 1):
        raise ValueError(f"{caller}: max_order must be an integer >= 1 (the longest n-gram), got {max_order!r}")
    if weights is None:
        order = 4 if max_order is None else int(max_order)
        return (1.0 / order,) * order
    weights = tuple(float(w) for w in weights)
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError(f"{caller}: weights must be finite, >= 0, one per n-gram order and not all 0, got {weights}")
    if max_order is not None and max_order != len(weights):
        raise ValueError(f"{caller}: max_order={max_order} but {len(weights)} weights were given; give one or the "
                         "other (the weights set the order)")
    return weights


def _check_smoothing(smoothing, smooth_value, caller: str) -> None:
    if smoothing not in SMOOTHING:
        raise ValueError(f"{caller}: unknown smoothing {smoothing!r}; choose one of: "
                         + "; ".join(f"{name!r}: {what}" for name, what in SMOOTHING.items()))
    if smooth_value is not None:
        if DEFAULT_SMOOTH_VALUE[smoothing] is None:
            raise ValueError(f"{caller}: smoothing={smoothing!r} takes no smooth_value (got {smooth_value!r})")
        if isinstance(smooth_value, bool) or not isinstance(smooth_value, numbers.Real) or not smooth_value > 0:
            raise ValueError(f"{caller}: smooth_value must be a number > 0, got {smooth_value!r}")


def _token_list(tokens, what: str, caller: str, order_hint: str) -> list:
    """tokens as a list of hashable tokens (str or int), or a TypeError saying what was passed instead."""
    if isinstance(tokens, str):
        raise TypeError(f"{caller}: {what} must be a list of tokens, got the string {tokens[:40]!r}; tokenize it "
                        "first (text.split() or tinygrad_llm.metrics.tokenize_13a(text))")
    if isinstance(tokens, np.ndarray):
        tokens = tokens.tolist()
    if not isinstance(tokens, (list, tuple)):
        raise TypeError(f"{caller}: {what} must be a list of tokens, got {type(tokens).__name__}")
    for token in tokens:
        if not isinstance(token, (str, numbers.Integral)) or isinstance(token, bool):
            raise TypeError(f"{caller}: {what} must be a list of tokens (str or int), but it contains a "
                            f"{type(token).__name__} ({token!r:.60}). {order_hint}")
    return [int(token) if isinstance(token, numbers.Integral) else token for token in tokens]


def _check_corpus(list_of_references, hypotheses, caller: str):
    single = caller == "sentence_bleu"
    order_hint = ("The order is sentence_bleu(references, hypothesis), with references a list of token lists."
                  if single else "The order is corpus_bleu(list_of_references, hypotheses).")
    for name, value in (("list_of_references", list_of_references), ("hypotheses", hypotheses)):
        if isinstance(value, (str, np.ndarray)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{caller}: {name} must be a list, got {type(value).__name__}. {order_hint}")
    if not hypotheses:
        raise ValueError(f"{caller}: no hypotheses to score; pass at least one")
    if len(list_of_references) != len(hypotheses):
        raise ValueError(f"{caller}: {len(hypotheses)} hypotheses but {len(list_of_references)} reference lists; "
                         "give one list of references per hypothesis. " + order_hint)
    checked_hypotheses, checked_references, kinds = [], [], set()
    for index, (references, hypothesis) in enumerate(zip(list_of_references, hypotheses)):
        where = "" if single else f" #{index}"
        if isinstance(references, str) or not isinstance(references, (list, tuple)):
            raise TypeError(f"{caller}: the references{where} must be a list of token lists, got "
                            f"{type(references).__name__}. {order_hint}")
        if not references:
            raise ValueError(f"{caller}: hypothesis{where} has no reference; give at least one reference token list")
        if not all(isinstance(r, (list, tuple, np.ndarray)) for r in references):
            bad = next(r for r in references if not isinstance(r, (list, tuple, np.ndarray)))
            raise TypeError(f"{caller}: the references{where} must be a LIST of token lists, but one item is a "
                            f"{type(bad).__name__} ({bad!r:.60}): did you pass the hypothesis first, a single "
                            "reference (wrap it: [reference]) or untokenized text (tokenize each reference: "
                            f"text.split() or tokenize_13a(text))? {order_hint}")
        hypothesis = _token_list(hypothesis, f"the hypothesis{where}", caller, order_hint)
        references = [_token_list(r, f"a reference{where}", caller, order_hint) for r in references]
        kinds.update(type(token) for tokens in (hypothesis, *references) for token in tokens)
        checked_hypotheses.append(hypothesis)
        checked_references.append(references)
    if len(kinds) > 1:
        raise TypeError(f"{caller}: hypotheses and references mix token types {sorted(k.__name__ for k in kinds)}; "
                        "compare words with words or token ids with token ids (decode or encode one side)")
    return checked_hypotheses, checked_references
