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
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from .feedback import PropertyFailed, call_learner, expect_close

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


def matches_reference(reference: Callable, inputs: st.SearchStrategy[Inputs], rtol: float, atol: float,
                      name: str = "", names: tuple[str, ...] | None = None, max_examples: int = 30) -> Check:
    """The catch-all check: the learner's output equals the reference solution's, to the stated tolerance."""
    name = name or f"matches the reference {reference.__name__} (rtol={rtol:g}, atol={atol:g})"

    def verify(learner: Callable, drawn: Inputs) -> None:
        expected = reference(*drawn.values())
        expect_close(name, drawn, expected, call_learner(learner, drawn, name), rtol, atol, names)

    return Check(name, inputs, verify, max_examples)


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
        status = "passed" if self.passed else f"failed: {self.failure.property_name if self.failure else '?'}"
        return f"GradeResult({self.exercise!r}, {status})"


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
    helpers: tuple[Callable, ...] = field(default=())

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

    def starter_function(self) -> Callable:
        """The starter code as a function (it raises NotImplementedError), for trying the grader out."""
        namespace: dict[str, Any] = {}
        exec(compile(self.starter_code, f"<starter code for {self.name}>", "exec"), namespace)
        return namespace[self.function_name]

    def grade(self, learner: Callable) -> GradeResult:
        if not callable(learner):
            raise TypeError(f"check('{self.name}', ...) needs your function, got {type(learner).__name__}; "
                            f"pass the function itself, e.g. check('{self.name}', {self.function_name})")
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


def _minimal_failure(check: Check, learner: Callable) -> PropertyFailed | None:
    """Run one check under hypothesis and return the shrunk failure, or None if the property held."""

    @settings(max_examples=check.max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), verbosity=Verbosity.quiet, print_blob=False)
    @given(inputs=check.inputs)
    def property_holds(inputs: Inputs) -> None:
        check.verify(learner, inputs)

    try:
        property_holds()
    except PropertyFailed as failure:
        return failure
    except Flaky:
        return PropertyFailed(check.name, {}, "the same output for the same input", "different outputs",
                              "your function is not deterministic: it passed and failed on the same input "
                              "(does it use randomness or change global state?)")
    return None
