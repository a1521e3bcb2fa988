"""A character-level vocabulary: every distinct character of the training text gets an id."""
from __future__ import annotations

import numpy as np


class CharVocabulary:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            raise ValueError(
                f"CharVocabulary.encode: characters {unknown[:10]} are not in the vocabulary of {self.size}; "
                "build the vocabulary from text that contains them (a byte-level tokenizer has no such gaps)"
            )
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))
