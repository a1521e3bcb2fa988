"""Text normalisation: the classic-NLP steps an LLM must NOT apply, and the one safe output step.

CONTRAST functions (kept to show the damage, never to use on LLM data):

- `classic_nlp_normalise` lowercases, strips punctuation and drops stopwords, as a bag-of-words or TF-IDF
  pipeline does: those models ignore word order and form, so the steps shrink their feature space. A
  language model is the opposite case: it must *write* text, and anything removed from its training
  data is something it can never produce. A model trained on normalised text has no capital letters,
  commas or "the" in its vocabulary at all, and cannot even read a prompt that contains them
  (misconception M15). LLMs train on raw text, and a lossless tokenizer keeps every character.
- `sentence_case` "tidies" a model's output: lowercase everything, then capitalise each sentence's first
  letter. It looks harmless on "hello world." and destroys names, acronyms and code:
  "John lives in NYC." becomes "John lives in nyc." (misconception M16).

The correct output step is `postprocess_generation`: cut the text at the first end-of-sequence marker
and change nothing else. It is checked by a property: on text with no marker it is the identity.
"""
from __future__ import annotations

import re

# A short English list of the kind stopword filters use (articles, auxiliaries, pronouns, prepositions).
ENGLISH_STOPWORDS = frozenset("""
a an the and or but if of at by for with about to from in on into over under is are was were be been being
am do does did have has had it its this that these those he she they we you i me him her them us my your
our their his not no as so than then there here which who whom what when where why how can will would
should could may might must shall
""".split())

# What classic pipelines keep: "word" characters (letters, digits, underscore, in any script) and whitespace.
# Everything else (punctuation in any script, symbols, emoji) is deleted.
NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
STOPWORD_PATTERN = re.compile(r"\b(?:" + "|".join(sorted(ENGLISH_STOPWORDS, key=len, reverse=True)) + r")\b[^\S\n]*",
                              flags=re.IGNORECASE)
SENTENCE_START = re.compile(r"(^|[.!?]\s+)(\w)")


def classic_nlp_normalise(text: str, lowercase: bool = True, strip_punctuation: bool = True,
                          drop_stopwords: bool = True) -> str:
    """CONTRAST (M15), do not use for LLM data: lowercase, delete punctuation/symbols, delete English stopwords.

    Steps run in that order; each can be switched off to see its own damage. Line breaks are kept, so the
    text keeps its line structure. The result cannot be turned back into the original:
    "John met Mary in NYC, at 3 p.m." becomes "john met mary nyc 3 pm".
    """
    if not isinstance(text, str):
        raise TypeError(f"classic_nlp_normalise: expected text as str, got {type(text).__name__}")
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = NOT_WORD_OR_SPACE.sub("", text)
    if drop_stopwords:
        text = STOPWORD_PATTERN.sub("", text)
    return text


def sentence_case(text: str) -> str:
    """CONTRAST (M16), do not apply to model output: lowercase everything, then capitalise each sentence start.

    "John met Mary in NYC." -> "John met mary in nyc.": every name and acronym after the first word is lost.
    """
    if not isinstance(text, str):
        raise TypeError(f"sentence_case: expected text as str, got {type(text).__name__}")
    return SENTENCE_START.sub(lambda match: match.group(1) + match.group(2).upper(), text.lower())


def postprocess_generation(text: str, eos_token: str = "<|eos|>") -> str:
    """The generated text up to (not including) the first `eos_token`; casing, punctuation, spacing untouched.

    Text without the marker comes back unchanged: the model wrote those capitals and commas on purpose.
    With token ids, prefer stopping generation at the EOS id (generate(..., stop_token_id=tok.eos_id)) and
    decoding the ids before it; this function is for text that already holds the marker's name.
    """
    if not isinstance(text, str):
        raise TypeError(f"postprocess_generation: expected text as str, got {type(text).__name__}")
    if not isinstance(eos_token, str) or not eos_token:
        raise ValueError(f"postprocess_generation: eos_token must be a non-empty string such as '<|eos|>', "
                         f"got {eos_token!r}")
    end = text.find(eos_token)
    return text if end < 0 else text[:end]
