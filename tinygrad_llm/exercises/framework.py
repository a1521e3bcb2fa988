"""What an exercise is, and how its grader finds the smallest input that shows a bug.

An exercise is a question (statement + starter code), tiered hints, a reference solution and a list of
checks. A check is a property every correct answer has, tested on inputs that hypothesis draws. The
first check that fails is shrunk by hypothesis to a minimal example, so the learner sees a 1x2 array
rather than a 5x5 one. Settings are fixed (derandomized, no example database), so a learner gets the
same example on every run and nothing is written to disk.
"""

from __future__ import annotations

import ast
import inspect
import tempfile
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from hypothesis.errors import Flaky

from .feedback import NotDeterministic, PropertyFailed, call_learner, expect_close

Inputs = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One property of a correct answer: `verify(learner, inputs)` raises PropertyFailed when it does not hold.

    `inputs` draws a dict of arguments in the order of the function's signature.
    """

    name: str
    inputs: st.SearchStrategy[Inputs]
    verify: Callable[[Callable, Inputs], None]
    max_examples: int = 30


def matches_reference(reference: Callable, inputs: st.SearchStrategy[Inputs], rtol: float | None,
                      atol: float | None, name: str = "", names: tuple[str, ...] | None = None,
                      max_examples: int = 30) -> Check:
    """The catch-all check: the learner's output equals the reference solution's, to the stated tolerance.

    `names` label the items of a returned tuple in messages; rtol=None compares structure and shapes only.
    """
    name = name or f"matches the reference {reference.__name__} (rtol={rtol:g}, atol={atol:g})"

    def verify(learner: Callable, drawn: Inputs) -> None:
        expected = reference(*drawn.values())
        expect_close(name, drawn, expected, call_learner(learner, drawn, name), rtol, atol, names)

    return Check(name, inputs, verify, max_examples)


def has_reference_shapes(reference: Callable, inputs: st.SearchStrategy[Inputs], name: str,
                         names: tuple[str, ...] | None = None) -> Check:
    """The learner returns what the reference returns (tuple, dict, list of arrays) with the same shapes and dtypes.

    Checked first, so a shape bug is reported as one rather than as wrong values.
    """
    return matches_reference(reference, inputs, rtol=None, atol=None, name=name, names=names)


def metamorphic(name: str, inputs: st.SearchStrategy[Inputs], reference: Callable,
                transform: Callable[[Inputs], tuple[Inputs, Inputs]], relation: Callable[[Any], Any],
                rtol: float, atol: float) -> Check:
    """The output must change in a known way when the input changes in a known way.

    `transform(drawn)` gives two argument dicts a and b; the check requires f(b) == relation(f(a)). For
    example softmax(x + c) == softmax(x). It uses only the learner's own outputs, so it names the concept
    that a wrong answer breaks rather than just "differs from the reference".
    """

    def verify(learner: Callable, drawn: Inputs) -> None:
        first, second = transform(drawn)
        first_output = call_learner(learner, first, name)
        expect_close(name, drawn, reference(*first.values()), first_output, None, None)
        expect_close(name, drawn, relation(first_output), call_learner(learner, second, name), rtol, atol)

    return Check(name, inputs, verify)


@dataclass(frozen=True)
class GradeResult:
    """The outcome of grading: truthy iff every check passed; `str()` is the message shown to the learner."""

    exercise: str
    passed: bool
    message: str
    failure: PropertyFailed | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"GradeResult({self.exercise!r}, passed={self.passed})"


@dataclass(frozen=True)
class Exercise:
    """An interview question with a self-checking grader.

    The reference solution's def line and docstring are also the starter code, so the contract (shapes,
    meaning of each argument) is written once. `helpers` are functions the reference calls; the solution
    shows their source first.
    """

    name: str
    title: str
    statement: str
    reference: Callable
    hints: tuple[str, ...]
    checks: tuple[Check, ...]
    helpers: tuple[Callable, ...] = ()

    @property
    def function_name(self) -> str:
        return self.reference.__name__

    @property
    def signature(self) -> str:
        """The def line, e.g. `def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:`."""
        header, _ = self._header_and_docstring()
        return " ".join(line.strip() for line in header.splitlines())

    @property
    def starter_code(self) -> str:
        header, docstring = self._header_and_docstring()
        return f"import numpy as np\n\n\n{header}\n{docstring}\n    raise NotImplementedError\n"

    @property
    def solution_code(self) -> str:
        sources = [textwrap.dedent(inspect.getsource(function)) for function in (*self.helpers, self.reference)]
        return "import numpy as np\n\n\n" + "\n\n".join(sources)

    @property
    def difficulty(self) -> str:
        """How much code a correct answer takes: "easy" (1-3 lines like the reference's), "medium" (4-7), "hard"."""
        lines = sum(len(code_lines(function)) for function in (*self.helpers, self.reference))
        return "easy" if lines <= 3 else "medium" if lines <= 7 else "hard"

    def starter_function(self) -> Callable:
        """The starter code as a function (it raises NotImplementedError), for trying the grader out."""
        namespace: dict[str, Any] = {}
        exec(compile(self.starter_code, f"<starter code for {self.name}>", "exec"), namespace)
        return namespace[self.function_name]

    def grade(self, learner: Callable) -> GradeResult:
        """Run the checks in order; the first that fails is reported with its minimal failing input."""
        if not callable(learner):
            raise TypeError(f"check('{self.name}', ...) needs your function, got {type(learner).__name__}; "
                            f"pass the function itself, e.g. check('{self.name}', {self.function_name})")
        with _hypothesis_storage_outside_the_working_directory():
            for check in self.checks:
                failure = _minimal_failure(check, learner)
                if failure is not None:
                    return GradeResult(self.name, False, failure.explain(self.function_name), failure)
        return GradeResult(self.name, True, f"PASS: {self.name} ({len(self.checks)} properties hold).")

    def _header_and_docstring(self) -> tuple[str, str]:
        """Split the reference's source into its def line(s) and its docstring lines."""
        source = textwrap.dedent(inspect.getsource(self.reference))
        function = ast.parse(source).body[0]
        docstring = function.body[0]
        if not (isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)):
            raise ValueError(f"the reference for exercise {self.name!r} needs a docstring: it is the starter's")
        lines = source.splitlines()
        return "\n".join(lines[:docstring.lineno - 1]), "\n".join(lines[docstring.lineno - 1:docstring.end_lineno])


def code_lines(function: Callable) -> list[str]:
    """The lines of code in a function's body, stripped; the def line, docstring, comments and blank lines left out."""
    source = textwrap.dedent(inspect.getsource(function))
    definition = ast.parse(source).body[0]
    statements = definition.body
    if isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
        statements = statements[1:]
    source_lines = source.splitlines()
    lines = (line.split("#")[0].strip()
             for statement in statements for line in source_lines[statement.lineno - 1:statement.end_lineno])
    return [line for line in lines if line]


@contextmanager
def _hypothesis_storage_outside_the_working_directory() -> Iterator[None]:
    """Point Hypothesis's storage at a temporary folder while grading, then restore it.

    Even with database=None, Hypothesis caches constants it reads from local source files under
    ./.hypothesis; grading must leave nothing behind in the learner's folder.
    """
    previous = storage_directory(intent_to_write=False).home_directory
    with tempfile.TemporaryDirectory(prefix="tgl-exercises-") as scratch:
        set_hypothesis_home_dir(scratch)
        try:
            yield
        finally:
            set_hypothesis_home_dir(previous)


def _minimal_failure(check: Check, learner: Callable) -> PropertyFailed | None:
    """Run one check under hypothesis and return the shrunk failure, or None if the property held."""

    @settings(max_examples=check.max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=(Phase.generate, Phase.shrink), verbosity=Verbosity.quiet, print_blob=False)
    @given(inputs=check.inputs)
    def property_holds(inputs: Inputs) -> None:
        check.verify(learner, inputs)

    try:
        property_holds()
    except PropertyFailed as failure:
        return failure
    except Flaky as flaky:  # hypothesis groups the failures it could not reproduce
        seen = [error for error in getattr(flaky, "exceptions", ()) if isinstance(error, PropertyFailed)]
        return NotDeterministic(check.name, seen[0].inputs if seen else {})
    return None
