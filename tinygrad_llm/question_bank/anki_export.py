"""The quiz's cards as an Anki deck (.apkg), for learners who already review in Anki.

The deck id, the note model id and each note's guid are fixed (the guid comes from the card id), so importing a
newer export updates the notes already in Anki instead of adding copies, and keeps their review history.
"""
from __future__ import annotations

import html

from .quiz import card_front

DECK_ID = 1_718_204_518  # fixed once, at random: Anki identifies a deck by it
MODEL_ID = 1_718_204_519
DECK_NAME = "tinygrad_llm interview bank"


def _as_html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def export_anki(cards: list, path: str) -> int:
    """Write one note per card, tagged with its chapter, to path. Returns the number of notes."""
    try:
        import genanki
    except ImportError:
        raise ValueError('quiz --export anki needs genanki, which is an optional extra: pip install -e ".[anki]" '
                         "(then run the export again)") from None
    model = genanki.Model(MODEL_ID, "tinygrad_llm card", fields=[{"name": "Id"}, {"name": "Front"}, {"name": "Back"}],
                          templates=[{"name": "Recall", "qfmt": "<b>{{Id}}</b><br>{{Front}}",
                                      "afmt": "{{FrontSide}}<hr id=answer>{{Back}}"}])
    deck = genanki.Deck(DECK_ID, DECK_NAME)
    for card in cards:
        deck.add_note(genanki.Note(model=model, fields=[card.id, _as_html(card_front(card)), _as_html(card.back)],
                                   tags=[f"chapter{card.chapter:02d}"], guid=genanki.guid_for("tinygrad_llm", card.id)))
    genanki.Package(deck).write_to_file(path)
    return len(cards)
