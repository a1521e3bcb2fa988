"""Text corpora: a built-in English corpus, a committed Chinese/English sample, and Tiny Shakespeare.

The default corpus is the English reference documentation that ships inside CPython itself
(`pydoc_data.topics`, about 465 KB of prose and code examples, ~100 distinct characters), so every
machine with Python has it offline. Its exact text varies a little between Python versions; within one
version it is fixed, and so is the split.

`multilingual_sample()` is a small (~5 kB) Chinese/English text written for this project: parallel
sentences on everyday topics with some numbers and emoji, for comparing what tokenizers charge per
character in each language. Tiny Shakespeare is downloaded once on request (see shakespeare.py).
"""
from __future__ import annotations

from pathlib import Path

from .shakespeare import tiny_shakespeare_path

MULTILINGUAL_SAMPLE = Path(__file__).parent / "samples" / "zh_en_sample.txt"
NAMED_CORPORA = ("embedded", "zh-en", "shakespeare")


def embedded_text() -> str:
    """The Python documentation topics, joined in sorted order of their names (deterministic)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def multilingual_sample() -> str:
    """The committed Chinese/English sample (UTF-8, Chinese and English lines in pairs)."""
    return MULTILINGUAL_SAMPLE.read_text(encoding="utf-8")


def load_text(source: str = "embedded") -> str:
    """One of NAMED_CORPORA, or the path of a UTF-8 text file or of a folder of .txt files.

    "shakespeare" downloads Tiny Shakespeare on first use. A corpus with no text (an empty file, a
    folder of empty files) is an error, not an empty string that fails later with a puzzling message.
    """
    if source == "embedded":
        return embedded_text()
    if source == "zh-en":
        return multilingual_sample()
    if source == "shakespeare":
        return tiny_shakespeare_path().read_text(encoding="utf-8")
    path = Path(source)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise FileNotFoundError(f"corpus folder {path} contains no .txt files")
        texts = [f.read_text(encoding="utf-8") for f in files]
        if not any(text.strip() for text in texts):
            raise ValueError(f"corpus folder {path}: its {len(files)} .txt files hold no text (empty or only whitespace)")
        return "\n\n".join(texts)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"corpus file {path} holds no text (it is empty or only whitespace)")
        return text
    raise FileNotFoundError(f"corpus {source!r} is neither one of {NAMED_CORPORA} nor an existing file or folder")


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """First (1 - val_fraction) of the text for training, the rest for validation.

    A contiguous split (not random lines) keeps validation text unseen in any training window, which is
    what held-out perplexity needs.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]
