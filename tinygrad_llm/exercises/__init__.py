"""Interview-prep exercises that check themselves.

Each exercise is a classic question (softmax, cross-entropy and their gradients, backprop by hand, optimizer
steps) to solve in plain NumPy. A grader built on hypothesis properties either says PASS or shows the
smallest input it found on which your answer breaks, with what was expected and which property failed.

    import tinygrad_llm.exercises as ex
    ex.list_exercises()                  # [(name, title), ...]
    ex.show("softmax")                   # the question and starter code
    ex.hint("softmax", level=1)          # hints go from a nudge to nearly the answer
    result = ex.check("softmax", my_softmax)
    ex.solution("softmax")               # the reference solution

From a shell: `tinygrad-llm exercises check softmax my_softmax.py`.
"""

from .framework import Check, Exercise, GradeResult
from .registry import EXERCISES, UnknownExercise, check, get_exercise, hint, list_exercises, show, solution

__all__ = ["EXERCISES", "Check", "Exercise", "GradeResult", "UnknownExercise", "check", "get_exercise", "hint",
           "list_exercises", "show", "solution"]
