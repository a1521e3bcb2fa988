"""The `exercises` command as a learner uses it: list by chapter with done marks, check a file (a pass is
remembered and offers a follow-up question), a solution that asks first, and hints that stop short of the answer.

Progress goes to a file under tmp_path (TGL_PROGRESS_FILE), never to the learner's home.
"""
import argparse
import json
import re
import subprocess
import sys
import textwrap
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygrad_llm.exercises import command
from tinygrad_llm.exercises.framework import code_lines
from tinygrad_llm.exercises.progress import ExerciseRecord, exercise_records, record_check, record_for
from tinygrad_llm.exercises.registry import EXERCISE_CHAPTERS, EXERCISES, get_exercise
from tinygrad_llm.question_bank.bank import load_bank

pytestmark = pytest.mark.bank

GOOD_SOFTMAX = """
    import numpy as np

    def softmax(x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
"""
OVERFLOWING_SOFTMAX = """
    import numpy as np

    def softmax(x, axis=-1):
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)
"""


@pytest.fixture(autouse=True)
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv("TGL_PROGRESS_FILE", str(path))
    return path


def run_command(argv, capsys, ask=None):
    """Parse and run `tinygrad-llm exercises ...` as __main__ does; `ask` answers the solution prompt."""
    parser = argparse.ArgumentParser(prog="tinygrad-llm")
    command.register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["exercises", *argv])
        code = (args.func(args, ask) if ask else args.func(args)) or 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


def write_solution(tmp_path, source):
    path = tmp_path / "solution.py"
    path.write_text(textwrap.dedent(source))
    return path


# ---- list ---------------------------------------------------------------------------------------------------

def test_every_exercise_belongs_to_a_bank_chapter_and_has_a_difficulty():
    chapters = load_bank().chapters
    assert set(EXERCISE_CHAPTERS) == set(EXERCISES)
    assert all(chapter in chapters for chapter in EXERCISE_CHAPTERS.values())
    assert {exercise.difficulty for exercise in EXERCISES.values()} == {"easy", "medium", "hard"}


def test_list_groups_by_chapter_and_marks_what_is_done(capsys):
    record_check("softmax", passed=True)
    record_check("adam_step", passed=False)
    code, out, _ = run_command(["list"], capsys)
    assert code == 0
    assert out.index("Chapter 1: Autograd") < out.index("sigmoid_backward") < out.index("Chapter 2: An MLP")
    assert all(name in out for name in EXERCISES)
    softmax_line = next(line for line in out.splitlines() if " softmax " in line)
    assert softmax_line.startswith("  [x]") and "easy" in softmax_line and get_exercise("softmax").title in softmax_line
    assert next(line for line in out.splitlines() if " adam_step " in line).startswith("  [ ]")
    assert out.splitlines()[-1] == f"1 of {len(EXERCISES)} exercises done."


def test_list_one_chapter_and_explain_a_chapter_without_exercises(capsys):
    code, out, _ = run_command(["list", "--chapter", "3"], capsys)
    assert code == 0 and "Chapter 3: Training" in out and "Chapter 2" not in out and "adam_step" in out
    assert out.splitlines()[-1].startswith("0 of ") and out.splitlines()[-1].endswith(" done in chapter 3.")
    code, _, err = run_command(["list", "--chapter", "16"], capsys)
    assert code == 1 and "no exercises for that chapter" in err and "1-15" in err


# ---- check --------------------------------------------------------------------------------------------------

def test_a_pass_is_recorded_lists_its_properties_and_offers_a_follow_up(tmp_path, capsys, progress_file):
    code, out, _ = run_command(["check", "softmax", str(write_solution(tmp_path, GOOD_SOFTMAX))], capsys)
    assert code == 0 and "PASS" in out
    assert all(f"  - {check.name}" in out for check in get_exercise("softmax").checks)
    today = date.today().isoformat()
    assert f"Marked done on {today}" in out and str(progress_file) in out
    assert json.loads(progress_file.read_text())["exercises"]["softmax"] == {
        "attempts": 1, "last_attempt": today, "passed_on": today}
    softmax_questions = [q for q in load_bank().questions.values() if "softmax" in q.links.exercises]
    assert any(follow_up in out for question in softmax_questions for follow_up in question.follow_ups)


def test_a_fail_counts_as_an_attempt_but_not_as_done(tmp_path, capsys):
    code, out, _ = run_command(["check", "softmax", str(write_solution(tmp_path, OVERFLOWING_SOFTMAX))], capsys)
    assert code == 1 and "FAIL" in out and "Properties that held" not in out
    assert record_for("softmax") == ExerciseRecord(attempts=1, last_attempt=date.today().isoformat())


def test_a_file_that_cannot_be_imported_is_not_an_attempt(tmp_path, capsys):
    code, _, err = run_command(["check", "softmax", str(tmp_path / "missing.py")], capsys)
    assert code == 1 and "not found" in err
    other = write_solution(tmp_path, "def something_else():\n    pass\n")
    code, _, err = run_command(["check", "softmax", str(other)], capsys)
    assert code == 1 and "defines no function named `softmax`" in err and "def softmax(x" in err
    broken = write_solution(tmp_path, "def softmax(x, axis=-1)\n    return x\n")
    code, _, err = run_command(["check", "softmax", str(broken)], capsys)
    assert code == 1 and "SyntaxError" in err
    assert exercise_records() == {}


def test_an_unwritable_progress_file_costs_the_record_not_the_grade(tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("TGL_PROGRESS_FILE", str(tmp_path / "a_file" / "progress.json"))
    bubble = write_solution(tmp_path, "def pipeline_bubble_fraction(stages, micro_batches):\n"
                                      "    return (stages - 1) / (micro_batches + stages - 1)\n")
    code, out, err = run_command(["check", "pipeline_bubble_fraction", str(bubble)], capsys)
    assert code == 0 and "PASS" in out and "Marked done" not in out
    assert "could not save progress" in err and "TGL_PROGRESS_FILE" in err


def test_every_exercise_offers_a_follow_up_from_the_bank():
    bank = load_bank()
    follow_ups = {follow_up for question in bank.questions.values() for follow_up in question.follow_ups}
    offers = {name: command._follow_up(name, bank) for name in EXERCISES}
    assert all(any(follow_up in offer for follow_up in follow_ups) for offer in offers.values())
    assert offers == {name: command._follow_up(name, bank) for name in EXERCISES}  # the same one every time


# ---- progress -----------------------------------------------------------------------------------------------

@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=st.lists(st.booleans(), max_size=5))
def test_done_means_some_check_passed_and_keeps_the_first_pass_date(progress_file, outcomes):
    progress_file.unlink(missing_ok=True)
    for day, passed in enumerate(outcomes, start=1):
        record_check("softmax", passed, today=date(2026, 1, day))
    record = record_for("softmax")
    assert record.attempts == len(outcomes)
    assert record.done == any(outcomes)
    if any(outcomes):
        assert record.passed_on == date(2026, 1, outcomes.index(True) + 1).isoformat()


@pytest.mark.parametrize("entry", [3, "done", None, [], {"attempts": "two", "passed_on": 5}])
def test_an_entry_edited_into_the_wrong_shape_reads_as_never_tried(progress_file, entry):
    progress_file.write_text(json.dumps({"exercises": {"softmax": entry}, "quiz": {"Q01": {"box": 2}}}))
    assert record_for("softmax") == ExerciseRecord()
    assert record_check("softmax", passed=True).attempts == 1
    assert json.loads(progress_file.read_text())["quiz"] == {"Q01": {"box": 2}}  # the other section survives


# ---- solution -----------------------------------------------------------------------------------------------

def answers(*replies):
    """An input function that records each prompt and gives the next reply (an exception is raised instead)."""
    prompts = []

    def ask(prompt):
        prompts.append(prompt)
        reply = replies[len(prompts) - 1]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    ask.prompts = prompts
    return ask


@pytest.mark.parametrize("reply", ["", "n", "no", "maybe", EOFError(), KeyboardInterrupt()])
def test_solution_before_any_attempt_asks_and_anything_but_yes_is_no(capsys, reply):
    ask = answers(reply)
    code, out, _ = run_command(["solution", "adam_step"], capsys, ask)
    assert code == 0 and "def adam_step(" not in out
    assert ask.prompts == ["You have not tried adam_step yet; try `tinygrad-llm exercises check adam_step file.py` "
                           "first. Show the solution anyway? [y/N] "]


def test_solution_after_an_attempt_asks_plainly_and_yes_shows_it(capsys):
    record_check("adam_step", passed=False)
    ask = answers(" Y ")
    code, out, _ = run_command(["solution", "adam_step"], capsys, ask)
    assert code == 0 and "def adam_step(" in out and ask.prompts == ["Show the solution? [y/N] "]


def test_solution_yes_flag_does_not_ask(capsys):
    ask = answers()
    code, out, _ = run_command(["solution", "adam_step", "--yes"], capsys, ask)
    assert code == 0 and "def adam_step(" in out and ask.prompts == []


# ---- hints --------------------------------------------------------------------------------------------------

def key_lines(exercise):
    """The reference's lines of code worth giving away, spaces removed; lines as short as `return 1.0` say nothing."""
    lines = (line for function in (*exercise.helpers, exercise.reference) for line in code_lines(function))
    return {"".join(line.split()) for line in lines if len("".join(line.split())) >= 10}


@pytest.mark.parametrize("name", list(EXERCISES))
def test_no_hint_gives_away_a_line_of_the_reference(name):
    exercise = get_exercise(name)
    for level, hint in enumerate(exercise.hints, start=1):
        given_away = [line for line in key_lines(exercise) if line in "".join(hint.split())]
        assert not given_away, (f"hint {level} of {name} contains the reference's line(s) {given_away}: reword it "
                                f"in words so the learner still writes the code")


# A statement a learner could paste. `return` then a name, number or bracket followed by an operator, a call, an
# index, a comma or a conditional is a return statement ("return g * y", "return float(", "return 1.0 if", "return
# [..."), while prose such as "return both." or "return the new w with ..." is not. `name = expression;` is an
# assignment that a `;` chains to the next statement, or that ends the hint on a `)` or `]` like a pasted line. The
# `=` has spaces on both sides, as in a statement, so a keyword argument such as `kind="stable"` is not one; the
# expression may not start with `=` (so `a == b;` is a comparison) and may not cross ". " (so "N is 3. Then ...;"
# stays prose).
RETURN_STATEMENT = re.compile(r"\breturn\s+(?:[(\[]|[\w.]+\s*(?:[-+*/@%(\[,<>]|if\b|for\b))")
CHAINED_ASSIGNMENT = re.compile(r"\b[A-Za-z_]\w*\s+=\s+[^\s=](?:(?!\. )[^;])*(?:;|[)\]]$)")


@pytest.mark.parametrize("name", list(EXERCISES))
def test_last_hint_names_the_final_step_in_words_not_code(name):
    last = get_exercise(name).hints[-1]
    code = RETURN_STATEMENT.search(last) or CHAINED_ASSIGNMENT.search(last)
    assert not code, (f"the last hint of {name} is code a learner can paste ({code.group(0)!r}): say in words which "
                      f"quantity, axis and edge case the final step uses, and leave the code to the learner")


# ---- one real process ---------------------------------------------------------------------------------------

def test_cli_in_a_subprocess_leaves_no_hypothesis_folder(tmp_path, progress_file):
    starter = tmp_path / "starter.py"
    starter.write_text(get_exercise("unbroadcast").starter_code)
    program = ("import argparse, sys\n"
               "from tinygrad_llm.exercises.command import register\n"
               "parser = argparse.ArgumentParser(prog='tinygrad-llm')\n"
               "register(parser.add_subparsers(dest='command', required=True))\n"
               "args = parser.parse_args(sys.argv[1:])\n"
               "sys.exit(args.func(args))\n")
    run = subprocess.run([sys.executable, "-c", program, "exercises", "check", "unbroadcast", str(starter)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "not implemented yet" in run.stdout
    assert "Traceback" not in run.stderr
    assert not (tmp_path / ".hypothesis").exists()  # derandomized, no example database, no constants cache
    assert json.loads(progress_file.read_text())["exercises"]["unbroadcast"]["attempts"] == 1
