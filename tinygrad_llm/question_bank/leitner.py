"""Leitner boxes: the spaced-repetition schedule of the quiz, as pure functions on plain data.

A card lives in box 1 to 5. Recalling it moves it up one box and waits longer before asking again (1, 2, 4, 8,
16 days); missing it sends it back to box 1, to be asked tomorrow. So what you know well comes back rarely and
what you keep missing comes back daily. A card's state is a small dict, {"box": 2, "due": "2026-12-09"}, which
is exactly what the progress file stores.
"""
from __future__ import annotations

from datetime import date, timedelta

INTERVAL_DAYS = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}
FIRST_BOX, LAST_BOX = min(INTERVAL_DAYS), max(INTERVAL_DAYS)


def interval(box: int) -> timedelta:
    """How long a card in this box waits before it is asked again."""
    return timedelta(days=INTERVAL_DAYS[box])


def graded(state: dict | None, right: bool, today: date) -> dict:
    """The card's new state after an answer (state None: a card never seen, which starts in box 1)."""
    box = state["box"] if state else FIRST_BOX
    new_box = min(box + 1, LAST_BOX) if right else FIRST_BOX
    return {"box": new_box, "due": (today + interval(new_box)).isoformat()}


def due_date(state: dict) -> date:
    return date.fromisoformat(state["due"])


def is_due(state: dict, today: date) -> bool:
    return due_date(state) <= today


def is_valid(state) -> bool:
    """Whether a stored state has the shape graded() writes (a hand-edited file may not)."""
    if not isinstance(state, dict) or type(state.get("box")) is not int or state["box"] not in INTERVAL_DAYS:
        return False
    try:
        due_date(state)
    except (KeyError, TypeError, ValueError):
        return False
    return True
