"""`python -m tinygrad_llm quiz`: drill the interview bank in the terminal, with spaced repetition.

    quiz                      a session of 10 cards: the due ones first, then new ones in chapter order
    quiz --chapter 6          only chapter 6's cards
    quiz --random --seed 3    new cards in a shuffled (reproducible) order
    quiz --review             only the cards that are due today
    quiz --stats              what you have seen, box by box, chapter by chapter
    quiz --export anki F.apkg the whole bank as an Anki deck

Each question is a card, and so is each common wrong answer. Answering in your own words before you look is the
point: recall, not recognition, is what an interview tests. You grade yourself, the Leitner boxes (leitner.py)
decide when the card comes back, and the progress store keeps that between sessions, saved after every card so
Ctrl-C loses nothing.
"""
from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass
from datetime import date

from ..learner_progress import load_progress, save_progress
from . import leitner
from .bank import Bank, Links, Misconception, Question, load_bank

PROGRESS_SECTION = "quiz"
WIDTH = 100
CORRECT_STATEMENTS_SHOWN = 3


@dataclass(frozen=True)
class Card:
    """One thing to recall. choices is empty for a free-text card; for a multiple-choice card it lists the
    statements shown, and planted is the position (from 1) of the wrong one."""
    id: str
    chapter: int
    prompt: str
    back: str
    choices: tuple = ()
    planted: int | None = None


def _wrapped(text: str, indent: str = "") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=" " * len(indent))


def _evidence(links: Links) -> list[str]:
    """Where the project shows it, as things to open or run."""
    lines = [f"notebook {stem}, section \"{heading}\"" for stem, _, heading in
             (target.partition("#") for target in links.notebook_sections)]
    lines += [f"experiment {target} (tinygrad_llm/experiments/)" for target in links.experiments]
    lines += [f"exercise: python -m tinygrad_llm exercises show {name}" for name in links.exercises]
    return lines


def _question_card(question: Question) -> Card:
    back = ["Model answer:"] + [_wrapped(bullet, "  - ") for bullet in question.answer]
    if evidence := _evidence(question.links):
        back += ["See it for yourself:"] + [_wrapped(line, "  - ") for line in evidence]
    if question.follow_ups:
        back += ["An interviewer may ask next:"] + [_wrapped(item, "  - ") for item in question.follow_ups]
    return Card(question.id, question.chapter, question.question, "\n".join(back))


def _misconception_back(misconception: Misconception) -> str:
    back = [_wrapped(f"The correction: {misconception.correction}"), _wrapped(f"Why people believe it: "
                                                                   f"{misconception.why_believed}")]
    if evidence := _evidence(misconception.links):
        back += ["See it for yourself:"] + [_wrapped(line, "  - ") for line in evidence]
    return "\n".join(back)


def _misconception_card(misconception: Misconception, bank: Bank) -> Card:
    """Multiple choice when the chapter has enough model-answer bullets to hide the wrong answer among: the wrong
    answer reads as plausible, which is exactly why it is common. Otherwise ask what is wrong with it."""
    questions, _ = bank.chapter_entries(misconception.chapter)
    correct = [bullet for question in questions for bullet in question.answer]
    back = _misconception_back(misconception)
    if len(correct) < 2:
        return Card(misconception.id, misconception.chapter,
                    f"A candidate says: \"{misconception.wrong}\" What is wrong?", back)
    chooser = random.Random(misconception.id)  # the same choices every session, and in the Anki deck
    choices = chooser.sample(correct, min(CORRECT_STATEMENTS_SHOWN, len(correct)))
    planted = chooser.randint(1, len(choices) + 1)
    choices.insert(planted - 1, misconception.wrong)
    return Card(misconception.id, misconception.chapter, "Which of these is the common wrong answer? (type its "
                "number)", f"The common wrong answer is number {planted}.\n{back}", tuple(choices), planted)


def build_cards(bank: Bank) -> list[Card]:
    """Every card of the bank in chapter order: a chapter's questions, then its wrong answers."""
    cards = []
    for number in bank.chapters:
        questions, misconceptions = bank.chapter_entries(number)
        cards += [_question_card(question) for question in questions]
        cards += [_misconception_card(misconception, bank) for misconception in misconceptions]
    return cards


def card_front(card: Card) -> str:
    """The prompt as the learner sees it, the choices numbered."""
    lines = [_wrapped(card.prompt)]
    lines += [_wrapped(choice, f"  {number}. ") for number, choice in enumerate(card.choices, start=1)]
    return "\n".join(lines)


def stored_states(progress: dict) -> dict:
    """{card id: Leitner state}, without entries a hand edit broke (those cards count as new again)."""
    return {card_id: state for card_id, state in progress.items() if leitner.is_valid(state)}


def select_cards(cards: list[Card], states: dict, today: date, count: int, review_only: bool = False,
                 shuffle_seed: int | None = None) -> list[Card]:
    """The session's cards: those due (most overdue first), then, unless review_only, those never seen."""
    due = sorted((card for card in cards if card.id in states and leitner.is_due(states[card.id], today)),
                 key=lambda card: leitner.due_date(states[card.id]))
    new = [] if review_only else [card for card in cards if card.id not in states]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(due)
        random.Random(shuffle_seed).shuffle(new)
    return (due + new)[:count]


def _grade(card: Card, reply: str, input_fn) -> bool:
    """Multiple choice grades itself; a free answer is graded by the learner, who has just seen the model one."""
    if card.choices:
        right = reply.strip() == str(card.planted)
        print("You spotted it." if right else f"Not quite: you picked {reply.strip() or 'nothing'}.")
        return right
    while True:
        verdict = input_fn("Did your answer hold up? [y/n] ").strip().lower()
        if verdict in ("y", "n"):
            return verdict == "y"
        print("Type y (I had it) or n (I missed something that matters).")


def run_session(cards: list[Card], states: dict, today: date, input_fn=input) -> tuple[int, int]:
    """Ask each card, grade it, save. Returns (graded, right). Ctrl-C or end of input stops the session; every
    card graded before it is already saved."""
    graded = right = 0
    print(f"{len(cards)} card(s). Answer in your own words (Enter to skip), read the model answer, then grade "
          "yourself y/n. Ctrl-C stops; progress is saved after every card.")
    try:
        for number, card in enumerate(cards, start=1):
            box = f"box {states[card.id]['box']}" if card.id in states else "new"
            print(f"\n[{number}/{len(cards)}] {card.id}, chapter {card.chapter} ({box})\n{card_front(card)}")
            reply = input_fn("your answer> " if not card.choices else "number> ")
            print(f"---\n{card.back}\n---")
            is_right = _grade(card, reply, input_fn)
            states[card.id] = leitner.graded(states.get(card.id), is_right, today)
            save_progress(PROGRESS_SECTION, states)
            graded, right = graded + 1, right + is_right
            print(f"-> box {states[card.id]['box']}, back on {states[card.id]['due']}")
    except (KeyboardInterrupt, EOFError):
        print(f"\nStopped: {graded} card(s) graded and saved, {right} right.")
        return graded, right
    print(f"\nDone: {graded} card(s), {right} right. {_next_due_line(states)}")
    return graded, right


def _next_due_line(states: dict) -> str:
    if not states:
        return "No card seen yet: run `python -m tinygrad_llm quiz` to start."
    return f"Next card due on {min(leitner.due_date(state) for state in states.values()).isoformat()}."


def stats_table(cards: list[Card], states: dict, bank: Bank, today: date) -> str:
    """Per chapter: cards seen, how many sit in each box, how many are due today; then how much of the bank
    running code backs."""
    header = f"{'chapter':<44} {'seen':>7}  " + " ".join(f"box{box}" for box in leitner.INTERVAL_DAYS) + "  due"
    lines = [header]
    for number, chapter in bank.chapters.items():
        seen = [states[card.id] for card in cards if card.chapter == number and card.id in states]
        total = sum(card.chapter == number for card in cards)
        boxes = " ".join(f"{sum(state['box'] == box for state in seen):4d}" for box in leitner.INTERVAL_DAYS)
        due = sum(leitner.is_due(state, today) for state in seen)
        lines.append(f"{number:2d}. {chapter['title'][:40]:<40} {f'{len(seen)}/{total}':>7}  {boxes}  {due:3d}")
    counts = bank.status_counts()
    lines.append(f"\n{counts['backed']} of {len(bank.questions)} questions are backed by running code ("
                 + ", ".join(f"{status}: {count}" for status, count in counts.items()) + ").")
    return "\n".join(lines)


def quiz(count: int = 10, chapter: int | None = None, review_only: bool = False, shuffle_seed: int | None = None,
         today: date | None = None, input_fn=input) -> int:
    """One session as the command runs it (today and input_fn are there for tests)."""
    if count < 1:
        raise ValueError(f"quiz --count: {count} cards is no session; give 1 or more (default 10)")
    bank, today = load_bank(), today or date.today()
    if chapter is not None and chapter not in bank.chapters:
        raise ValueError(f"quiz --chapter: no chapter {chapter}; the chapters are {min(bank.chapters)}-"
                         f"{max(bank.chapters)} (`python -m tinygrad_llm bank` lists them)")
    cards = [card for card in build_cards(bank) if chapter is None or card.chapter == chapter]
    states = stored_states(load_progress(PROGRESS_SECTION))
    session = select_cards(cards, states, today, count, review_only, shuffle_seed)
    if not session:
        waiting = {card.id: states[card.id] for card in cards if card.id in states}
        print("Nothing due. " + _next_due_line(waiting) if review_only or waiting else "No cards to ask.")
        return 0
    run_session(session, states, today, input_fn)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("quiz", help="drill the interview bank with spaced repetition (Leitner boxes)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10, help="cards in a session (default: %(default)s)")
    parser.add_argument("--chapter", type=int, default=None, help="only this chapter's cards")
    parser.add_argument("--review", action="store_true", help="only the cards due today")
    parser.add_argument("--random", action="store_true", help="shuffle the cards instead of chapter order")
    parser.add_argument("--seed", type=int, default=0, help="the shuffle's seed, with --random (default: %(default)s)")
    parser.add_argument("--stats", action="store_true", help="progress per chapter and box, then exit")
    parser.add_argument("--export", nargs=2, metavar=("FORMAT", "FILE"),
                        help="write the whole bank as a deck: --export anki deck.apkg")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.export:
        from .anki_export import export_anki

        export_format, path = args.export
        if export_format != "anki":
            raise ValueError(f"quiz --export: unknown format {export_format!r}; the one supported is anki "
                             "(quiz --export anki deck.apkg)")
        notes = export_anki(build_cards(load_bank()), path)
        print(f"wrote {path}: {notes} notes (in Anki: File > Import)")
        return 0
    if args.stats:
        bank = load_bank()
        print(stats_table(build_cards(bank), stored_states(load_progress(PROGRESS_SECTION)), bank, date.today()))
        return 0
    return quiz(args.count, args.chapter, args.review, args.seed if args.random else None)
