"""The quiz: Leitner scheduling, whole sessions driven by scripted answers, stats, and the Anki export."""
import os
import sqlite3
import subprocess
import sys
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.__main__ import main
from tinygrad_llm.learner_progress import load_progress
from tinygrad_llm.question_bank import leitner, load_bank
from tinygrad_llm.question_bank import quiz as quiz_module
from tinygrad_llm.question_bank.quiz import build_cards, quiz, run_session, select_cards, stats_table

pytestmark = pytest.mark.bank

TODAY = date(2026, 12, 8)


@pytest.fixture(scope="module")
def bank():
    return load_bank()


@pytest.fixture(scope="module")
def cards(bank):
    return build_cards(bank)


@pytest.fixture(autouse=True)
def progress_file(tmp_path, monkeypatch, bank):
    """Progress in a temporary file, never the learner's own; and the bank parsed once, not once per session."""
    path = tmp_path / "progress.json"
    monkeypatch.setenv("TGL_PROGRESS_FILE", str(path))
    monkeypatch.setattr(quiz_module, "load_bank", lambda: bank)
    return path


def scripted(*replies):
    """An input function that answers the prompts in order; an exception in the list is raised instead."""
    queue = list(replies)

    def input_fn(prompt=""):
        reply = queue.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply
    return input_fn


# ---------------------------------------------------------------- the Leitner boxes

states = st.none() | st.builds(lambda box, days: {"box": box, "due": (TODAY + timedelta(days)).isoformat()},
                               st.integers(1, 5), st.integers(-30, 30))
days = st.dates(date(2000, 1, 1), date(2100, 1, 1))


@given(state=states, right=st.booleans(), today=days)
def test_a_graded_card_stays_in_the_boxes_and_is_due_one_interval_later(state, right, today):
    new = leitner.graded(state, right, today)
    assert leitner.is_valid(new)
    assert leitner.due_date(new) == today + leitner.interval(new["box"])
    assert not leitner.is_due(new, today)


@given(state=states, today=days)
def test_a_right_answer_never_lowers_the_box_and_a_wrong_one_resets_it(state, today):
    box = state["box"] if state else 1
    assert leitner.graded(state, True, today)["box"] >= box
    assert leitner.graded(state, True, today)["box"] == min(box + 1, 5)
    assert leitner.graded(state, False, today)["box"] == 1


@pytest.mark.parametrize("state", [None, [], {"box": 0, "due": "2026-12-08"}, {"box": True, "due": "2026-12-08"},
                                   {"box": 2, "due": "tomorrow"}, {"box": 2}])
def test_a_broken_stored_state_is_not_valid(state):
    assert not leitner.is_valid(state)


# ---------------------------------------------------------------- the cards

def test_every_question_and_wrong_answer_is_a_card_in_chapter_order(bank, cards):
    assert sorted(card.id for card in cards) == sorted([*bank.questions, *bank.misconceptions])
    assert [card.chapter for card in cards] == sorted(card.chapter for card in cards)


def test_multiple_choice_plants_the_wrong_answer_at_the_right_pick(bank, cards):
    multiple_choice = [card for card in cards if card.choices]
    assert multiple_choice
    for card in multiple_choice:
        assert card.choices[card.planted - 1] == bank.misconceptions[card.id].wrong
        assert 3 <= len(card.choices) <= 4 and len(set(card.choices)) == len(card.choices)


@pytest.mark.parametrize("pick_planted, box", [(True, 2), (False, 1)])
def test_picking_the_planted_answer_counts_as_right(cards, pick_planted, box):
    card = next(card for card in cards if card.choices)
    pick = card.planted if pick_planted else card.planted % len(card.choices) + 1
    run_session([card], {}, TODAY, input_fn=scripted(str(pick)))
    assert load_progress("quiz")[card.id]["box"] == box


# ---------------------------------------------------------------- sessions

def test_a_session_moves_cards_between_boxes_and_persists(cards):
    first, second = [card for card in cards if card.chapter == 1][:2]
    assert not first.choices and not second.choices  # chapter 1 opens with its two questions
    quiz(count=2, chapter=1, today=TODAY, input_fn=scripted("chain rule", "y", "", "n"))
    assert load_progress("quiz") == {first.id: {"box": 2, "due": "2026-12-10"},
                                     second.id: {"box": 1, "due": "2026-12-09"}}
    tomorrow = TODAY + timedelta(days=1)
    quiz(count=5, chapter=1, review_only=True, today=tomorrow, input_fn=scripted("better now", "y"))
    assert load_progress("quiz")[second.id] == {"box": 2, "due": "2026-12-11"}
    assert load_progress("quiz")[first.id] == {"box": 2, "due": "2026-12-10"}  # not due, not asked


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), EOFError()])
def test_stopping_mid_session_keeps_the_graded_cards(cards, capsys, stop):
    quiz(count=3, chapter=1, today=TODAY, input_fn=scripted("an answer", "y", stop))
    first = next(card for card in cards if card.chapter == 1)
    assert load_progress("quiz") == {first.id: {"box": 2, "due": "2026-12-10"}}
    assert "Stopped: 1 card(s) graded and saved, 1 right." in capsys.readouterr().out


def test_an_unclear_grade_is_asked_again(capsys):
    quiz(count=1, chapter=1, today=TODAY, input_fn=scripted("", "maybe", "n"))
    assert "Type y" in capsys.readouterr().out
    assert [state["box"] for state in load_progress("quiz").values()] == [1]


def test_review_with_nothing_due_says_when_the_next_card_is(capsys):
    quiz(review_only=True, today=TODAY, input_fn=scripted())
    assert "Nothing due. No card seen yet" in capsys.readouterr().out
    quiz(count=1, chapter=1, today=TODAY, input_fn=scripted("", "y"))
    capsys.readouterr()
    quiz(review_only=True, today=TODAY, input_fn=scripted())
    assert "Nothing due. Next card due on 2026-12-10." in capsys.readouterr().out


def test_due_cards_come_before_new_ones_and_the_shuffle_is_reproducible(cards):
    seen = {cards[5].id: {"box": 3, "due": "2026-12-01"}, cards[9].id: {"box": 1, "due": "2026-12-08"},
            cards[2].id: {"box": 1, "due": "2026-12-09"}}
    session = select_cards(cards, seen, TODAY, count=4)
    assert [card.id for card in session] == [cards[5].id, cards[9].id, cards[0].id, cards[1].id]
    assert [card.id for card in select_cards(cards, seen, TODAY, count=10, review_only=True)] == \
        [cards[5].id, cards[9].id]
    shuffled = select_cards(cards, seen, TODAY, count=10, shuffle_seed=3)
    assert shuffled == select_cards(cards, seen, TODAY, count=10, shuffle_seed=3)
    assert {card.id for card in shuffled[:2]} == {cards[5].id, cards[9].id}


def test_a_corrupt_progress_file_does_not_stop_the_quiz(progress_file, capsys):
    progress_file.write_text("{half a file")
    quiz(count=1, chapter=1, today=TODAY, input_fn=scripted("", "y"))
    assert "moved to" in capsys.readouterr().err
    assert len(load_progress("quiz")) == 1
    assert len(list(progress_file.parent.glob("progress.json.corrupt-*"))) == 1


def test_stats_count_boxes_and_due_cards_per_chapter(bank, cards):
    chapter_one = [card for card in cards if card.chapter == 1]
    states = {chapter_one[0].id: {"box": 3, "due": "2026-12-08"}, chapter_one[1].id: {"box": 1, "due": "2026-12-20"}}
    table = stats_table(cards, states, bank, TODAY)
    row = next(line for line in table.splitlines() if line.startswith(" 1. "))
    assert row.split()[-7:] == [f"2/{len(chapter_one)}", "1", "0", "1", "0", "0", "1"]
    assert f"{bank.status_counts()['backed']} of {len(bank.questions)} questions are backed by running code" in table


def test_the_stats_command_runs(capsys):
    assert main(["quiz", "--stats"]) == 0
    assert "box5" in capsys.readouterr().out


def test_a_chapter_that_does_not_exist_is_a_clear_error():
    with pytest.raises(ValueError, match="quiz --chapter: no chapter 99"):
        quiz(chapter=99, today=TODAY, input_fn=scripted())


def test_the_command_runs_a_session_from_the_terminal(progress_file):
    result = subprocess.run([sys.executable, "-m", "tinygrad_llm", "quiz", "--count", "1"], input="my answer\ny\n",
                            capture_output=True, text=True, env={**os.environ, "TGL_PROGRESS_FILE": str(progress_file)},
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Done: 1 card(s), 1 right." in result.stdout
    assert len(load_progress("quiz")) == 1


# ---------------------------------------------------------------- Anki

def test_the_anki_export_holds_one_note_per_card(cards, tmp_path):
    pytest.importorskip("genanki")
    from tinygrad_llm.question_bank.anki_export import export_anki

    deck = tmp_path / "bank.apkg"
    assert export_anki(cards, str(deck)) == len(cards)
    with zipfile.ZipFile(deck) as package:
        package.extract("collection.anki2", tmp_path)
    with sqlite3.connect(tmp_path / "collection.anki2") as collection:
        notes = collection.execute("select count(*) from notes").fetchone()[0]
        tags = {row[0].strip() for row in collection.execute("select tags from notes")}
    assert notes == len(cards)
    assert "chapter01" in tags


def test_the_anki_export_without_genanki_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "genanki", None)  # `import genanki` now raises ImportError
    assert main(["quiz", "--export", "anki", str(tmp_path / "bank.apkg")]) == 2
    assert 'pip install -e ".[anki]"' in capsys.readouterr().err
    assert not (tmp_path / "bank.apkg").exists()
