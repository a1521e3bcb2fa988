"""The `exercises` sub-command: list, show, hint, solution, and check a solution written in a .py file.

`register(subparsers)` adds it to the program's argparse sub-commands; each action sets `args.func`.
`exercises check` exits with status 0 when the solution passes and 1 when it does not (or cannot be graded).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from .framework import Exercise
from .registry import EXERCISES, get_exercise, hint, list_exercises, show, solution


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "exercises", help="interview-prep exercises that check themselves",
        description="Interview-prep exercises in plain NumPy, graded by hypothesis properties.")
    actions = parser.add_subparsers(dest="exercises_action", metavar="ACTION", required=True)

    actions.add_parser("list", help="list every exercise").set_defaults(func=_list)
    _with_name(actions.add_parser("show", help="print an exercise and its starter code")).set_defaults(func=_show)
    hint_parser = _with_name(actions.add_parser("hint", help="print one hint (1 is a nudge)"))
    hint_parser.add_argument("--level", type=int, default=1, help="which hint, from 1 (default: 1)")
    hint_parser.set_defaults(func=_hint)
    check_parser = _with_name(actions.add_parser("check", help="grade the function defined in a .py file"))
    check_parser.add_argument("file", metavar="FILE.py", type=Path, help="a file that defines the function")
    check_parser.set_defaults(func=_check)
    _with_name(actions.add_parser("solution", help="print the reference solution")).set_defaults(func=_solution)
    return parser


def _with_name(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("name", metavar="NAME", choices=list(EXERCISES),
                        help="an exercise name, see `exercises list`")
    return parser


def _list(args: argparse.Namespace) -> None:
    names_and_titles = list_exercises()
    width = max(len(name) for name, _ in names_and_titles)
    for name, title in names_and_titles:
        print(f"{name:<{width}}  {title}")


def _show(args: argparse.Namespace) -> None:
    show(args.name)


def _hint(args: argparse.Namespace) -> None:
    try:
        hint(args.name, args.level)
    except ValueError as error:
        sys.exit(f"error: {error}")


def _solution(args: argparse.Namespace) -> None:
    solution(args.name)


def _check(args: argparse.Namespace) -> None:
    exercise = get_exercise(args.name)
    result = exercise.grade(_load_solution(args.file, exercise))
    print(result)
    if not result:
        sys.exit(1)


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
