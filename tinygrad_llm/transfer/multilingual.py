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
adjective appears that is not directly negated ("not good" is not positive). Each review has a hidden mood that
colours its adjective and its verb and sets its rating digit, written first. The mood is what gives positive
and negative words different company in text, and the rating digit is what tells the two groups apart: without
it the text would look the same with every positive and negative word swapped, in A as in B, and nothing in B's
text alone could say which of its word groups is the positive one.

The anchors, in order: punctuation (shared, but saying nothing about the mood), then the rating digits (shared
and tied to the mood). Everything else is renamed, function words included, so a function word never carries
the label across.

The experiment (tinygrad_llm/experiments/multilingual.py) pretrains a TransformerEncoder with a MaskedLMHead on
mask_tokens' corruption, then fits a SequenceClassificationHead on the state at the rating slot, masked.
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
LOW_RATINGS, HIGH_RATINGS = ("1", "2"), ("4", "5")
DIGITS = LOW_RATINGS + HIGH_RATINGS
# The candidates for anchors: num_anchors=k shares the first k. Punctuation comes first because it says nothing
# about the mood, then the rating digits, which do. Every other word (sentiment words, negators and function words
# alike) is renamed in B, so no word that the labelled reviews contain is shared except punctuation.
ANCHOR_ORDER = PUNCTUATION + DIGITS
WORDS = (DETERMINERS + NOUNS + COPULAS + NEGATORS + INTENSIFIERS + POSITIVE + NEGATIVE + PRONOUNS + POSITIVE_VERBS
         + NEGATIVE_VERBS + PUNCTUATION + DIGITS)
RATING_POSITION = 0  # every review opens with its rating digit
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
    """The ids of the first `num_anchors` words of ANCHOR_ORDER (punctuation, then the rating digits)."""
    if not 0 <= num_anchors <= len(ANCHOR_ORDER):
        raise ValueError(f"anchor_ids: num_anchors must be in 0..{len(ANCHOR_ORDER)}, got {num_anchors}")
    return tuple(WORD_ID[word] for word in ANCHOR_ORDER[:num_anchors])


def _pick(rng: np.random.Generator, words) -> str:
    return words[rng.integers(len(words))]


def generate_review(rng: np.random.Generator, mood_strength: float = 0.9, negation_rate: float = 0.2) -> list[str]:
    """One review in language A: its rating digit, then "the film was [not] [very] good , i loved the meal .".

    A hidden mood (positive or negative, evenly) picks the rating (4 or 5 for a positive mood, 1 or 2 for a
    negative one) and the polarity of the adjective and of the verb, each equal to the mood with probability
    `mood_strength`. The adjective is negated with probability `negation_rate`. The LABEL is not the mood, it is
    keyword_sentiment's rule. Every review has the same shape, so its length and its function words say nothing
    about the label.

    Why the ratings: the words alone are symmetric. Swap every positive word with a negative one and the
    distribution of reviews is unchanged, so no amount of unlabelled B text can tell which of B's two clusters
    of words is the positive one. A rating digit written the same way in both languages breaks the tie.
    """
    mood = rng.random() < 0.5

    def polarity_matches_mood():
        return (rng.random() < mood_strength) == mood

    adjective = [_pick(rng, NEGATORS)] if rng.random() < negation_rate else []
    if rng.random() < 0.4:
        adjective.append(_pick(rng, INTENSIFIERS))
    adjective.append(_pick(rng, POSITIVE if polarity_matches_mood() else NEGATIVE))
    verb = _pick(rng, POSITIVE_VERBS if polarity_matches_mood() else NEGATIVE_VERBS)
    return ([_pick(rng, HIGH_RATINGS if mood else LOW_RATINGS), _pick(rng, DETERMINERS), _pick(rng, NOUNS),
             _pick(rng, COPULAS)] + adjective + [_pick(rng, (",", ";")), _pick(rng, PRONOUNS), verb,
                                                 _pick(rng, DETERMINERS), _pick(rng, NOUNS), _pick(rng, (".", "!"))])


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
    """n reviews of language A as ids padded with PAD to `context_size`: (ids (n, T) int64, labels (n,) int64).

    Column 0 holds each review's rating digit (RATING_POSITION): unlabelled pretraining text keeps it, as reviews
    on the web come with their stars; a labelled task hides it, or the digit alone would nearly give the label.
    """
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
