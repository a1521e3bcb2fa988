"""The catalogue of exercises by name, and the notebook API: list, show, hint, solution, check."""

from __future__ import annotations

import difflib
from typing import Callable

from . import backprop, optimizers, probabilities
from .framework import Exercise, GradeResult

EXERCISES: dict[str, Exercise] = {
    exercise.name: exercise
    for module in (probabilities, backprop, optimizers)
    for exercise in module.EXERCISES
}


class UnknownExercise(LookupError):
    """A name that is not in the catalogue; the message suggests the closest names."""


def get_exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        close = difflib.get_close_matches(name, EXERCISES, n=3)
        suggestion = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownExercise(f"no exercise named {name!r}.{suggestion} "
                              f"list_exercises() gives all {len(EXERCISES)} names.")
    return EXERCISES[name]


def list_exercises() -> list[tuple[str, str]]:
    """(name, title) of every exercise, in teaching order."""
    return [(exercise.name, exercise.title) for exercise in EXERCISES.values()]


def show(name: str) -> None:
    """Print the question and the starter code to copy."""
    exercise = get_exercise(name)
    print(f"{exercise.title}\n\n{exercise.statement}\n\nStarter code:\n\n{exercise.starter_code}\n"
          f"Check it with: tinygrad_llm.exercises.check({name!r}, {exercise.function_name})\n"
          f"Stuck? {len(exercise.hints)} hints: tinygrad_llm.exercises.hint({name!r}, level=1)")


def hint(name: str, level: int = 1) -> None:
    """Print hint number `level` (1 is a nudge, the last is nearly the answer)."""
    exercise = get_exercise(name)
    count = len(exercise.hints)
    if not 1 <= level <= count:
        raise ValueError(f"exercise {name!r} has {count} hints: use level=1..{count}, got level={level}")
    print(f"Hint {level}/{count} for {name}: {exercise.hints[level - 1]}")


def solution(name: str) -> None:
    """Print the reference solution's source (try the hints first)."""
    print(get_exercise(name).solution_code)


def check(name: str, function: Callable) -> GradeResult:
    """Grade `function`, print PASS or a minimal failing example, and return the result (truthy iff passed)."""
    result = get_exercise(name).grade(function)
    print(result)
    return result


from . import (attention, compression, evaluation, inference, interpretability, kernels, language_models,  # noqa: E402
               pretraining, responsible, scaling, seq2seq, tokenization, tuning)

CHAPTER_MODULES = ((1, backprop), (2, probabilities), (3, optimizers), (4, tokenization), (5, language_models),
                   (6, attention), (7, seq2seq), (8, evaluation), (9, inference), (9, compression), (10, scaling),
                   (11, pretraining), (12, interpretability), (13, tuning), (14, responsible), (15, kernels))
"""The chapter of the interview bank (load_bank().chapters) whose notebook each module's exercises practise."""

EXERCISES.update((exercise.name, exercise) for _, module in CHAPTER_MODULES for exercise in module.EXERCISES)
EXERCISE_CHAPTERS: dict[str, int] = {exercise.name: chapter
                                     for chapter, module in CHAPTER_MODULES for exercise in module.EXERCISES}
