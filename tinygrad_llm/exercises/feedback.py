"""How a grader tells a learner what went wrong.

A property that fails raises `PropertyFailed` carrying the property's name, the input, what was expected
and what was received. Hypothesis shrinks the input and re-raises the minimal failure, which
`PropertyFailed.explain` turns into the message the learner reads.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

import numpy as np


class PropertyFailed(Exception):
    """One property of a correct answer did not hold on one input."""

    def __init__(self, property_name: str, inputs: dict[str, Any], expected: Any, received: Any, detail: str = ""):
        super().__init__(f"{property_name}: {detail}")
        self.property_name = property_name
        self.inputs = inputs
        self.expected = expected
        self.received = received
        self.detail = detail

    def explain(self, function_name: str) -> str:
        lines = [f"FAIL: property '{self.property_name}' does not hold.", "Minimal failing input:"]
        lines += [labelled(f"  {name} = ", value) for name, value in self.inputs.items()]
        lines.append(labelled("Expected: ", self.expected))
        lines.append(labelled("Received: ", self.received))
        if self.detail:
            lines.append(f"Why: {self.detail}")
        return "\n".join(lines)


class LearnerRaised(PropertyFailed):
    """The learner's function raised an exception instead of returning."""

    def __init__(self, property_name: str, inputs: dict[str, Any], error: Exception, where: str):
        super().__init__(property_name, inputs, expected=None, received=error, detail=where)

    def explain(self, function_name: str) -> str:
        error = self.received
        lines = [f"FAIL: {function_name} raised {type(error).__name__}: {error}"]
        if self.detail:
            lines.append(f"  at {self.detail}")
        lines.append(f"while checking '{self.property_name}'. Minimal failing input:")
        lines += [labelled(f"  {name} = ", value) for name, value in self.inputs.items()]
        return "\n".join(lines)


class NotImplementedYet(PropertyFailed):
    """The learner's function still raises NotImplementedError (the starter code)."""

    def __init__(self, property_name: str, inputs: dict[str, Any]):
        super().__init__(property_name, inputs, expected=None, received=None)

    def explain(self, function_name: str) -> str:
        return (f"NOT DONE: {function_name} is not implemented yet "
                "(it raises NotImplementedError). Replace that line with your code.")


class NotDeterministic(PropertyFailed):
    """The same input passed once and failed once: the learner's function keeps state or draws random numbers."""

    def __init__(self, property_name: str, inputs: dict[str, Any]):
        super().__init__(property_name, inputs, expected=None, received=None)

    def explain(self, function_name: str) -> str:
        lines = [f"FAIL: {function_name} is not deterministic: while checking '{self.property_name}' it passed "
                 "and failed on the same input. Does it keep state between calls or use random numbers?"]
        if self.inputs:
            lines.append("Failing input:")
            lines += [labelled(f"  {name} = ", value) for name, value in self.inputs.items()]
        return "\n".join(lines)


def call_learner(function: Callable, inputs: dict[str, Any], property_name: str) -> Any:
    """Call the learner's function positionally on private copies of the inputs.

    Copies keep an in-place update in the learner's code from corrupting the input we report. Floating-point
    warnings are silenced because the properties already report overflow as a wrong (non-finite) value.
    """
    arguments = [_copy(value) for value in inputs.values()]
    try:
        with np.errstate(all="ignore"):
            return function(*arguments)
    except NotImplementedError:
        raise NotImplementedYet(property_name, inputs) from None
    except Exception as error:  # any learner bug becomes feedback, never a traceback dump
        raise LearnerRaised(property_name, inputs, error, _where_in_learner_code(error, function)) from None


def expect_close(property_name: str, inputs: dict[str, Any], expected: Any, received: Any,
                 rtol: float | None, atol: float | None, names: tuple[str, ...] | None = None) -> None:
    """Raise PropertyFailed unless `received` has expected's structure, shapes, dtypes and values (to tolerance).

    With `rtol=None` only the structure, shapes and dtypes are compared, so a property can safely do
    arithmetic on the learner's output afterwards.
    `expected` may be an array or scalar, a tuple/list of them, or a dict of them. `names` label the items of
    a returned tuple, so a message says "dW has the wrong shape" rather than "item 1"; a failing part is
    reported on its own, next to the whole input.
    """
    def compare(want: Any, got: Any, label: str, item_names: tuple[str, ...] | None = None) -> None:
        def fail(detail: str) -> None:
            if want is expected:
                raise PropertyFailed(property_name, inputs, expected, received, detail)
            raise PropertyFailed(property_name, inputs, {label: want}, {label: got}, detail)

        if isinstance(want, dict):
            if not isinstance(got, dict):
                fail(f"{label} should be a dict with keys {list(want)}, got {_describe(got)}")
            missing = [key for key in want if key not in got]
            if missing:
                fail(f"{label} is missing the key(s) {missing}; return a dict with keys {list(want)}")
            for key in want:
                compare(want[key], got[key], key)
        elif isinstance(want, (tuple, list)):
            if not isinstance(got, (tuple, list)) or len(got) != len(want):
                shape = f"({', '.join(item_names)})" if item_names else f"of {len(want)} items"
                fail(f"{label} should be a {type(want).__name__} {shape}, got {_describe(got)}")
            labels = item_names or [f"{label}[{index}]" for index in range(len(want))]
            for item_label, item_want, item_got in zip(labels, want, got):
                compare(item_want, item_got, item_label)
        else:
            _expect_array(fail, want, got, rtol, atol, label)

    compare(expected, received, "result", names)


def _expect_array(fail: Callable[[str], None], expected: Any, received: Any, rtol: float | None,
                  atol: float | None, label: str) -> None:
    expected = np.asarray(expected)
    if not isinstance(received, (np.ndarray, np.generic, float, int)) or isinstance(received, bool):
        fail(f"{label} should be an array of shape {expected.shape}, got {_describe(received)}")
    received = np.asarray(received)
    if received.shape != expected.shape:
        fail(f"{label} has shape {received.shape} but should have shape {expected.shape}")
    if expected.dtype.kind == "f" and received.dtype != expected.dtype:
        fail(f"{label} has dtype {received.dtype} but should have dtype {expected.dtype}: "
             "compute in the input's dtype (no int arrays, no casts to float32)")
    if rtol is None:
        return
    if not np.all(np.isfinite(received)) and np.all(np.isfinite(expected)):
        fail(f"{label} contains nan or inf where the exact answer is finite: something overflowed "
             "(exp of a large number?) or divided 0 by 0")
    if not np.allclose(received, expected, rtol=rtol, atol=atol):
        with np.errstate(invalid="ignore"):  # -inf - -inf (masks) is nan: count equal entries as 0 error
            error = np.where(received == expected, 0.0, np.abs(received - expected))
        worst = np.unravel_index(np.argmax(error), error.shape) if error.ndim else ()
        where = f" at index {tuple(int(i) for i in worst)}" if worst else ""
        fail(f"{label} differs from the expected value: max |expected - received| = {error.max():.3g}{where} "
             f"(tolerance rtol={rtol:g}, atol={atol:g})")


def labelled(label: str, value: Any) -> str:
    """`label` then the value, with a multi-line array's rows lined up under its first row."""
    lines = show_value(value).split("\n")
    return "\n".join([label + lines[0]] + [(" " * len(label) + line).rstrip() for line in lines[1:]])


def show_value(value: Any) -> str:
    """A compact, exact-enough rendering of an input or output for a failure message."""
    with np.printoptions(precision=8, threshold=60, linewidth=100):
        if isinstance(value, dict):
            items = ", ".join(labelled(f"{key!r}: ", item) for key, item in value.items())
            return "{" + items.replace("\n", "\n ") + "}"
        if isinstance(value, list):
            return "[" + ", ".join(show_value(item) for item in value) + "]"
        if isinstance(value, tuple) and not all(isinstance(item, int) for item in value):
            return "(" + ", ".join(show_value(item) for item in value) + ("," if len(value) == 1 else "") + ")"
        if isinstance(value, np.ndarray):
            return "\n".join(line.rstrip() for line in repr(value).splitlines())
        if isinstance(value, np.generic):
            return repr(value.item())
        if isinstance(value, str):  # a description such as "global norm <= 1.0"
            return value
        return repr(value)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _where_in_learner_code(error: Exception, function: Callable) -> str:
    """The deepest line of the learner's own file in the traceback: "line 4 of my.py: return e / e.sum()"."""
    code = getattr(function, "__code__", None)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if code is not None and frame.filename == code.co_filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f"line {frame.lineno} of {frame.filename}" + (f": {frame.line}" if frame.line else "")


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
