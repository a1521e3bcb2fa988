"""What the exercises remember about a learner: which exercises they tried, which they solved, and when.

An exercise is *done* once `exercises check` has passed on it; a later failing check does not undo that (the
learner has shown they can solve it, and is perhaps trying another idea). Every graded check, passing or not, is an
*attempt*: `exercises solution` asks for one before it shows the answer. Records live in the "exercises" section
of the learner's progress file (tinygrad_llm.learner_progress), one entry per exercise:

    "softmax": {"attempts": 2, "last_attempt": "2026-12-08", "passed_on": "2026-12-08"}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

from ..learner_progress import load_progress, save_progress

SECTION = "exercises"


@dataclass(frozen=True)
class ExerciseRecord:
    """One exercise's history; the default (no attempts) is an exercise never checked."""

    attempts: int = 0
    last_attempt: str | None = None
    passed_on: str | None = None

    @property
    def done(self) -> bool:
        return self.passed_on is not None


def _record_from_json(entry: object) -> ExerciseRecord:
    """An entry edited by hand into the wrong shape reads as never tried rather than stopping the command."""
    if not isinstance(entry, dict):
        return ExerciseRecord()
    attempts = entry.get("attempts")
    last_attempt, passed_on = entry.get("last_attempt"), entry.get("passed_on")
    return ExerciseRecord(attempts if isinstance(attempts, int) and attempts >= 0 else 0,
                          last_attempt if isinstance(last_attempt, str) else None,
                          passed_on if isinstance(passed_on, str) else None)


def exercise_records() -> dict[str, ExerciseRecord]:
    """Every exercise the learner has checked, by name."""
    return {name: _record_from_json(entry) for name, entry in load_progress(SECTION).items()}


def record_for(name: str) -> ExerciseRecord:
    return exercise_records().get(name, ExerciseRecord())


def record_check(name: str, passed: bool, today: date | None = None) -> ExerciseRecord:
    """Count one graded check of `name`; a pass marks it done on `today` unless it was done before."""
    day = (today or date.today()).isoformat()
    section = load_progress(SECTION)
    previous = _record_from_json(section.get(name))
    updated = ExerciseRecord(previous.attempts + 1, day, previous.passed_on or (day if passed else None))
    section[name] = {key: value for key, value in asdict(updated).items() if value is not None}
    save_progress(SECTION, section)
    return updated
