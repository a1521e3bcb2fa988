"""The `exercises` sub-command: list (by chapter, with done marks), show, hint, solution, and check a .py file.

`register(subparsers)` adds it to the program's argparse sub-commands; each action sets `args.func`.
`exercises check` exits with status 0 when the solution passes and 1 when it does not (or cannot be graded); every
graded check is remembered (progress.py), and a pass marks the exercise done. `exercises solution` asks first, so a
learner does not read the answer by accident before trying.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import zlib
from pathlib import Path
from typing import Callable

from ..learner_progress import progress_path
from ..question_bank.bank import Bank, load_bank
from .framework import Exercise, GradeResult
from .progress import ExerciseRecord, exercise_records, record_check, record_for
from .registry import EXERCISE_CHAPTERS, EXERCISES, get_exercise, hint, show, solution


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "exercises", help="interview-prep exercises that check themselves",
        description="Interview-prep exercises in plain NumPy, graded by hypothesis properties.")
    actions = parser.add_subparsers(dest="exercises_action", metavar="ACTION", required=True)

    list_parser = actions.add_parser("list", help="list the exercises by chapter, with difficulty and done marks")
    list_parser.add_argument("--chapter", type=int, metavar="N", help="only chapter N (see `tinygrad-llm bank`)")
    list_parser.set_defaults(func=_list)
    _with_name(actions.add_parser("show", help="print an exercise and its starter code")).set_defaults(func=_show)
    hint_parser = _with_name(actions.add_parser("hint", help="print one hint (1 is a nudge)"))
    hint_parser.add_argument("--level", type=int, default=1, help="which hint, from 1 (default: 1)")
    hint_parser.set_defaults(func=_hint)
    check_parser = _with_name(actions.add_parser("check", help="grade the function defined in a .py file"))
    check_parser.add_argument("file", metavar="FILE.py", type=Path, help="a file that defines the function")
    check_parser.set_defaults(func=_check)
    solution_parser = _with_name(actions.add_parser("solution", help="print the reference solution (asks first)"))
    solution_parser.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    solution_parser.set_defaults(func=_solution)
    return parser


def _with_name(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("name", metavar="NAME", choices=list(EXERCISES),
                        help="an exercise name, see `exercises list`")
    return parser


def _list(args: argparse.Namespace) -> None:
    chapters = load_bank().chapters
    with_exercises = sorted(set(EXERCISE_CHAPTERS.values()))
    if args.chapter is not None and args.chapter not in with_exercises:
        sys.exit(f"error: exercises list --chapter {args.chapter}: no exercises for that chapter; chapters with "
                 f"exercises are {with_exercises[0]}-{with_exercises[-1]} (`tinygrad-llm exercises list` shows them)")
    shown = [name for name, chapter in EXERCISE_CHAPTERS.items() if args.chapter in (None, chapter)]
    done = {name for name, record in exercise_records().items() if record.done}
    width = max(len(name) for name in shown)
    for number in with_exercises:
        names = [name for name in shown if EXERCISE_CHAPTERS[name] == number]
        if names:
            print(f"Chapter {number}: {chapters[number]['title']}")
        for name in names:
            mark = "x" if name in done else " "
            print(f"  [{mark}] {name:<{width}}  {EXERCISES[name].difficulty:<6}  {EXERCISES[name].title}")
    where = "" if args.chapter is None else f" in chapter {args.chapter}"
    print(f"{len(done.intersection(shown))} of {len(shown)} exercises done{where}.")


def _show(args: argparse.Namespace) -> None:
    show(args.name)


def _hint(args: argparse.Namespace) -> None:
    try:
        hint(args.name, args.level)
    except ValueError as error:
        sys.exit(f"error: {error}")


def _solution(args: argparse.Namespace, ask: Callable[[str], str] = input) -> None:
    """Print the reference only after a yes: an answer read before trying teaches much less."""
    if record_for(args.name).attempts:
        question = "Show the solution? [y/N] "
    else:
        question = (f"You have not tried {args.name} yet; try `tinygrad-llm exercises check {args.name} file.py` "
                    f"first. Show the solution anyway? [y/N] ")
    if args.yes or _said_yes(question, ask):
        solution(args.name)


def _said_yes(question: str, ask: Callable[[str], str]) -> bool:
    """Only y or yes counts; an empty answer, end of input or Ctrl-C means no."""
    try:
        return ask(question).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        print()
        return False


def _check(args: argparse.Namespace) -> None:
    exercise = get_exercise(args.name)
    result = exercise.grade(_load_solution(args.file, exercise))
    print(result)
    record = _remember(result)
    if not result:
        sys.exit(1)
    print("Properties that held:")
    for check in exercise.checks:
        print(f"  - {check.name}")
    if record is not None:
        print(f"Marked done on {record.passed_on} (progress kept in {progress_path()}).")
    print(_follow_up(exercise.name, load_bank()))


def _remember(result: GradeResult) -> ExerciseRecord | None:
    """Record the check; a progress file that cannot be written costs the record, never the grade."""
    try:
        return record_check(result.exercise, result.passed)
    except OSError as error:
        print(f"warning: could not save progress to {progress_path()} ({error}); this check is not recorded. Set "
              f"TGL_PROGRESS_FILE to a file you can write to keep progress elsewhere.", file=sys.stderr)
        return None


def _follow_up(name: str, bank: Bank) -> str:
    """One follow-up an interviewer might ask next, from the bank question that links this exercise (else one of its
    chapter's), picked by a stable hash of the name so the same exercise always offers the same follow-up."""
    chapter = EXERCISE_CHAPTERS[name]
    linked = [q for q in bank.questions.values() if name in q.links.exercises and q.follow_ups]
    candidates = linked or [q for q in bank.questions.values() if q.chapter == chapter and q.follow_ups]
    seed = zlib.crc32(name.encode())
    question = candidates[seed % len(candidates)]
    follow_up = question.follow_ups[seed // len(candidates) % len(question.follow_ups)]
    return (f"An interviewer might follow up with: {follow_up}\n"
            f"  (after {question.id}: {question.question} Model answer: `tinygrad-llm bank --show {question.id}`)")


def _load_solution(path: Path, exercise: Exercise) -> Callable:
    """Import the learner's file from its path and return the function the exercise's signature names."""
    starter_tip = f"`tinygrad-llm exercises show {exercise.name}` prints the starter code"
    if not path.is_file():
        sys.exit(f"error: {path} not found. Write `{exercise.function_name}` in a .py file ({starter_tip}).")
    spec = importlib.util.spec_from_file_location(f"exercise_solution_{exercise.name}", path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: cannot import {path}: give the file a .py name")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a learner's syntax or import error is reported, not dumped
        sys.exit(f"error: could not import {path}: {type(error).__name__}: {error}")
    function = getattr(module, exercise.function_name, None)
    if not callable(function):
        sys.exit(f"error: {path} defines no function named `{exercise.function_name}`. "
                 f"The exercise expects:\n    {exercise.signature}\n({starter_tip}).")
    return function
