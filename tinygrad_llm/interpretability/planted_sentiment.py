"""Sentences whose true explanation is known, because we planted it (Q32).

An attribution method claims "these words made the prediction". On real text nobody knows whether that is
true, so the claim cannot be checked. Here every sentence is built by a rule written in code:

    filler words + ONE sentiment keyword, sometimes preceded by a negator
    "the plot was great and long"          positive   evidence: "great"
    "the plot was not great and long"      negative   evidence: "not", "great"
    "a terrible film"                      negative   evidence: "terrible"
    "never terrible at all"                positive   evidence: "never", "terrible"

label = 1 (positive) when a positive keyword is NOT negated or a negative keyword IS negated, else 0; the
evidence is the keyword's position plus, when negated, the negator's. A negator never appears anywhere else,
and filler words carry no information, so an explanation that ranks filler words first is wrong, not "another
point of view". But the planted rule is not the only perfect one: every sentence has exactly one keyword, so
"positive unless a negative keyword, flipped by a negator" is just as accurate, and a model that learned it does
not need the keyword of a plain positive sentence (without it, the sentence is still positive). High accuracy
says the model reads the evidence of SOME perfect rule; which rule, and so which words an explanation of that
model should rank first, is measured (experiments/attribution_comparison.py: keyword_matters_by_kind).

keyword_precision_at_k scores an explanation against that evidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE_WORDS = ("good", "great", "excellent", "superb", "lovely")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "boring", "dull")
NEGATORS = ("not", "never")
FILLER_WORDS = ("the", "a", "film", "plot", "actors", "music", "was", "is", "and", "very", "quite", "story",
                "ending", "scenes", "long", "this", "it", "at", "all", "really")
VOCABULARY = POSITIVE_WORDS + NEGATIVE_WORDS + NEGATORS + FILLER_WORDS
CLASS_NAMES = ("negative", "positive")


@dataclass(frozen=True)
class PlantedSentence:
    words: tuple[str, ...]
    label: int  # 1 positive, 0 negative (CLASS_NAMES[label])
    evidence: tuple[int, ...]  # positions in `words` that decide the label: the keyword, and its negator if any

    @property
    def text(self) -> str:
        return " ".join(self.words)


def planted_sentences(count: int, seed: int = 0, min_words: int = 3, max_words: int = 10,
                      negation_rate: float = 0.3) -> list[PlantedSentence]:
    """`count` sentences of min_words..max_words words (one keyword each, negated with probability
    negation_rate); the same seed gives the same sentences."""
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"planted_sentences: count must be a non-negative integer, got {count!r}")
    if not 2 <= min_words <= max_words:
        raise ValueError(f"planted_sentences: need 2 <= min_words <= max_words (room for a negator and its keyword), "
                         f"got min_words={min_words}, max_words={max_words}")
    if not 0 <= negation_rate <= 1:
        raise ValueError(f"planted_sentences: negation_rate must be a probability in [0, 1], got {negation_rate}")
    rng = np.random.default_rng(seed)
    return [_one_sentence(rng, min_words, max_words, negation_rate) for _ in range(count)]


def _one_sentence(rng: np.random.Generator, min_words: int, max_words: int, negation_rate: float) -> PlantedSentence:
    words = [str(w) for w in rng.choice(FILLER_WORDS, size=int(rng.integers(min_words, max_words + 1)))]
    positive_keyword = bool(rng.random() < 0.5)
    negated = bool(rng.random() < negation_rate)
    keyword_at = int(rng.integers(1 if negated else 0, len(words)))
    words[keyword_at] = str(rng.choice(POSITIVE_WORDS if positive_keyword else NEGATIVE_WORDS))
    evidence = (keyword_at,)
    if negated:
        words[keyword_at - 1] = str(rng.choice(NEGATORS))
        evidence = (keyword_at - 1, keyword_at)
    return PlantedSentence(tuple(words), int(positive_keyword != negated), evidence)


def keyword_precision_at_k(word_attributions, evidence, k: int) -> float:
    """The share of the k words with the largest |attribution| that are planted evidence, out of the most it
    could be: hits / min(k, len(evidence), number of words), so a perfect explanation scores 1 even when a
    sentence has one evidence word and k = 2. Magnitude, not sign: a negator may push against the predicted
    class and still be what decides it."""
    scores = np.abs(np.asarray(word_attributions, dtype=np.float64))
    evidence = set(int(i) for i in evidence)
    if scores.ndim != 1 or not scores.size:
        raise ValueError(f"keyword_precision_at_k: expected one attribution per word (a non-empty 1-D array), "
                         f"got shape {scores.shape}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"keyword_precision_at_k: k must be a positive integer, got {k!r}")
    if not evidence or not evidence <= set(range(scores.size)):
        raise ValueError(f"keyword_precision_at_k: evidence positions {sorted(evidence)} must be a non-empty subset "
                         f"of the {scores.size} word positions")
    top = np.argsort(-scores, kind="stable")[:k]
    hits = sum(int(i) in evidence for i in top)
    return hits / min(k, len(evidence), scores.size)
