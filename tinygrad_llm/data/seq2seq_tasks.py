"""Synthetic sequence-to-sequence tasks, held-out splits and teacher-forced batches.

Each task maps a source token sequence to exactly one target sequence by a rule written in code, so
data is free, unlimited and exactly scorable, and one knob (`length`) controls difficulty. Training on
short lengths and testing on longer ones measures length generalisation (Q14).

- copy, reverse, sort, duplicate: strings of `num_symbols` symbols ("0".."9" by default). Reverse needs
  the last source token first, so a model that squeezes the source into one vector suffers (M30);
  duplicate makes the target twice as long as the source, so a "decoder" that just maps source position
  t to target position t cannot solve it (M31, Q15c).
- addition: "1 2 3 + 4 5" -> "1 6 8"; carries make the output depend on far-away digits.
- translation: two made-up languages (see toy_translation.py) where the rules reorder words and copy
  number agreement, so word-for-word substitution fails.

Source and target share ONE vocabulary, with PAD=0, BOS=1 and EOS=2 before the symbols, so an
encoder-decoder can share (tie) its embeddings and the special ids are the same for every task.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from . import toy_translation
from .padding import pad_batch

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
IGNORE_INDEX = -100


class TaskVocabulary:
    """Symbol strings <-> ids: PAD, BOS, EOS take ids 0, 1, 2 and the symbols 3, 4, ... in the given order."""

    def __init__(self, symbols: Iterable[str]):
        symbols = tuple(symbols)
        if not symbols:
            raise ValueError("TaskVocabulary: got no symbols; a task needs at least one")
        bad = [s for s in symbols if not isinstance(s, str) or not s or s in SPECIAL_TOKENS]
        if bad:
            raise ValueError(f"TaskVocabulary: symbols must be non-empty strings other than {SPECIAL_TOKENS}, "
                             f"got {bad}")
        if len(set(symbols)) != len(symbols):
            repeated = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"TaskVocabulary: symbols must be distinct, {repeated} appear more than once")
        self.symbols = symbols
        self._ids = {symbol: i for i, symbol in enumerate(SPECIAL_TOKENS + symbols)}

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    @property
    def size(self) -> int:
        """Number of ids, specials included: the embedding table and the output layer have this many rows."""
        return len(SPECIAL_TOKENS) + len(self.symbols)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        tokens = list(tokens)
        unknown = sorted({t for t in tokens if t not in self._ids or t in SPECIAL_TOKENS}, key=str)
        if unknown:
            more = " ..." if len(self.symbols) > 12 else ""
            raise ValueError(f"TaskVocabulary.encode: unknown symbols {unknown}; this vocabulary has "
                             f"{len(self.symbols)} symbols {list(self.symbols[:12])}{more} "
                             "(specials are added by make_batch, not passed as tokens)")
        return [self._ids[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols up to (not including) the first EOS; PAD and BOS are skipped, so raw model output decodes."""
        tokens = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if not 0 <= i < self.size:
                raise ValueError(f"TaskVocabulary.decode: id {i} is outside this vocabulary's 0..{self.size - 1}")
            if i >= len(SPECIAL_TOKENS):
                tokens.append(self.symbols[i - len(SPECIAL_TOKENS)])
        return tokens

    def __repr__(self) -> str:
        return f"TaskVocabulary(size={self.size}, symbols={list(self.symbols)})"


@dataclass(frozen=True)
class Seq2SeqExample:
    """One (source, target) pair of symbol strings; frozen tuples, so examples go in sets (held-out checks)."""

    source: tuple[str, ...]
    target: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "source", tuple(self.source))
        object.__setattr__(self, "target", tuple(self.target))


class Seq2SeqTask(ABC):
    """A rule that maps each source to exactly one target, with a `length` knob for difficulty.

    Subclasses say in their docstring what `length` (an int >= 1) means. Examples of different lengths
    never coincide (`length_of` recovers it from the source), so per-length counts add up.
    """

    name: str

    def __init__(self, symbols: Iterable[str]):
        self.vocabulary = TaskVocabulary(symbols)

    def sample(self, rng: np.random.Generator, length: int) -> Seq2SeqExample:
        """One random example at this length."""
        source = self._sample_source(rng, self._check_length(length))
        return Seq2SeqExample(source, self.target_for(source))

    @abstractmethod
    def target_for(self, source: Sequence[str]) -> tuple[str, ...]:
        """The one correct target for a source (ValueError if the source is not one this task makes)."""

    @abstractmethod
    def length_of(self, source: Sequence[str]) -> int:
        """The `length` at which this source is produced."""

    @abstractmethod
    def num_examples(self, length: int) -> int:
        """How many distinct examples exist at this length (make_split checks a request against it)."""

    @abstractmethod
    def max_source_length(self, length: int) -> int:
        """Most source tokens at this length (BOS/EOS not counted): size a model's limits with it."""

    @abstractmethod
    def max_target_length(self, length: int) -> int:
        """Most target tokens at this length; the decoder sees one more (BOS in, EOS out)."""

    @abstractmethod
    def _sample_source(self, rng: np.random.Generator, length: int) -> tuple[str, ...]:
        """A random source at this (already checked) length."""

    def _check_length(self, length: int) -> int:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"{type(self).__name__}: length must be an int >= 1, got {length!r}")
        return int(length)

    def _check_symbols(self, source: Sequence[str], allowed) -> tuple[str, ...]:
        source = tuple(source)
        unknown = sorted(set(source) - set(allowed), key=str)
        if not source or unknown:
            raise ValueError(f"{type(self).__name__}: a source is a non-empty sequence of {list(allowed)}, "
                             f"got {list(source)}" + (f" (unknown {unknown})" if unknown else ""))
        return source

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocabulary size {self.vocabulary.size})"


def symbol_names(num_symbols: int) -> tuple[str, ...]:
    """"0", "1", ..., str(num_symbols - 1): one token each, ordered by their integer value."""
    if isinstance(num_symbols, bool) or not isinstance(num_symbols, (int, np.integer)) or num_symbols < 1:
        raise ValueError(f"num_symbols must be an int >= 1, got {num_symbols!r}")
    return tuple(str(i) for i in range(num_symbols))


class _SymbolStringTask(Seq2SeqTask):
    """Tasks on strings of `num_symbols` symbols drawn uniformly; `length` is the number of source tokens."""

    def __init__(self, num_symbols: int = 10):
        super().__init__(symbol_names(num_symbols))
        self.num_symbols = int(num_symbols)

    def _sample_source(self, rng, length):
        return tuple(self.vocabulary.symbols[i] for i in rng.integers(0, self.num_symbols, size=length))

    def length_of(self, source):
        return len(source)

    def num_examples(self, length):
        return self.num_symbols ** self._check_length(length)

    def max_source_length(self, length):
        return self._check_length(length)

    def max_target_length(self, length):
        return self._check_length(length)

    def _source(self, source) -> tuple[str, ...]:
        return self._check_symbols(source, self.vocabulary.symbols)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_symbols={self.num_symbols})"


class CopyTask(_SymbolStringTask):
    """Target = source. `length` = number of source tokens."""

    name = "copy"

    def target_for(self, source):
        return self._source(source)


class ReverseTask(_SymbolStringTask):
    """Target = source backwards. `length` = number of source tokens."""

    name = "reverse"

    def target_for(self, source):
        return self._source(source)[::-1]


class SortTask(_SymbolStringTask):
    """Target = the source's tokens in increasing (integer) order, repeats kept. `length` = number of source tokens.

    Distinct examples are distinct sources, though many sources share one sorted target.
    """

    name = "sort"

    def target_for(self, source):
        return tuple(sorted(self._source(source), key=int))


class DuplicateTask(_SymbolStringTask):
    """Target = each source token written twice ("3 1" -> "3 3 1 1"). `length` = number of source tokens.

    Target position t depends on source position t // 2, so a model that aligns positions one to one fails.
    """

    name = "duplicate"

    def target_for(self, source):
        return tuple(token for token in self._source(source) for _ in range(2))

    def max_target_length(self, length):
        return 2 * self._check_length(length)


class AdditionTask(Seq2SeqTask):
    """Multi-digit addition: source "1 2 3 + 4 5" (one token per digit), target the sum's digits "1 6 8".

    `length` = digits of the LONGER operand. Numbers are written without leading zeros ("0" is one digit).
    How operands are drawn at length L: one operand, left or right with equal chance, gets exactly L
    digits; the other gets a digit count uniform in 1..L; each value is uniform among the numbers with
    its digit count. So both operand orders and unequal lengths (carries into digits that only one
    operand has) are common.
    """

    name = "addition"
    PLUS = "+"
    DIGITS = symbol_names(10)

    def __init__(self):
        super().__init__((*self.DIGITS, self.PLUS))

    def _sample_source(self, rng, length):
        digits = [length, int(rng.integers(1, length + 1))]
        if rng.integers(2):
            digits.reverse()
        left, right = (self._random_number(rng, d) for d in digits)
        return (*str(left), self.PLUS, *str(right))

    @staticmethod
    def _random_number(rng, digits: int) -> int:
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return int(rng.integers(low, 10 ** digits))

    def _operands(self, source) -> tuple[str, str]:
        source = self._check_symbols(source, self.vocabulary.symbols)
        text = "".join(source)
        left, _, right = text.partition(self.PLUS)
        if text.count(self.PLUS) != 1 or not left or not right \
                or any(len(operand) > 1 and operand[0] == "0" for operand in (left, right)):
            raise ValueError(f"AdditionTask: a source reads 'digits + digits' without leading zeros, "
                             f"got {list(source)}")
        return left, right

    def target_for(self, source):
        left, right = self._operands(source)
        return tuple(str(int(left) + int(right)))

    def length_of(self, source):
        return max(len(operand) for operand in self._operands(source))

    def num_examples(self, length):
        # pairs of numbers below 10**L, minus the pairs where both are below 10**(L-1)
        length = self._check_length(length)
        return 10 ** (2 * length) - (10 ** (2 * length - 2) if length > 1 else 0)

    def max_source_length(self, length):
        return 2 * self._check_length(length) + 1

    def max_target_length(self, length):
        return self._check_length(length) + 1


class ToyTranslationTask(Seq2SeqTask):
    """Rule-based translation between the made-up languages A and B of toy_translation.py.

    `length` = number of clauses ("dog see cat and bird -s hear fish" has 2). Each noun phrase has
    0..max_adjectives adjectives. direction "a_to_b" (default) or "b_to_a". The vocabulary holds both
    languages' tokens, so source and target share embeddings; their words never coincide.
    """

    name = "translation"

    def __init__(self, direction: str = "a_to_b", max_adjectives: int = 2):
        if direction not in toy_translation.DIRECTIONS:
            raise ValueError(f"ToyTranslationTask: direction must be one of {toy_translation.DIRECTIONS}, "
                             f"got {direction!r}")
        if isinstance(max_adjectives, bool) or not isinstance(max_adjectives, int) \
                or not 0 <= max_adjectives <= len(toy_translation.ADJECTIVES):
            raise ValueError(f"ToyTranslationTask: max_adjectives must be an int in "
                             f"0..{len(toy_translation.ADJECTIVES)}, got {max_adjectives!r}")
        super().__init__((*toy_translation.A_SYMBOLS, *toy_translation.B_SYMBOLS))
        self.direction = direction
        self.max_adjectives = max_adjectives
        forward = direction == "a_to_b"
        self._render_source = toy_translation.render_a if forward else toy_translation.render_b
        self._parse_source = toy_translation.parse_a if forward else toy_translation.parse_b
        self._translate = toy_translation.a_to_b if forward else toy_translation.b_to_a
        self._source_longest_phrase = max_adjectives + 2  # adjectives, noun, plural
        self._target_longest_phrase = 2 * max_adjectives + 2  # noun, plural, adjective + agreement each
        if not forward:
            self._source_longest_phrase, self._target_longest_phrase = \
                self._target_longest_phrase, self._source_longest_phrase

    def _sample_source(self, rng, length):
        return self._render_source(toy_translation.sample_sentence(rng, length, self.max_adjectives))

    def target_for(self, source):
        return self._translate(source)

    def length_of(self, source):
        return len(self._parse_source(source))

    def num_examples(self, length):
        return toy_translation.count_sentences(self._check_length(length), self.max_adjectives)

    def max_source_length(self, length):
        return self._longest(length, self._source_longest_phrase, self.direction == "a_to_b")

    def max_target_length(self, length):
        return self._longest(length, self._target_longest_phrase, self.direction == "b_to_a")

    def _longest(self, length: int, longest_phrase: int, is_language_a: bool) -> int:
        """Clauses of two phrases plus the verb (A) or plus two case markers, verb and agreement (B),
        and a conjunction between clauses."""
        per_clause = 2 * longest_phrase + (1 if is_language_a else 4)
        length = self._check_length(length)
        return length * per_clause + length - 1

    def __repr__(self) -> str:
        return f"ToyTranslationTask(direction={self.direction!r}, max_adjectives={self.max_adjectives})"


TASKS: dict[str, type[Seq2SeqTask]] = {
    task.name: task for task in (CopyTask, ReverseTask, SortTask, DuplicateTask, AdditionTask, ToyTranslationTask)
}


def make_task(name: str, **options) -> Seq2SeqTask:
    """A task by name with its options: make_task("reverse", num_symbols=5)."""
    if name not in TASKS:
        raise ValueError(f"make_task: unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**options)


def _check_length_range(caller: str, min_length: int, max_length: int) -> range:
    for label, value in (("min_length", min_length), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{caller}: {label} must be an int >= 1, got {value!r}")
    if min_length > max_length:
        raise ValueError(f"{caller}: min_length={min_length} > max_length={max_length}; swap them")
    return range(int(min_length), int(max_length) + 1)


def sample_examples(task: Seq2SeqTask, n: int, min_length: int, max_length: int, rng: np.random.Generator,
                    exclude: frozenset = frozenset()) -> list[Seq2SeqExample]:
    """n distinct examples, none in `exclude`, each at a length drawn uniformly from [min_length, max_length].

    A length whose examples are used up (short ones are few: copy over 10 symbols has 10 of length 1) is
    dropped from the draw, so the request succeeds whenever enough distinct examples exist; ValueError
    says how many exist otherwise. `exclude` holds examples of this task (e.g. the training set).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"sample_examples: rng must be a numpy Generator, got {type(rng).__name__}; "
                        "pass np.random.default_rng(seed)")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"sample_examples: n must be an int >= 0, got {n!r}")
    lengths = _check_length_range("sample_examples", min_length, max_length)
    remaining = {length: task.num_examples(length) for length in lengths}
    for example in exclude:
        length = task.length_of(example.source)
        if length in remaining:
            remaining[length] -= 1
    available = sum(remaining.values())
    if n > available:
        raise ValueError(f"sample_examples: asked for {n} distinct {task.name} examples of lengths {min_length}.."
                         f"{max_length}, but only {available} exist there"
                         + (f" outside the {len(exclude)} excluded ones" if exclude else "")
                         + "; ask for fewer or widen the length range")
    taken, examples = set(exclude), []
    while len(examples) < n:
        open_lengths = [length for length, count in remaining.items() if count > 0]
        length = open_lengths[int(rng.integers(len(open_lengths)))]
        example = task.sample(rng, length)
        if example not in taken:
            taken.add(example)
            examples.append(example)
            remaining[length] -= 1
    return examples


def make_split(task: Seq2SeqTask, n_train: int, n_test: int, min_length: int, max_length: int, seed: int,
               test_min_length: int | None = None, test_max_length: int | None = None):
    """(train, test): disjoint lists of examples, the same for the same seed.

    The test lengths default to the training lengths; give others to measure length generalisation
    (train 3..10, test 3..14). Test examples are drawn after, and never equal to, training examples.
    """
    test_min_length = min_length if test_min_length is None else test_min_length
    test_max_length = max_length if test_max_length is None else test_max_length
    train_lengths = _check_length_range("make_split", min_length, max_length)
    test_lengths = _check_length_range("make_split (test lengths)", test_min_length, test_max_length)
    union = set(train_lengths) | set(test_lengths)
    exist = sum(task.num_examples(length) for length in union)
    if n_train + n_test > exist:
        raise ValueError(f"make_split: {n_train} train + {n_test} test distinct {task.name} examples requested, "
                         f"but lengths {min(union)}..{max(union)} have only {exist}; "
                         "ask for fewer or use longer lengths")
    rng = np.random.default_rng(seed)
    train = sample_examples(task, n_train, min_length, max_length, rng)
    test = sample_examples(task, n_test, test_min_length, test_max_length, rng, exclude=frozenset(train))
    return train, test


@dataclass
class Seq2SeqBatch:
    """A padded batch for teacher forcing.

    The decoder predicts target token t from the target tokens before t (and the source). Feeding it
    decoder_input = [BOS, y0, ..., y_{n-1}] and scoring decoder_target = [y0, ..., y_{n-1}, EOS] position
    by position does that for every t in one parallel pass: column t of the input holds exactly the
    tokens < t (with a causal mask), and column t of the target is token t. BOS gives the first
    prediction a context; EOS teaches the model when to stop. Pads in decoder_target are ignore_index,
    so cross_entropy gives them no loss and no gradient.
    """

    source: np.ndarray  # (B, S) int64, PAD_ID at pads
    source_padding: np.ndarray  # (B, S) bool, True at pads: the encoder's and cross-attention's key mask
    decoder_input: np.ndarray  # (B, T) int64: BOS + target ids, then PAD_ID
    decoder_target: np.ndarray  # (B, T) int64: target ids + EOS, then ignore_index
    target_padding: np.ndarray  # (B, T) bool, True at pads of both decoder arrays

    def __len__(self) -> int:
        return self.source.shape[0]


def make_batch(examples: Sequence[Seq2SeqExample], vocabulary: TaskVocabulary,
               ignore_index: int = IGNORE_INDEX) -> Seq2SeqBatch:
    """Encode and right-pad examples into a Seq2SeqBatch with T = longest target + 1."""
    if not examples:
        raise ValueError("make_batch: got no examples; a batch needs at least one")
    sources, targets = [], []
    for i, example in enumerate(examples):
        if not isinstance(example, Seq2SeqExample):
            raise TypeError(f"make_batch: item {i} is a {type(example).__name__}, not a Seq2SeqExample")
        try:
            sources.append(vocabulary.encode(example.source))
            targets.append(vocabulary.encode(example.target))
        except ValueError as error:
            raise ValueError(f"make_batch: example {i}: {error}") from None
    source = pad_batch(sources, PAD_ID)
    decoder_input = pad_batch([[BOS_ID, *target] for target in targets], PAD_ID)
    decoder_target = pad_batch([[*target, EOS_ID] for target in targets], PAD_ID).ids
    decoder_target[decoder_input.padding_mask] = ignore_index
    return Seq2SeqBatch(source.ids, source.padding_mask, decoder_input.ids, decoder_target,
                        decoder_input.padding_mask)


def exact_match(predicted_token_lists: Sequence[Sequence[str]], examples: Sequence[Seq2SeqExample]) -> float:
    """Fraction of examples whose predicted tokens equal the target exactly (length included).

    Predictions are symbol lists, e.g. vocabulary.decode(ids) of each generated row.
    """
    if len(predicted_token_lists) != len(examples):
        raise ValueError(f"exact_match: {len(predicted_token_lists)} predictions for {len(examples)} examples; "
                         "pass one prediction per example, in the same order")
    if not examples:
        raise ValueError("exact_match: got no examples; the fraction of zero examples is undefined")
    hits = sum(tuple(predicted) == example.target for predicted, example in zip(predicted_token_lists, examples))
    return hits / len(examples)
