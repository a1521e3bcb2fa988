"""The interview bank: complete, well formed, every link resolves, every id the project mentions is in it, and the
generated pages are current. A broken link names the entry and why, so the fix is one edit of bank.toml."""
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_llm.question_bank import load_bank
from tinygrad_llm.question_bank.bank import parse_bank
from tinygrad_llm.question_bank.command import PAGES_FOLDER
from tinygrad_llm.question_bank.links import broken_link, broken_links, unknown_ids
from tinygrad_llm.question_bank.pages import stale_pages

pytestmark = pytest.mark.bank

ROOT = Path(__file__).resolve().parent.parent
BANK = load_bank()


def test_the_bank_holds_every_question_and_every_wrong_answer():
    assert list(BANK.questions) == [f"Q{n:02d}" for n in range(1, 46)]
    assert list(BANK.misconceptions) == [f"M{n:02d}" for n in range(1, 62)]


def test_every_entry_is_complete():
    for question in BANK.questions.values():
        assert question.question.strip() and all(bullet.strip() for bullet in question.answer), question.id
        assert question.follow_ups, f"{question.id} has no follow-up questions"
    for misconception in BANK.misconceptions.values():
        assert misconception.wrong.strip() and misconception.correction.strip(), misconception.id
        assert misconception.why_believed.strip(), f"{misconception.id} does not say why people believe it"
        assert misconception.questions, f"{misconception.id} belongs to no question"


def test_questions_and_wrong_answers_point_at_each_other():
    for question in BANK.questions.values():
        for m in question.misconceptions:
            assert question.id in BANK.misconceptions[m].questions, f"{question.id} names {m}, which does not name it"
    for misconception in BANK.misconceptions.values():
        for q in misconception.questions:
            assert misconception.id in BANK.questions[q].misconceptions, \
                f"{misconception.id} names {q}, which does not name it"


def test_every_link_resolves():
    assert broken_links(BANK, ROOT) == []


def test_a_backed_question_links_to_what_measures_it_and_a_test_that_proves_it():
    for question in BANK.questions.values():
        if question.status == "backed":
            assert question.links.notebook_sections or question.links.experiments, question.id
            assert question.links.tests, f"{question.id} is marked backed but links no test"


def test_a_wrong_answer_kept_as_a_bug_links_the_test_that_catches_it():
    for misconception in BANK.misconceptions.values():
        if misconception.kind == "bug":
            assert misconception.links.tests, f"{misconception.id} is a kept bug without the test that catches it"


def test_every_id_the_project_mentions_is_in_the_bank():
    assert unknown_ids(BANK, ROOT) == {}


def test_the_generated_pages_are_current():
    assert stale_pages(BANK, PAGES_FOLDER) == [], "run `python -m tinygrad_llm bank --write-pages` and commit docs/bank"


@pytest.mark.parametrize("kind, target, why", [
    ("notebook_sections", "01_autograd#No such heading", "no heading"),
    ("notebook_sections", "99_missing#Anything", "no notebook"),
    ("experiments", "no_such_module.f", "no module"),
    ("experiments", "dp_sgd.no_such_function", "no function"),
    ("exercises", "no_such_exercise", "no exercise"),
    ("tests", "tests/test_question_bank.py::test_not_here", "no test function"),
    ("tests", "tests/missing.py::test_x", "no test file"),
])
def test_a_broken_link_is_reported_with_its_reason(kind, target, why):
    assert why in broken_link(kind, target, ROOT)


CHAPTERS = '[chapters]\n1 = { title = "One", notebook = "" }\n'
QUESTION = ('[[question]]\nid = "Q01"\nchapter = 1\nquestion = "Why?"\nanswer = ["Because."]\nfollow_ups = []\n'
            'status = "backed"\nmisconceptions = []\n')


@pytest.mark.parametrize("text, message", [
    (CHAPTERS + QUESTION.replace('"Q01"', '"Q1"'), "Q and two digits"),
    (CHAPTERS + QUESTION.replace("chapter = 1", "chapter = 2"), "chapter 2"),
    (CHAPTERS + QUESTION.replace('["Because."]', '["a", "b", "c", "d", "e", "f"]'), "6 bullets"),
    (CHAPTERS + QUESTION.replace('"backed"', '"done"'), "status 'done'"),
    (CHAPTERS + QUESTION + QUESTION, "appear more than once"),
    (CHAPTERS + QUESTION.replace("misconceptions = []", 'misconceptions = ["M09"]'), "M09"),
])
def test_a_malformed_entry_is_refused_by_name(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bank(text)


def test_bank_show_prints_one_entry_and_refuses_an_unknown_id():
    command = [sys.executable, "-m", "tinygrad_llm", "bank", "--show"]
    shown = subprocess.run(command + ["m56"], capture_output=True, text=True, cwd=ROOT)
    assert shown.returncode == 0 and "### M56" in shown.stdout and BANK.misconceptions["M56"].correction in shown.stdout
    missing = subprocess.run(command + ["Q00"], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "no entry 'Q00'" in missing.stderr
