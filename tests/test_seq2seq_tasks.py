"""The synthetic seq2seq tasks, held-out splits and teacher-forced batches.

Properties: every sampled target is the task's rule applied to its source (reverse twice is the identity,
sort gives a sorted permutation, addition gives the integer sum, duplicate doubles the length, translation
is deterministic, one-to-one and reorders); the per-length counts are exact; splits are disjoint and
reproducible; a batch's decoder input is its decoder target shifted right behind BOS, with pads flagged
and ignored in the loss.
"""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.data import seq2seq_tasks as s2s
from tinygrad_llm.data import toy_translation as tt

pytestmark = pytest.mark.seq2seq

seeds = st.integers(0, 2**32 - 1)
# the largest length each task is sampled at in these tests (translation lengths are clauses)
LONGEST = {"copy": 12, "reverse": 12, "sort": 12, "duplicate": 12, "addition": 10, "translation": 3}


@st.composite
def task_examples(draw, name=None):
    """(task, example, length) for a task (any, if name is None) with random options and length."""
    name = name or draw(st.sampled_from(sorted(s2s.TASKS)))
    if name in ("copy", "reverse", "sort", "duplicate"):
        task = s2s.make_task(name, num_symbols=draw(st.integers(1, 15)))
    elif name == "translation":
        task = s2s.make_task(name, direction=draw(st.sampled_from(tt.DIRECTIONS)),
                             max_adjectives=draw(st.integers(0, 3)))
    else:
        task = s2s.make_task(name)
    length = draw(st.integers(1, LONGEST[name]))
    return task, task.sample(np.random.default_rng(draw(seeds)), length), length


# ---- every task ----------------------------------------------------------------------------------------

@given(drawn=task_examples())
def test_sample_obeys_the_rule_its_length_and_its_bounds(drawn):
    task, example, length = drawn
    assert example.target == task.target_for(example.source)
    assert task.length_of(example.source) == length
    assert 1 <= len(example.source) <= task.max_source_length(length)
    assert len(example.target) <= task.max_target_length(length)
    ids = task.vocabulary.encode(example.source + example.target)
    assert min(ids) >= 3 and max(ids) < task.vocabulary.size


@given(name=st.sampled_from(sorted(s2s.TASKS)), seed=seeds)
def test_same_seed_same_example(name, seed):
    task = s2s.make_task(name)
    assert task.sample(np.random.default_rng(seed), 2) == task.sample(np.random.default_rng(seed), 2)


@pytest.mark.parametrize("task, length", [
    (s2s.CopyTask(num_symbols=3), 3), (s2s.SortTask(num_symbols=2), 4), (s2s.DuplicateTask(num_symbols=4), 2),
    (s2s.AdditionTask(), 1), (s2s.ToyTranslationTask(max_adjectives=0), 1),
    (s2s.ToyTranslationTask(direction="b_to_a", max_adjectives=0), 1),
])
def test_num_examples_counts_exactly_the_examples_sampling_reaches(task, length):
    rng = np.random.default_rng(0)
    seen = {task.sample(rng, length) for _ in range(8 * task.num_examples(length) + 200)}
    assert len(seen) == task.num_examples(length)


def test_addition_counts_pairs_whose_longer_operand_has_exactly_length_digits():
    task = s2s.AdditionTask()
    assert task.num_examples(1) == 100  # 0..9 + 0..9
    assert task.num_examples(2) == 100 * 100 - 10 * 10


# ---- the string tasks ----------------------------------------------------------------------------------

@given(drawn=task_examples("reverse"))
def test_reverse_of_reverse_is_the_identity(drawn):
    task, example, _ = drawn
    assert task.target_for(example.target) == example.source
    assert example.target == example.source[::-1]


@given(drawn=task_examples("copy"))
def test_copy_target_is_the_source(drawn):
    _, example, _ = drawn
    assert example.target == example.source


@given(drawn=task_examples("sort"))
def test_sort_target_is_a_sorted_permutation_of_the_source(drawn):
    _, example, _ = drawn
    values = [int(token) for token in example.target]
    assert values == sorted(values)
    assert Counter(example.target) == Counter(example.source)


@given(drawn=task_examples("duplicate"))
def test_duplicate_writes_each_token_twice(drawn):
    _, example, _ = drawn
    assert len(example.target) == 2 * len(example.source)
    assert example.target[0::2] == example.source == example.target[1::2]


@given(num_symbols=st.integers(1, 15), seed=seeds)
def test_num_symbols_limits_the_alphabet(num_symbols, seed):
    task = s2s.CopyTask(num_symbols=num_symbols)
    example = task.sample(np.random.default_rng(seed), 30)
    assert task.vocabulary.size == 3 + num_symbols
    assert set(example.source) <= {str(i) for i in range(num_symbols)}


@given(drawn=task_examples("addition"))
def test_addition_target_is_the_integer_sum(drawn):
    _, example, length = drawn
    left, right = "".join(example.source).split("+")
    assert "".join(example.target) == str(int(left) + int(right))
    assert max(len(left), len(right)) == length
    assert all(len(operand) == 1 or operand[0] != "0" for operand in (left, right))


def test_addition_draws_both_operand_orders_and_unequal_lengths():
    task, rng = s2s.AdditionTask(), np.random.default_rng(0)
    digit_counts = Counter(tuple(len(x) for x in "".join(task.sample(rng, 4).source).split("+")) for _ in range(400))
    assert digit_counts[(4, 1)] > 0 and digit_counts[(1, 4)] > 0 and digit_counts[(4, 4)] > 0


# ---- toy translation -----------------------------------------------------------------------------------

@given(drawn=task_examples("translation"))
def test_translation_is_deterministic_and_round_trips(drawn):
    task, example, _ = drawn
    assert task.target_for(example.source) == example.target
    back = tt.b_to_a if task.direction == "a_to_b" else tt.a_to_b
    assert back(example.target) == example.source


@given(seed=seeds, clauses=st.integers(1, 3))
def test_the_two_directions_are_the_same_pairs_swapped(seed, clauses):
    forward = s2s.ToyTranslationTask().sample(np.random.default_rng(seed), clauses)
    backward = s2s.ToyTranslationTask(direction="b_to_a").sample(np.random.default_rng(seed), clauses)
    assert (backward.source, backward.target) == (forward.target, forward.source)


@given(seed=seeds, clauses=st.integers(1, 3))
def test_translation_reorders_and_copies_number_agreement(seed, clauses):
    sentence = tt.sample_sentence(np.random.default_rng(seed), clauses, max_adjectives=3)
    a_tokens, b_tokens = tt.render_a(sentence), tt.render_b(sentence)
    assert a_tokens.count(tt.A_AND) == b_tokens.count(tt.B_AND) == clauses - 1
    a_content = Counter(w for w in a_tokens if w in tt.NOUNS or w in tt.ADJECTIVES or w in tt.VERBS)
    lexicon = {**tt.NOUNS, **tt.ADJECTIVES, **tt.VERBS}
    assert Counter({lexicon[w]: c for w, c in a_content.items()}) == \
        Counter(w for w in b_tokens if w in lexicon.values())
    b_clauses = " ".join(b_tokens).split(f" {tt.B_AND} ")
    for clause, b_clause in zip(sentence, b_clauses):
        words = b_clause.split()
        # SOV: the verb comes after both nouns (in A it sits between them), then agrees with the subject
        assert words[-2] == tt.VERBS[clause.verb] and words.index(tt.NOUNS[clause.object.noun]) < len(words) - 2
        assert words[-1] == tt.B_VERB_AGREEMENT[clause.subject.plural]
        subject_words, object_words = words[:words.index(tt.B_SUBJECT)], words[words.index(tt.B_SUBJECT) + 1:-3]
        for phrase, phrase_words in ((clause.subject, subject_words), (clause.object, object_words)):
            assert phrase_words[0] == tt.NOUNS[phrase.noun]  # the noun first, then its adjectives, each agreeing
            for adjective in phrase.adjectives:
                at = phrase_words.index(tt.ADJECTIVES[adjective])
                assert phrase_words[at + 1] == tt.B_ADJECTIVE_AGREEMENT[phrase.plural]


def test_word_for_word_substitution_is_not_a_translation():
    source = ("big", "dog", "-s", "see", "cat")
    assert tt.a_to_b(source) == ("vor", "-ri", "dul", "-i", "-ta", "mika", "-mo", "vek", "-en")


@pytest.mark.parametrize("direction", tt.DIRECTIONS)
@pytest.mark.parametrize("max_adjectives", [0, 2])
def test_translation_max_lengths_are_reached(direction, max_adjectives):
    task = s2s.ToyTranslationTask(direction=direction, max_adjectives=max_adjectives)
    longest = tt.NounPhrase("dog", tuple(list(tt.ADJECTIVES)[:max_adjectives]), plural=True)
    sentence = (tt.Clause(longest, "see", longest),) * 2
    a_tokens, b_tokens = tt.render_a(sentence), tt.render_b(sentence)
    source, target = (a_tokens, b_tokens) if direction == "a_to_b" else (b_tokens, a_tokens)
    assert len(source) == task.max_source_length(2) and len(target) == task.max_target_length(2)


@pytest.mark.parametrize("parse, sentence, message", [
    (tt.parse_a, ["dog", "cat"], "exactly one verb"),
    (tt.parse_a, ["big", "see", "cat"], "not a noun phrase"),
    (tt.parse_a, ["big", "big", "dog", "see", "cat"], "not a noun phrase"),
    (tt.parse_a, [], "empty"),
    (tt.parse_b, ["vor", "-ta", "mika", "-mo", "vek"], "must read"),
    (tt.parse_b, ["vor", "-ri", "dul", "-a", "-ta", "mika", "-mo", "vek", "-en"], "not a noun phrase"),
    (tt.parse_b, ["vor", "-ta", "mika", "-mo", "vek", "-en"], "verb agreement"),
])
def test_malformed_sentences_are_rejected_with_the_reason(parse, sentence, message):
    with pytest.raises(ValueError, match=message):
        parse(sentence)


def test_the_two_languages_share_no_word():
    assert not set(tt.A_SYMBOLS) & set(tt.B_SYMBOLS)


# ---- vocabulary ----------------------------------------------------------------------------------------

@given(tokens=st.lists(st.sampled_from([str(i) for i in range(12)])))
def test_vocabulary_encode_decode_round_trip(tokens):
    vocabulary = s2s.TaskVocabulary([str(i) for i in range(12)])
    ids = vocabulary.encode(tokens)
    assert vocabulary.decode(ids) == tokens
    assert vocabulary.decode([s2s.BOS_ID, *ids, s2s.EOS_ID, *ids]) == tokens  # stops at EOS, skips BOS
    assert vocabulary.decode([*ids, s2s.PAD_ID, s2s.PAD_ID]) == tokens


def test_vocabulary_ids_and_size():
    vocabulary = s2s.TaskVocabulary(["a", "b"])
    assert (vocabulary.pad_id, vocabulary.bos_id, vocabulary.eos_id) == (0, 1, 2)
    assert vocabulary.encode(["a", "b"]) == [3, 4] and vocabulary.size == 5 and vocabulary.symbols == ("a", "b")


@pytest.mark.parametrize("call, message", [
    (lambda v: v.encode(["a", "zz", "<eos>"]), r"unknown symbols \['<eos>', 'zz'\]"),
    (lambda v: v.decode([3, 7]), "id 7 is outside"),
    (lambda v: s2s.TaskVocabulary(["a", "a"]), "distinct"),
    (lambda v: s2s.TaskVocabulary(["<pad>"]), "other than"),
    (lambda v: s2s.TaskVocabulary([]), "no symbols"),
])
def test_vocabulary_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call(s2s.TaskVocabulary(["a", "b"]))


def test_examples_are_hashable_tuples():
    example = s2s.Seq2SeqExample(["1", "2"], ["2", "1"])
    assert example == s2s.Seq2SeqExample(("1", "2"), ("2", "1")) and len({example, example}) == 1


# ---- task errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: s2s.make_task("revers"), r"unknown task 'revers'.*'reverse'"),
    (lambda: s2s.make_task("copy", num_symbols=0), "num_symbols"),
    (lambda: s2s.make_task("translation", direction="sideways"), "direction"),
    (lambda: s2s.make_task("translation", max_adjectives=7), "max_adjectives"),
    (lambda: s2s.ReverseTask().sample(np.random.default_rng(0), 0), "length must be an int >= 1"),
    (lambda: s2s.ReverseTask().target_for(["1", "x"]), r"unknown \['x'\]"),
    (lambda: s2s.AdditionTask().target_for(["1", "+"]), "digits \\+ digits"),
    (lambda: s2s.AdditionTask().target_for(["0", "1", "+", "1"]), "leading zeros"),
])
def test_task_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---- sampling and splits -------------------------------------------------------------------------------

@given(seed=seeds, n=st.integers(0, 40), bounds=st.tuples(st.integers(3, 6), st.integers(0, 3)))
def test_sample_examples_are_distinct_in_range_and_avoid_exclude(seed, n, bounds):
    task, (low, extra) = s2s.ReverseTask(num_symbols=4), bounds  # 4**3 = 64 >= 5 excluded + 40 drawn
    exclude = frozenset(s2s.sample_examples(task, 5, low, low + extra, np.random.default_rng(seed + 1)))
    examples = s2s.sample_examples(task, n, low, low + extra, np.random.default_rng(seed), exclude)
    assert len(examples) == n == len(set(examples)) and not set(examples) & exclude
    assert all(low <= len(e.source) <= low + extra for e in examples)
    assert examples == s2s.sample_examples(task, n, low, low + extra, np.random.default_rng(seed), exclude)


def test_lengths_are_drawn_uniformly():
    examples = s2s.sample_examples(s2s.CopyTask(), 900, 4, 6, np.random.default_rng(0))
    counts = Counter(len(e.source) for e in examples)
    assert set(counts) == {4, 5, 6} and all(240 <= c <= 360 for c in counts.values())  # 300 each expected


def test_every_distinct_example_can_be_drawn_and_no_more():
    task = s2s.CopyTask(num_symbols=2)  # 2 + 4 + 8 examples of lengths 1..3
    everything = s2s.sample_examples(task, 14, 1, 3, np.random.default_rng(0))
    assert len(set(everything)) == 14
    with pytest.raises(ValueError, match="asked for 15 .* only 14 exist"):
        s2s.sample_examples(task, 15, 1, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="only 4 exist there outside the 10 excluded"):
        s2s.sample_examples(task, 5, 1, 3, np.random.default_rng(0), exclude=frozenset(everything[:10]))


@pytest.mark.parametrize("call, error, message", [
    (lambda: s2s.sample_examples(s2s.CopyTask(), 3, 5, 2, np.random.default_rng(0)), ValueError,
     "min_length=5 > max_length=2"),
    (lambda: s2s.sample_examples(s2s.CopyTask(), 3, 0, 2, np.random.default_rng(0)), ValueError, "min_length must be"),
    (lambda: s2s.sample_examples(s2s.CopyTask(), 3, 1, 2, 0), TypeError, "default_rng"),
    (lambda: s2s.make_split(s2s.CopyTask(num_symbols=2), 10, 5, 1, 3, seed=0), ValueError, "have only 14"),
    (lambda: s2s.make_split(s2s.CopyTask(), 1, 1, 1, 3, seed=0, test_min_length=4, test_max_length=2),
     ValueError, "test lengths"),
])
def test_sampling_errors_name_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()


@given(seed=seeds, name=st.sampled_from(sorted(s2s.TASKS)))
def test_make_split_is_disjoint_and_reproducible(seed, name):
    task = s2s.make_task(name)
    train, test = s2s.make_split(task, 30, 10, 1, 2, seed)
    assert len(set(train)) == 30 and len(set(test)) == 10 and not set(train) & set(test)
    assert (train, test) == s2s.make_split(task, 30, 10, 1, 2, seed)


def test_make_split_test_lengths_can_differ_for_length_generalisation():
    train, test = s2s.make_split(s2s.ReverseTask(), 50, 20, 3, 5, seed=0, test_min_length=6, test_max_length=8)
    assert {len(e.source) for e in train} <= {3, 4, 5} and {len(e.source) for e in test} <= {6, 7, 8}
    assert s2s.make_split(s2s.ReverseTask(), 50, 20, 3, 5, seed=1) != (train, test)


# ---- batches -------------------------------------------------------------------------------------------

@given(drawn=st.lists(task_examples("duplicate"), min_size=1, max_size=5), ignore_index=st.sampled_from([-100, -1]))
def test_batch_is_the_target_shifted_right_behind_bos(drawn, ignore_index):
    examples = [s2s.Seq2SeqExample(ex.source, ex.target) for _, ex, _ in drawn]
    vocabulary = s2s.DuplicateTask(num_symbols=15).vocabulary
    batch = s2s.make_batch(examples, vocabulary, ignore_index=ignore_index)
    longest_source, longest_target = max(len(e.source) for e in examples), max(len(e.target) for e in examples)
    assert batch.source.shape == batch.source_padding.shape == (len(examples), longest_source)
    assert batch.decoder_input.shape == batch.decoder_target.shape == batch.target_padding.shape \
        == (len(examples), longest_target + 1)
    assert batch.source.dtype == batch.decoder_input.dtype == batch.decoder_target.dtype == np.int64
    assert len(batch) == len(examples)
    for row, example in enumerate(examples):
        n = len(example.target)
        assert vocabulary.decode(batch.source[row]) == list(example.source)
        assert batch.decoder_input[row, 0] == s2s.BOS_ID and batch.decoder_target[row, n] == s2s.EOS_ID
        # the shift: the input at t+1 is the target at t
        np.testing.assert_array_equal(batch.decoder_input[row, 1:n + 1], batch.decoder_target[row, :n])
        assert vocabulary.decode(batch.decoder_target[row, :n]) == list(example.target)
    np.testing.assert_array_equal(batch.source_padding, batch.source == s2s.PAD_ID)
    np.testing.assert_array_equal(batch.target_padding, batch.decoder_input == s2s.PAD_ID)
    np.testing.assert_array_equal(batch.target_padding, batch.decoder_target == ignore_index)
    np.testing.assert_array_equal((~batch.source_padding).sum(1), [len(e.source) for e in examples])
    np.testing.assert_array_equal((~batch.target_padding).sum(1), [len(e.target) + 1 for e in examples])


def test_batch_of_an_empty_target_still_teaches_eos():
    batch = s2s.make_batch([s2s.Seq2SeqExample(("1",), ())], s2s.CopyTask().vocabulary)
    assert batch.decoder_input.tolist() == [[s2s.BOS_ID]] and batch.decoder_target.tolist() == [[s2s.EOS_ID]]


@pytest.mark.parametrize("examples, error, message", [
    ([], ValueError, "no examples"),
    ([s2s.Seq2SeqExample(("1",), ("1",)), s2s.Seq2SeqExample(("1", "x"), ("1",))], ValueError, r"example 1: .*'x'"),
    ([("1", "1")], TypeError, "not a Seq2SeqExample"),
])
def test_batch_errors_name_the_example(examples, error, message):
    with pytest.raises(error, match=message):
        s2s.make_batch(examples, s2s.CopyTask().vocabulary)


def test_exact_match_counts_whole_sequences():
    examples = [s2s.Seq2SeqExample(("1", "2"), ("2", "1")), s2s.Seq2SeqExample(("3",), ("3",))]
    assert s2s.exact_match([["2", "1"], ["3"]], examples) == 1.0
    assert s2s.exact_match([["2", "1", "1"], ("3",)], examples) == 0.5  # too long is wrong
    with pytest.raises(ValueError, match="2 examples"):
        s2s.exact_match([["2", "1"]], examples)
