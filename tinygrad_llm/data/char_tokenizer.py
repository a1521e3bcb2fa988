"""Character-level tokenizer: one id per distinct character of the training text.

Ids 0..4 are the special tokens (pad, bos, eos, unk, mask); the sorted characters follow. The vocabulary
is tiny and every token is a whole character, which makes it the clearest first tokenizer, but it is
closed: a character absent from the training text has no id. By default encoding such text is an error
that names the characters (silently mapping them to UNK would make decode(encode(s)) != s without
anyone noticing); `unknown="unk"` opts into UNK. Byte-level BPE has no such gap.
"""
from __future__ import annotations

from .tokenizer import SPECIAL_TOKENS, Tokenizer, check_utf8_text

UNKNOWN_POLICIES = ("error", "unk")


class CharTokenizer(Tokenizer):
    def __init__(self, chars, unknown: str = "error"):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars) or chars != sorted(set(chars)):
            raise ValueError("CharTokenizer: chars must be distinct single characters in sorted order")
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"CharTokenizer: unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        check_utf8_text("".join(chars), "CharTokenizer")
        self.chars = chars
        self.unknown = unknown
        first = len(SPECIAL_TOKENS)
        self._id_of_char = {c: first + i for i, c in enumerate(chars)}
        super().__init__(
            [None] * first + [c.encode("utf-8") for c in chars],
            {name: i for i, name in enumerate(SPECIAL_TOKENS)},
        )

    @classmethod
    def train(cls, text: str, unknown: str = "error") -> CharTokenizer:
        """The vocabulary of `text`; `unknown` is what encode does with unseen characters ("error" or "unk")."""
        return cls(sorted(set(check_utf8_text(text, "CharTokenizer.train"))), unknown)

    def _encode_text(self, text: str) -> list[int]:
        unseen = sorted(set(text) - self._id_of_char.keys())
        if unseen and self.unknown == "error":
            raise ValueError(
                f"CharTokenizer.encode: characters {unseen[:20]} ({len(unseen)} distinct) are not in the vocabulary "
                f"of {len(self.chars)} characters; train on text that contains them, pass unknown='unk' to map them "
                "to <|unk|>, or use ByteBPETokenizer, which can encode any text"
            )
        unk = self.unk_id
        return [self._id_of_char.get(c, unk) for c in text]

    def _to_json(self) -> dict:
        return {"chars": self.chars, "unknown": self.unknown}

    @classmethod
    def _from_json(cls, payload: dict) -> CharTokenizer:
        return cls(payload["chars"], payload["unknown"])

    def _vocabulary_summary(self) -> str:
        return f"{len(SPECIAL_TOKENS)} specials + {len(self.chars)} characters, unknown={self.unknown!r}"
