"""Text corpora that need no download.

The default corpus is the English reference documentation that ships inside CPython itself
(`pydoc_data.topics`, about 465 KB of prose and code examples, ~100 distinct characters), so every
machine with Python has it offline. Its exact text varies a little between Python versions; within one
version it is fixed, and so is the split.
"""
from __future__ import annotations

from pathlib import Path


def embedded_text() -> str:
    """The Python documentation topics, joined in sorted order of their names (deterministic)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def load_text(source: str = "embedded") -> str:
    """'embedded' for the built-in corpus, or the path of a UTF-8 text file or of a folder of .txt files."""
    if source == "embedded":
        return embedded_text()
    path = Path(source)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise FileNotFoundError(f"corpus folder {path} contains no .txt files")
        return "\n\n".join(f.read_text(encoding="utf-8") for f in files)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"corpus {source!r} is neither 'embedded' nor an existing file or folder")


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """First (1 - val_fraction) of the text for training, the rest for validation.

    A contiguous split (not random lines) keeps validation text unseen in any training window, which is
    what held-out perplexity needs.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]
