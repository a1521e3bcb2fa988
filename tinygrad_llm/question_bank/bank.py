"""The interview bank as data: bank.toml, read into plain dataclasses and checked for shape on the way in.

Why a data file and not Python: the same entries feed the generated chapter pages (pages.py), the link checker
(links.py) and the quiz, and a learner or a contributor can read and edit them without reading code. TOML keeps
multi-line prose readable and is parsed by the standard library (tomllib; tomli before Python 3.11).

A question holds a model answer (five bullets at most: what fits in a minute of speaking), the follow-ups an
interviewer asks next, its status ("backed" when something in the project measures it, "not yet backed" when the
measurement is still missing, "conceptual" when none is called for) and its links. A misconception holds the wrong
answer as people give it, the correction, and why people believe it.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, before it joined the standard library
    import tomli as tomllib

STATUSES = ("backed", "not yet backed", "conceptual")
KINDS = ("bug", "concept")
LINK_FIELDS = ("notebook_sections", "experiments", "exercises", "tests")
QUESTION_ID = re.compile(r"^Q\d{2}$")
MISCONCEPTION_ID = re.compile(r"^M\d{2}$")


@dataclass(frozen=True)
class Links:
    """Where the project backs an entry: "<notebook stem>#<heading>", "<experiments module>.<function>",
    exercise names, and "tests/<file>.py::<test function>"."""
    notebook_sections: tuple = ()
    experiments: tuple = ()
    exercises: tuple = ()
    tests: tuple = ()

    def __iter__(self):
        """(kind, target) pairs, for the link checker."""
        for kind in LINK_FIELDS:
            for target in getattr(self, kind):
                yield kind, target


@dataclass(frozen=True)
class Question:
    id: str
    chapter: int
    question: str
    answer: tuple
    follow_ups: tuple
    status: str
    misconceptions: tuple
    links: Links = field(default_factory=Links)


@dataclass(frozen=True)
class Misconception:
    id: str
    chapter: int
    wrong: str
    correction: str
    why_believed: str
    kind: str
    questions: tuple
    links: Links = field(default_factory=Links)


@dataclass(frozen=True)
class Bank:
    chapters: dict  # number -> {"title", "notebook"}
    questions: dict  # id -> Question, in id order
    misconceptions: dict  # id -> Misconception, in id order

    def chapter_entries(self, chapter: int) -> tuple[list, list]:
        """(questions, misconceptions) of one chapter."""
        return ([q for q in self.questions.values() if q.chapter == chapter],
                [m for m in self.misconceptions.values() if m.chapter == chapter])

    def status_counts(self) -> dict:
        """{status: number of questions}: how much of the bank running code backs."""
        return {status: sum(q.status == status for q in self.questions.values()) for status in STATUSES}


def _entry_error(entry: dict, problem: str) -> ValueError:
    return ValueError(f"bank.toml: entry {entry.get('id', '<no id>')!r}: {problem}")


def _links(entry: dict) -> Links:
    for kind in LINK_FIELDS:
        if not isinstance(entry.get(kind, []), list):
            raise _entry_error(entry, f"{kind} must be a list of strings")
    return Links(**{kind: tuple(entry.get(kind, [])) for kind in LINK_FIELDS})


def _question(entry: dict, chapters: dict) -> Question:
    if not QUESTION_ID.match(str(entry.get("id", ""))):
        raise _entry_error(entry, "a question id is Q and two digits (Q07)")
    if entry.get("chapter") not in chapters:
        raise _entry_error(entry, f"chapter {entry.get('chapter')!r} is not one of the [chapters] table's")
    if not 1 <= len(entry.get("answer", [])) <= 5:
        raise _entry_error(entry, f"the answer has {len(entry.get('answer', []))} bullets; give 1 to 5 (what fits "
                                  "in a minute of speaking)")
    if entry.get("status") not in STATUSES:
        raise _entry_error(entry, f"status {entry.get('status')!r} must be one of {STATUSES}")
    return Question(entry["id"], entry["chapter"], entry["question"], tuple(entry["answer"]),
                    tuple(entry.get("follow_ups", [])), entry["status"], tuple(entry.get("misconceptions", [])),
                    _links(entry))


def _misconception(entry: dict, chapters: dict) -> Misconception:
    if not MISCONCEPTION_ID.match(str(entry.get("id", ""))):
        raise _entry_error(entry, "a misconception id is M and two digits (M07)")
    if entry.get("chapter") not in chapters:
        raise _entry_error(entry, f"chapter {entry.get('chapter')!r} is not one of the [chapters] table's")
    if entry.get("kind") not in KINDS:
        raise _entry_error(entry, f"kind {entry.get('kind')!r} must be one of {KINDS}")
    return Misconception(entry["id"], entry["chapter"], entry["wrong"], entry["correction"], entry["why_believed"],
                         entry["kind"], tuple(entry.get("questions", [])), _links(entry))


def parse_bank(text: str) -> Bank:
    """A Bank from bank.toml's text, with a clear error for an entry that breaks the schema."""
    data = tomllib.loads(text)
    chapters = {int(number): dict(chapter) for number, chapter in data.get("chapters", {}).items()}
    questions = [_question(entry, chapters) for entry in data.get("question", [])]
    misconceptions = [_misconception(entry, chapters) for entry in data.get("misconception", [])]
    for kind, entries in (("question", questions), ("misconception", misconceptions)):
        ids = [entry.id for entry in entries]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"bank.toml: {kind} ids {duplicated} appear more than once")
    bank = Bank(dict(sorted(chapters.items())), {q.id: q for q in sorted(questions, key=lambda q: q.id)},
                {m.id: m for m in sorted(misconceptions, key=lambda m: m.id)})
    for question in bank.questions.values():
        unknown = [m for m in question.misconceptions if m not in bank.misconceptions]
        if unknown:
            raise ValueError(f"bank.toml: question {question.id} names misconceptions {unknown} the bank lacks")
    for misconception in bank.misconceptions.values():
        unknown = [q for q in misconception.questions if q not in bank.questions]
        if unknown:
            raise ValueError(f"bank.toml: misconception {misconception.id} names questions {unknown} the bank lacks")
    return bank


def load_bank() -> Bank:
    """The bank shipped with the package."""
    return parse_bank(resources.files(__package__).joinpath("bank.toml").read_text(encoding="utf-8"))
