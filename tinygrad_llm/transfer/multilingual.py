"""Many languages in one model (Q30): a second language that is a relabelling of the first.

Language B is language A with every word renamed: a bijection sends each token of A to a token of B, except a
chosen set of ANCHOR tokens (think digits and punctuation) that both languages write the same way. B has the
same grammar and the same meanings as A, and no word in common with it besides the anchors, so anything a model
knows about B's words it must have learned from B's text: nothing leaks through spelling.

The question (zero-shot cross-lingual transfer): pretrain one masked-LM encoder on A and B text together,
fine-tune it on labelled A only, and test it on B. It works only if pretraining put a B word and its A twin in
the same place in the shared space. Anchors are one way in (identical tokens in both languages tie the two
contexts together); the shared Transformer layers and positions are another, since the same weights must model
both languages. Without joint pretraining, B's embeddings are whatever initialisation left there.

The task in A has a planted ground truth (keyword sentiment): a review is positive exactly when a positive
adjective appears that is not directly negated ("not good" is not positive). The review generator gives each
review a hidden mood that colours its verbs and adjectives, so positive and negative words have different
company in text and a masked LM can tell them apart without labels.

The model (tinygrad_llm/experiments/multilingual.py): a TransformerEncoder base, pretrained with a MaskedLMHead
on mask_tokens' corruption, then fine-tuned with a SequenceClassificationHead that averages the hidden states.
"""
from __future__ import annotations

import numpy as np


DETERMINERS = ("the", "a", "this", "that")
NOUNS = ("film", "plot", "cast", "song", "meal", "room", "staff", "book")
COPULAS = ("was", "is", "seemed")
NEGATORS = ("not", "never")
INTENSIFIERS = ("very", "so", "really")
POSITIVE = ("good", "great", "superb", "lovely", "fun")
NEGATIVE = ("bad", "awful", "dull", "poor", "boring")
PRONOUNS = ("i", "we", "they")
POSITIVE_VERBS = ("loved", "enjoyed", "liked")
NEGATIVE_VERBS = ("hated", "regret", "avoided")
PUNCTUATION = (".", "!", ",", ";")
DIGITS = ("1", "2", "3", "4", "5")
# The candidates for anchors, most language-neutral first: num_anchors=k shares the first k. Sentiment words and
# negators are never anchors, so B's keywords are always new words.
ANCHOR_ORDER = PUNCTUATION + DIGITS + DETERMINERS + PRONOUNS + COPULAS
WORDS = (DETERMINERS + NOUNS + COPULAS + NEGATORS + INTENSIFIERS + POSITIVE + NEGATIVE + PRONOUNS + POSITIVE_VERBS
         + NEGATIVE_VERBS + PUNCTUATION + DIGITS)
PAD = 0  # id 0 pads every review to the window; the words of A are 1..len(WORDS)
WORD_ID = {word: i + 1 for i, word in enumerate(WORDS)}
A_VOCAB_SIZE = len(WORDS) + 1


class Relabelling:
    """A bijection from language A's token ids onto language B's, fixing `anchors` (and PAD) in place.

    A uses ids 0..vocab_size-1. Each of its n non-anchor tokens gets a fresh id in vocab_size..vocab_size+n-1,
    assigned in a random order (so B's ids say nothing about which A word they stand for). The joint vocabulary
    is 0..joint_size-1. `to_b` renames A text, `to_a` undoes it; anchors read the same in both.
    """

    def __init__(self, vocab_size: int, anchors=(), rng: np.random.Generator | int | None = None):
        anchors = sorted({int(a) for a in anchors} | {PAD})
        if any(not 0 <= a < vocab_size for a in anchors):
            raise ValueError(f"Relabelling: anchors must be ids of language A in 0..{vocab_size - 1}, got {anchors}")
        self.vocab_size, self.anchors = vocab_size, tuple(anchors)
        renamed = np.setdiff1d(np.arange(vocab_size), anchors)
        self.forward_map = np.arange(vocab_size)
        self.forward_map[renamed] = vocab_size + np.random.default_rng(rng).permutation(len(renamed))
        self.joint_size = vocab_size + len(renamed)
        self.inverse_map = np.full(self.joint_size, -1)
        self.inverse_map[self.forward_map] = np.arange(vocab_size)

    def to_b(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"Relabelling.to_b: ids must be language A's, in 0..{self.vocab_size - 1}; "
                             f"got values from {ids.min()} to {ids.max()}")
        return self.forward_map[ids]

    def to_a(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.joint_size or (self.inverse_map[ids] < 0).any()):
            raise ValueError(f"Relabelling.to_a: ids must be language B's (anchors {self.anchors} or "
                             f"{self.vocab_size}..{self.joint_size - 1}); got {np.unique(ids).tolist()}")
        return self.inverse_map[ids]


def anchor_ids(num_anchors: int) -> tuple[int, ...]:
    """The ids of the first `num_anchors` words of ANCHOR_ORDER (punctuation, then digits, then function words)."""
    if not 0 <= num_anchors <= len(ANCHOR_ORDER):
        raise ValueError(f"anchor_ids: num_anchors must be in 0..{len(ANCHOR_ORDER)}, got {num_anchors}")
    return tuple(WORD_ID[word] for word in ANCHOR_ORDER[:num_anchors])


def _pick(rng: np.random.Generator, words) -> str:
    return words[rng.integers(len(words))]


def generate_review(rng: np.random.Generator, mood_strength: float = 0.8, negation_rate: float = 0.3) -> list[str]:
    """One review in language A: a description clause, a second clause, and closing punctuation.

    A hidden mood (positive or negative, evenly) picks each adjective's and verb's polarity with probability
    `mood_strength`; each adjective is negated with probability `negation_rate`. The mood is what makes
    "good" and "great" keep the same company in text; the LABEL is not the mood, it is keyword_sentiment's rule.
    Digits appear as ratings ("4 ."), with no link to the mood, so an anchor never gives the label away.
    """
    mood = rng.random() < 0.5

    def adjective_phrase():
        positive = (rng.random() < mood_strength) == mood
        phrase = [_pick(rng, NEGATORS)] if rng.random() < negation_rate else []
        if rng.random() < 0.4:
            phrase.append(_pick(rng, INTENSIFIERS))
        return phrase + [_pick(rng, POSITIVE if positive else NEGATIVE)]

    def verb_clause():
        positive = (rng.random() < mood_strength) == mood
        return [_pick(rng, PRONOUNS), _pick(rng, POSITIVE_VERBS if positive else NEGATIVE_VERBS),
                _pick(rng, DETERMINERS), _pick(rng, NOUNS)]

    review = [_pick(rng, DETERMINERS), _pick(rng, NOUNS), _pick(rng, COPULAS)] + adjective_phrase()
    second = verb_clause() if rng.random() < 0.5 else [_pick(rng, DETERMINERS), _pick(rng, NOUNS),
                                                      _pick(rng, COPULAS)] + adjective_phrase()
    review += [_pick(rng, (",", ";"))] + second + [_pick(rng, (".", "!"))]
    if rng.random() < 0.5:
        review += [_pick(rng, DIGITS), "."]
    return review


def keyword_sentiment(words) -> int:
    """The planted ground truth: 1 when a positive adjective appears with no negator among the two words before
    it (so "not good" and "not very good" do not count); else 0."""
    words = list(words)
    for i, word in enumerate(words):
        if word in POSITIVE:
            before = words[max(i - 2, 0):i]
            if not any(w in NEGATORS for w in before):
                return 1
    return 0


def review_corpus(n: int, context_size: int, rng: np.random.Generator | int | None = None):
    """n reviews of language A as ids padded with PAD to `context_size`: (ids (n, T) int64, labels (n,) int64)."""
    rng = np.random.default_rng(rng)
    ids = np.full((n, context_size), PAD, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    for row in range(n):
        words = generate_review(rng)
        if len(words) > context_size:
            raise ValueError(f"review_corpus: a review has {len(words)} words but context_size is {context_size}")
        ids[row, :len(words)] = [WORD_ID[w] for w in words]
        labels[row] = keyword_sentiment(words)
    return ids, labels
