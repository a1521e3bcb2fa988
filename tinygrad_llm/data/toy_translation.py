"""Two small made-up languages and the rule-based translation between them, for seq2seq experiments.

Real translation data is large and its "correct" output is disputed. Here every sentence has exactly one
translation, computed by rules, so a perfect model scores exact match 1 and BLEU 1, and a model that gets
part of a sentence right gets partial credit. The rules are chosen so that word-for-word substitution
fails: a correct model has to reorder and to copy information (number) to several places.

Language A (English lemmas, SVO, modifiers first). A sentence is one or more clauses joined by "and":
    clause      := noun_phrase verb noun_phrase            (subject, verb, object)
    noun_phrase := adjective* noun ["-s"]                  ("-s" marks a plural)
    e.g.  big red dog -s chase small cat

Language B (invented words, SOV, modifiers last, agreement as separate suffix tokens). Clauses joined by "ko":
    clause      := noun_phrase "-ta" noun_phrase "-mo" verb agreement
    noun_phrase := noun ["-ri"] (adjective agreement)*     ("-ri" marks a plural)
    agreement after an adjective: "-a" if its noun is singular, "-i" if plural;
    agreement after the verb: "-e" if the SUBJECT is singular, "-en" if plural;
    "-ta" ends the subject, "-mo" ends the object (case markers).
    e.g.  vor -ri dul -i ras -i -ta mika pim -a -mo sur -en

So the verb moves to the end, adjectives move behind their noun (keeping their order), and the plural
marker, which A writes once after the noun, B also writes after every adjective and after the verb.
The mapping is one-to-one, so `b_to_a` undoes `a_to_b` and either direction is a task.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOUNS = {"dog": "vor", "cat": "mika", "bird": "tsi", "fish": "olu", "fox": "ren", "owl": "huba", "bee": "zem",
         "frog": "kwa"}
ADJECTIVES = {"big": "dul", "small": "pim", "red": "ras", "blue": "nel", "old": "gor", "young": "tal"}
VERBS = {"see": "vek", "like": "amo", "chase": "sur", "hear": "nor", "follow": "pel", "find": "tuk"}

A_PLURAL, A_AND = "-s", "and"
B_PLURAL, B_AND = "-ri", "ko"
B_SUBJECT, B_OBJECT = "-ta", "-mo"
B_ADJECTIVE_AGREEMENT = {False: "-a", True: "-i"}  # keyed by "the noun is plural"
B_VERB_AGREEMENT = {False: "-e", True: "-en"}  # keyed by "the subject is plural"

A_SYMBOLS = (*NOUNS, *ADJECTIVES, *VERBS, A_PLURAL, A_AND)
B_SYMBOLS = (*NOUNS.values(), *ADJECTIVES.values(), *VERBS.values(), B_PLURAL, B_AND, B_SUBJECT, B_OBJECT,
             *B_ADJECTIVE_AGREEMENT.values(), *B_VERB_AGREEMENT.values())
DIRECTIONS = ("a_to_b", "b_to_a")

_B_NOUNS = {b: a for a, b in NOUNS.items()}
_B_ADJECTIVES = {b: a for a, b in ADJECTIVES.items()}
_B_VERBS = {b: a for a, b in VERBS.items()}


@dataclass(frozen=True)
class NounPhrase:
    noun: str  # language-A lemma
    adjectives: tuple[str, ...]  # language-A lemmas, in order
    plural: bool


@dataclass(frozen=True)
class Clause:
    subject: NounPhrase
    verb: str  # language-A lemma
    object: NounPhrase


def sample_sentence(rng: np.random.Generator, num_clauses: int, max_adjectives: int = 2) -> tuple[Clause, ...]:
    """Clauses whose nouns, verbs and number are uniform; each noun phrase gets 0..max_adjectives distinct
    adjectives (the count uniform, then the adjectives drawn without replacement)."""
    nouns, adjectives, verbs = list(NOUNS), list(ADJECTIVES), list(VERBS)

    def noun_phrase() -> NounPhrase:
        count = int(rng.integers(0, max_adjectives + 1))
        chosen = tuple(adjectives[i] for i in rng.choice(len(adjectives), size=count, replace=False))
        return NounPhrase(nouns[int(rng.integers(len(nouns)))], chosen, bool(rng.integers(2)))

    return tuple(Clause(noun_phrase(), verbs[int(rng.integers(len(verbs)))], noun_phrase())
                 for _ in range(num_clauses))


def count_sentences(num_clauses: int, max_adjectives: int = 2) -> int:
    """How many distinct sentences `sample_sentence` can produce (each has exactly one translation)."""
    phrases = 2 * len(NOUNS) * sum(math.perm(len(ADJECTIVES), k) for k in range(max_adjectives + 1))
    return (phrases * phrases * len(VERBS)) ** num_clauses


def render_a(sentence: tuple[Clause, ...]) -> tuple[str, ...]:
    def phrase(noun_phrase: NounPhrase) -> list[str]:
        return [*noun_phrase.adjectives, noun_phrase.noun] + ([A_PLURAL] if noun_phrase.plural else [])

    clauses = [phrase(c.subject) + [c.verb] + phrase(c.object) for c in sentence]
    return tuple(_join(clauses, A_AND))


def render_b(sentence: tuple[Clause, ...]) -> tuple[str, ...]:
    def phrase(noun_phrase: NounPhrase) -> list[str]:
        tokens = [NOUNS[noun_phrase.noun]] + ([B_PLURAL] if noun_phrase.plural else [])
        for adjective in noun_phrase.adjectives:
            tokens += [ADJECTIVES[adjective], B_ADJECTIVE_AGREEMENT[noun_phrase.plural]]
        return tokens

    clauses = [phrase(c.subject) + [B_SUBJECT] + phrase(c.object) + [B_OBJECT, VERBS[c.verb],
                                                                      B_VERB_AGREEMENT[c.subject.plural]]
               for c in sentence]
    return tuple(_join(clauses, B_AND))


def parse_a(tokens) -> tuple[Clause, ...]:
    """The clauses of a language-A sentence; ValueError naming the clause and what is wrong otherwise."""
    sentence = []
    for index, clause in enumerate(_split(tokens, A_AND, "A")):
        verb_positions = [i for i, token in enumerate(clause) if token in VERBS]
        if len(verb_positions) != 1:
            raise ValueError(f"toy translation: language-A clause {index} {clause} needs exactly one verb "
                             f"(one of {sorted(VERBS)}), found {len(verb_positions)}")
        at = verb_positions[0]
        sentence.append(Clause(_parse_a_phrase(clause[:at], index), clause[at],
                               _parse_a_phrase(clause[at + 1:], index)))
    return tuple(sentence)


def parse_b(tokens) -> tuple[Clause, ...]:
    """The clauses of a language-B sentence; ValueError naming the clause and what is wrong otherwise."""
    sentence = []
    for index, clause in enumerate(_split(tokens, B_AND, "B")):
        if clause.count(B_SUBJECT) != 1 or clause.count(B_OBJECT) != 1 or len(clause) < 6 \
                or clause[-3] != B_OBJECT or clause[-2] not in _B_VERBS:
            raise ValueError(f"toy translation: language-B clause {index} {clause} must read "
                             f"'subject {B_SUBJECT} object {B_OBJECT} verb agreement'")
        at = clause.index(B_SUBJECT)
        subject = _parse_b_phrase(clause[:at], index)
        object_ = _parse_b_phrase(clause[at + 1:-3], index)
        if clause[-1] != B_VERB_AGREEMENT[subject.plural]:
            raise ValueError(f"toy translation: language-B clause {index} {clause}: the verb agreement must be "
                             f"{B_VERB_AGREEMENT[subject.plural]!r} for a {'plural' if subject.plural else 'singular'} "
                             f"subject, got {clause[-1]!r}")
        sentence.append(Clause(subject, _B_VERBS[clause[-2]], object_))
    return tuple(sentence)


def a_to_b(tokens) -> tuple[str, ...]:
    """Translate a language-A sentence (a sequence of tokens) into language B."""
    return render_b(parse_a(tokens))


def b_to_a(tokens) -> tuple[str, ...]:
    """Translate a language-B sentence into language A (the inverse of a_to_b)."""
    return render_a(parse_b(tokens))


def _join(clauses: list[list[str]], conjunction: str) -> list[str]:
    tokens = list(clauses[0])
    for clause in clauses[1:]:
        tokens += [conjunction, *clause]
    return tokens


def _split(tokens, conjunction: str, language: str) -> list[list[str]]:
    tokens = list(tokens)
    if not tokens:
        raise ValueError(f"toy translation: empty language-{language} sentence; it needs at least one clause")
    clauses, current = [], []
    for token in tokens:
        if token == conjunction:
            clauses.append(current)
            current = []
        else:
            current.append(token)
    return clauses + [current]


def _parse_a_phrase(tokens: list[str], clause: int) -> NounPhrase:
    plural = bool(tokens) and tokens[-1] == A_PLURAL
    words = tokens[:-1] if plural else tokens
    if not words or words[-1] not in NOUNS or any(w not in ADJECTIVES for w in words[:-1]) \
            or len(set(words[:-1])) != len(words) - 1:
        raise ValueError(f"toy translation: language-A clause {clause}: {tokens} is not a noun phrase "
                         f"'distinct adjectives, noun, optional {A_PLURAL!r}' (nouns {sorted(NOUNS)}, "
                         f"adjectives {sorted(ADJECTIVES)})")
    return NounPhrase(words[-1], tuple(words[:-1]), plural)


def _parse_b_phrase(tokens: list[str], clause: int) -> NounPhrase:
    plural = len(tokens) > 1 and tokens[1] == B_PLURAL
    modifiers = tokens[2:] if plural else tokens[1:]
    adjectives = modifiers[0::2]
    agreements = modifiers[1::2]
    if not tokens or tokens[0] not in _B_NOUNS or len(modifiers) % 2 \
            or any(a not in _B_ADJECTIVES for a in adjectives) or len(set(adjectives)) != len(adjectives) \
            or any(g != B_ADJECTIVE_AGREEMENT[plural] for g in agreements):
        raise ValueError(f"toy translation: language-B clause {clause}: {tokens} is not a noun phrase "
                         f"'noun, optional {B_PLURAL!r}, then distinct adjectives each followed by "
                         f"{B_ADJECTIVE_AGREEMENT[plural]!r}' (nouns {sorted(_B_NOUNS)}, "
                         f"adjectives {sorted(_B_ADJECTIVES)})")
    return NounPhrase(_B_NOUNS[tokens[0]], tuple(_B_ADJECTIVES[a] for a in adjectives), plural)
