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

for _module in (tokenization, language_models, attention, seq2seq, evaluation, inference, compression, scaling,
                pretraining, interpretability, tuning, responsible, kernels):  # chapters 4-15
    EXERCISES.update((exercise.name, exercise) for exercise in _module.EXERCISES)
