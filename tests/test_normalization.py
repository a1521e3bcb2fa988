"""Post-processing and normalisation (Q06, M15, M16): the output step must leave clean text alone,
and the classic-NLP normalisation is shown to lose what a language model has to write."""
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from tinygrad_llm.data import CharTokenizer
from tinygrad_llm.data.normalization import (ENGLISH_STOPWORDS, NOT_WORD_OR_SPACE, classic_nlp_normalise,
                                             postprocess_generation, sentence_case)

pytestmark = pytest.mark.tokenization

EOS = "<|eos|>"
well_formed = st.text(max_size=60).filter(lambda text: EOS not in text)


def postprocess_then_sentence_case(text, eos_token):
    """The M16 bug: "tidy" the output by sentence-casing it after cutting at EOS."""
    return sentence_case(postprocess_generation(text, eos_token))


def text_it_changes(postprocess):
    """The smallest text without an EOS marker that `postprocess` changes, or None if hypothesis finds none."""
    try:
        return find(well_formed, lambda text: postprocess(text, EOS) != text,
                    settings=settings(max_examples=300, derandomize=True, database=None))
    except NoSuchExample:
        return None


# ------------------------------------------------------------------------------------------------ the check
def test_postprocessing_leaves_well_formed_text_unchanged():
    assert text_it_changes(postprocess_generation) is None


def test_the_check_catches_sentence_casing_post_processing():
    changed = text_it_changes(postprocess_then_sentence_case)
    assert changed is not None and postprocess_then_sentence_case(changed, EOS) != changed
    assert postprocess_then_sentence_case("John met Mary in NYC.", EOS) == "John met mary in nyc."


@given(well_formed, st.text(max_size=20))
def test_postprocessing_stops_at_the_first_eos(before, after):
    assert postprocess_generation(before + EOS + after, EOS) == before
    assert postprocess_generation(before + EOS + after + EOS, EOS) == before


def test_postprocessing_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-empty string"):
        postprocess_generation("text", "")
    with pytest.raises(TypeError, match="expected text as str"):
        postprocess_generation(b"text", EOS)


# ------------------------------------------------------------------------------------------------ contrast (M15)
@given(st.text(max_size=80))
def test_normalised_text_has_no_capitals_punctuation_or_stopwords(text):
    normalised = classic_nlp_normalise(text)
    assert normalised == normalised.lower()
    assert not NOT_WORD_OR_SPACE.search(normalised)
    assert not ENGLISH_STOPWORDS & set(normalised.split())


def test_normalisation_cannot_be_undone_and_the_model_loses_its_alphabet():
    assert classic_nlp_normalise("John met Mary in NYC, at 3 p.m.") == "john met mary nyc 3 pm"
    assert classic_nlp_normalise("The end.") == classic_nlp_normalise("the END!") == "end"  # two texts, one result
    raw = "Hello, World! The model must write this."
    tokenizer = CharTokenizer.train(classic_nlp_normalise(raw))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tokenizer.encode(raw)  # a model trained on normalised text cannot even read the raw prompt


def test_each_normalisation_step_can_be_switched_off():
    text = "The Cat, sat."
    assert classic_nlp_normalise(text, lowercase=False, strip_punctuation=False, drop_stopwords=False) == text
    assert classic_nlp_normalise(text, strip_punctuation=False, drop_stopwords=False) == "the cat, sat."
    assert classic_nlp_normalise(text, drop_stopwords=False) == "the cat sat"
