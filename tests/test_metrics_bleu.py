"""Chapter 8 checks for BLEU (Q17, M33): clipped n-gram precisions, the brevity penalty, smoothing,
references first, and the worked example's numbers to 4 decimals. The oracle tests hold sentence and corpus BLEU
equal to nltk and sacrebleu (tokenize='none') for every smoothing both define.
"""
import math
import warnings

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinygrad_llm.metrics import (SMOOTHING, brevity_penalty, clipped_matches, closest_reference_length, corpus_bleu,
                                  sentence_bleu, tokenize_13a)

pytestmark = pytest.mark.evaluation

HYPOTHESIS = "the quick brown fox jumps over the dog".split()
REFERENCE = "the quick brown fox jumps over the lazy dog today".split()
SHORT = "the cat sat".split()

# A small vocabulary, so drawn sentences share many n-grams.
words = st.sampled_from(["a", "b", "c", "d", "e"])
sentences = st.lists(words, min_size=0, max_size=12)
reference_lists = st.lists(st.lists(words, min_size=1, max_size=12), min_size=1, max_size=3)
orders = st.integers(1, 4)
# smoothing name -> strategy of its smooth_value (None = the default), values <= 1 so precisions stay <= 1
smoothings = st.sampled_from(sorted(SMOOTHING)).flatmap(
    lambda name: st.tuples(st.just(name), st.none() | st.floats(0.01, 1.0) if name in ("floor", "add-k")
                           else st.none() | st.floats(2.0, 10.0) if name == "exp-length" else st.none()))


# ============================================================================ the worked example's numbers
def test_worked_example_scores_0_6771_references_first_and_0_6606_swapped():
    correct = sentence_bleu([REFERENCE], HYPOTHESIS)
    swapped = sentence_bleu([HYPOTHESIS], REFERENCE)
    assert round(correct.score, 4) == 0.6771
    assert round(swapped.score, 4) == 0.6606
    # why they differ: precision divides by the hypothesis's n-grams, the penalty punishes only a short hypothesis
    assert correct.counts == (8, 7, 6, 5) and correct.matches == (8, 6, 5, 4)
    assert correct.brevity_penalty == pytest.approx(math.exp(1 - 10 / 8))
    assert swapped.brevity_penalty == 1.0 and swapped.precisions[0] == pytest.approx(8 / 10)


def test_identical_three_token_sentences_score_0_unsmoothed_and_0_562_with_epsilon_0_1():
    """Three tokens have no 4-gram: 0 matches out of (at least) 1, so p_4 = 0 and BLEU = 0. The floor smoothing
    (nltk method1, epsilon = 0.1) sets p_4 = 0.1 / 1: BLEU = (1 * 1 * 1 * 0.1) ** (1/4) = 0.5623."""
    assert sentence_bleu([SHORT], SHORT).score == 0.0
    smoothed = sentence_bleu([SHORT], SHORT, smoothing="floor", smooth_value=0.1)
    assert round(smoothed.score, 4) == 0.5623
    assert smoothed.precisions == (1.0, 1.0, 1.0, 0.1)
    assert smoothed.score == pytest.approx(0.1 ** 0.25)


def test_clipping_credits_a_repeated_word_only_as_often_as_one_reference_has_it():
    assert clipped_matches([["the", "cat", "the"]], ["the"] * 7, 1) == (2, 7)
    assert clipped_matches([["the", "cat"], ["the", "the", "mat"]], ["the"] * 7, 1) == (2, 7)  # max over references
    assert clipped_matches([["a", "b"]], ["a"], 2) == (0, 0)  # shorter than n: no n-gram at all


def test_corpus_bleu_pools_counts_rather_than_averaging_sentence_scores():
    references = [[REFERENCE], [SHORT]]
    hypotheses = [HYPOTHESIS, SHORT]
    corpus = corpus_bleu(references, hypotheses)
    sentence_mean = (sentence_bleu([REFERENCE], HYPOTHESIS).score + sentence_bleu([SHORT], SHORT).score) / 2
    assert corpus.counts == (11, 9, 7, 5) and corpus.matches == (11, 8, 6, 4)
    assert corpus.hyp_length == 11 and corpus.ref_length == 13
    assert corpus.score > 0.5 > sentence_mean  # the short sentence alone scores 0, pooled it only adds counts
    assert str(corpus).startswith(f"BLEU = {corpus.score:.4f}") and float(corpus) == corpus.score


# ============================================================================ properties
@given(st.lists(words, min_size=4, max_size=12), smoothings)
def test_a_sentence_of_at_least_4_tokens_scores_1_against_itself(sentence, smoothing):
    name, value = smoothing
    result = sentence_bleu([sentence], sentence, smoothing=name, smooth_value=value)
    assert result.score == pytest.approx(1.0, abs=1e-12)


@given(st.lists(st.sampled_from(["a", "b"]), max_size=10), reference_lists, smoothings)
def test_no_shared_unigram_scores_0_whatever_the_smoothing(hypothesis, references, smoothing):
    references = [[word.upper() for word in reference] for reference in references]
    assert sentence_bleu(references, hypothesis, smoothing=smoothing[0], smooth_value=smoothing[1]).score == 0.0


@given(reference_lists, sentences, smoothings, orders)
def test_bleu_lies_in_0_1_and_is_bp_times_the_weighted_geometric_mean(references, hypothesis, smoothing, order):
    result = sentence_bleu(references, hypothesis, smoothing=smoothing[0], smooth_value=smoothing[1],
                           max_order=order)
    assert 0.0 <= result.score <= 1.0
    assert len(result.precisions) == order and all(0 <= p <= 1 for p in result.precisions)
    if result.score > 0:
        mean = math.exp(sum(math.log(p) / order for p in result.precisions))
        assert result.score == pytest.approx(result.brevity_penalty * mean, rel=1e-12)


@given(st.integers(0, 50), st.integers(0, 50))
def test_brevity_penalty_is_1_exactly_when_the_hypothesis_is_at_least_as_long(hyp_length, ref_length):
    penalty = brevity_penalty(hyp_length, ref_length)
    assert (penalty == 1.0) == (hyp_length >= ref_length)
    assert 0.0 <= penalty <= 1.0


@given(reference_lists, sentences)
def test_the_result_reports_the_penalty_of_the_closest_reference_length(references, hypothesis):
    result = sentence_bleu(references, hypothesis)
    lengths = sorted({len(r) for r in references}, key=lambda n: (abs(n - len(hypothesis)), n))
    assert result.ref_length == closest_reference_length(references, len(hypothesis)) == lengths[0]
    assert (result.brevity_penalty == 1.0) == (result.hyp_length >= result.ref_length)


@given(reference_lists, st.lists(words, min_size=1, max_size=12), st.lists(words, min_size=1, max_size=12), orders)
def test_another_reference_never_lowers_the_clipped_matches(references, hypothesis, extra, n):
    before, count = clipped_matches(references, hypothesis, n)
    after, same_count = clipped_matches(references + [extra], hypothesis, n)
    assert count == same_count and before <= after <= count


@given(st.lists(st.tuples(reference_lists, sentences), min_size=1, max_size=4), smoothings)
def test_corpus_bleu_of_one_sentence_is_sentence_bleu_and_counts_add_up(pairs, smoothing):
    name, value = smoothing
    references, hypotheses = [r for r, _ in pairs], [h for _, h in pairs]
    corpus = corpus_bleu(references, hypotheses, smoothing=name, smooth_value=value)
    parts = [sentence_bleu(r, h, smoothing=name, smooth_value=value) for r, h in pairs]
    assert corpus.matches == tuple(map(sum, zip(*(p.matches for p in parts))))
    assert corpus.counts == tuple(map(sum, zip(*(p.counts for p in parts))))
    assert corpus.hyp_length == sum(p.hyp_length for p in parts)
    assert corpus_bleu(references[:1], hypotheses[:1], smoothing=name, smooth_value=value) == parts[0]


def test_swapping_the_sentences_changes_the_score_and_types_catch_a_swapped_call():
    assert sentence_bleu([REFERENCE], HYPOTHESIS).score != sentence_bleu([HYPOTHESIS], REFERENCE).score
    with pytest.raises(TypeError, match=r"references must be a LIST of token lists.*hypothesis first.*"
                                        r"sentence_bleu\(references, hypothesis\)"):
        sentence_bleu(HYPOTHESIS, [REFERENCE])
    with pytest.raises(TypeError, match=r"corpus_bleu\(list_of_references, hypotheses\)"):
        corpus_bleu([HYPOTHESIS, SHORT], [[REFERENCE], [SHORT]])


def test_weights_set_the_order_and_token_ids_work_like_words():
    ids = {word: i for i, word in enumerate(sorted(set(REFERENCE)))}
    as_ids = sentence_bleu([[ids[w] for w in REFERENCE]], [ids[w] for w in HYPOTHESIS], weights=(0.5, 0.5))
    assert as_ids.score == pytest.approx(sentence_bleu([REFERENCE], HYPOTHESIS, max_order=2).score, rel=1e-15)
    assert as_ids.weights == (0.5, 0.5) and len(as_ids.precisions) == 2


# ============================================================================ bad input
@pytest.mark.parametrize("call, error, message", [
    (lambda: corpus_bleu([], []), ValueError, "no hypotheses"),
    (lambda: corpus_bleu([[REFERENCE]], [HYPOTHESIS, SHORT]), ValueError, "2 hypotheses but 1 reference lists"),
    (lambda: sentence_bleu([], HYPOTHESIS), ValueError, "has no reference"),
    (lambda: sentence_bleu(["the quick brown fox"], "the quick fox"), TypeError, "untokenized text"),
    (lambda: sentence_bleu([REFERENCE], "the quick fox"), TypeError, "tokenize it first"),
    (lambda: sentence_bleu(["the quick brown fox"], HYPOTHESIS), TypeError, r"untokenized text \(tokenize each"),
    (lambda: sentence_bleu([[1, 2, 3]], ["a", "b"]), TypeError, r"mix token types \['int', 'str'\]"),
    (lambda: sentence_bleu([REFERENCE], [["the"]]), TypeError, "contains a list"),
    (lambda: sentence_bleu([REFERENCE], HYPOTHESIS, smoothing="method1"), ValueError, "unknown smoothing 'method1'"),
    (lambda: sentence_bleu([REFERENCE], HYPOTHESIS, smoothing="exp", smooth_value=0.1), ValueError,
     "takes no smooth_value"),
    (lambda: sentence_bleu([REFERENCE], HYPOTHESIS, smoothing="floor", smooth_value=0), ValueError, "> 0"),
    (lambda: sentence_bleu([REFERENCE], HYPOTHESIS, weights=(0.5, -0.5)), ValueError, "weights must be"),
    (lambda: sentence_bleu([REFERENCE], HYPOTHESIS, max_order=3, weights=(0.5, 0.5)), ValueError, "max_order=3"),
    (lambda: sentence_bleu([REFERENCE], HYPOTHESIS, max_order=0), ValueError, "max_order must be an integer"),
])
def test_bad_bleu_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ============================================================================ oracles: nltk and sacrebleu
NLTK_METHODS = {"none": 0, "floor": 1, "add-k": 2, "exp": 3, "exp-length": 4}


def nltk_smoothing(nltk_bleu, name, value):
    """The nltk SmoothingFunction method equal to `name` (floor's epsilon and exp-length's K set from value)."""
    kwargs = {"floor": {"epsilon": value or 0.1}, "exp-length": {"k": value or 5}}.get(name, {})
    return getattr(nltk_bleu.SmoothingFunction(**kwargs), f"method{NLTK_METHODS[name]}")


nltk_smoothings = st.sampled_from(sorted(NLTK_METHODS)).flatmap(
    lambda name: st.tuples(st.just(name), st.floats(0.01, 1.0) if name == "floor"
                           else st.floats(2.0, 10.0) if name == "exp-length" else st.none()))


@pytest.mark.oracle
@given(reference_lists, sentences, nltk_smoothings,
       st.lists(st.just(0.0) | st.floats(0.1, 1.0), min_size=1, max_size=4))
def test_sentence_bleu_equals_nltk(references, hypothesis, smoothing, weights):
    """Weights 0 or >= 0.1: nltk's unsmoothed "0" is exp(w * ln(2.2e-308)), which is only near 0 for w not tiny."""
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    name, value = smoothing
    assume(sum(weights) > 0)
    assume(name != "exp-length" or len(hypothesis) >= 2)  # nltk method4 silently drops 0 precisions below 2 tokens
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about 0 counts; its "0" is about 1e-77
        expected = nltk_bleu.sentence_bleu(references, hypothesis, weights=tuple(weights),
                                           smoothing_function=nltk_smoothing(nltk_bleu, name, value))
    received = sentence_bleu(references, hypothesis, weights=weights, smoothing=name, smooth_value=value)
    assert received.score == pytest.approx(expected, abs=1e-6)


@pytest.mark.oracle
@given(st.lists(st.tuples(reference_lists, st.lists(words, min_size=4, max_size=12)), min_size=1, max_size=5),
       nltk_smoothings)
def test_corpus_bleu_equals_nltk(pairs, smoothing):
    """Hypotheses of at least 4 tokens: nltk floors each SENTENCE's n-gram count at 1, we floor only the total."""
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    name, value = smoothing
    references, hypotheses = [r for r, _ in pairs], [h for _, h in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = nltk_bleu.corpus_bleu(references, hypotheses,
                                         smoothing_function=nltk_smoothing(nltk_bleu, name, value))
    assert corpus_bleu(references, hypotheses, smoothing=name, smooth_value=value).score == pytest.approx(
        expected, abs=1e-6)


@st.composite
def sacrebleu_corpora(draw):
    """The same number of references for every hypothesis (sacrebleu takes reference streams), and at least one
    hypothesis as long as the order (sacrebleu stops at an order with no n-gram at all; see bleu.py)."""
    order = draw(orders)
    num_references = draw(st.integers(1, 3))
    size = draw(st.integers(1, 5))
    hypotheses = [draw(st.lists(words, min_size=order, max_size=12))]
    hypotheses += [draw(sentences) for _ in range(size - 1)]
    references = [[draw(st.lists(words, min_size=1, max_size=12)) for _ in range(num_references)]
                  for _ in range(size)]
    return order, references, hypotheses


@pytest.mark.oracle
@given(sacrebleu_corpora(), st.sampled_from(["none", "floor", "add-k", "exp"]), st.floats(0.01, 1.0))
def test_corpus_bleu_equals_sacrebleu(corpus, smoothing, value):
    sacrebleu = pytest.importorskip("sacrebleu")
    order, references, hypotheses = corpus
    value = value if smoothing in ("floor", "add-k") else None
    metric = sacrebleu.BLEU(tokenize="none", smooth_method=smoothing, smooth_value=value, max_ngram_order=order)
    streams = [[" ".join(refs[i]) for refs in references] for i in range(len(references[0]))]
    expected = metric.corpus_score([" ".join(h) for h in hypotheses], streams)
    received = corpus_bleu(references, hypotheses, max_order=order, smoothing=smoothing, smooth_value=value)
    assert received.score == pytest.approx(expected.score / 100, abs=1e-6)
    assert (received.hyp_length, received.ref_length) == (expected.sys_len, expected.ref_len)
    assert received.brevity_penalty == pytest.approx(expected.bp, abs=1e-12)


text = st.text(alphabet="ab 19.,-'\"&;<>()$:/\n", max_size=30) | st.sampled_from(
    ["&quot;hi&quot; &amp; &lt;b&gt;", "3.14, 1,000 and 2-3.", "end-\nline <skipped> ok", "Hello, world!"])


@pytest.mark.oracle
@given(text)
def test_tokenize_13a_equals_sacrebleus_default_tokenizer(line):
    sacrebleu = pytest.importorskip("sacrebleu")
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    assert tokenize_13a(line) == Tokenizer13a()(line).split()
    assert sacrebleu  # imported for the skip only


@pytest.mark.oracle
def test_bleu_on_13a_tokens_equals_sacrebleu_on_raw_strings():
    sacrebleu = pytest.importorskip("sacrebleu")
    hypotheses = ["The cat sat on the mat.", "It's 3.5 km, isn't it?", "Hello, world!"]
    references = ["The cat sat on a mat.", "It is 3.5 km, is it not?", "Hello world!"]
    expected = sacrebleu.corpus_bleu(hypotheses, [references], smooth_method="exp")  # sacrebleu's defaults
    received = corpus_bleu([[tokenize_13a(r)] for r in references], [tokenize_13a(h) for h in hypotheses],
                           smoothing="exp")
    assert received.score == pytest.approx(expected.score / 100, abs=1e-9)
