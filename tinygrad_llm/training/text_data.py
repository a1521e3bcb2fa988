"""From a corpus name to token ids: load the text, split it, build the tokenizer, encode both halves.

The split is contiguous (first 90% train, last 10% validation), so no validation text ever appears
inside a training window. A character tokenizer takes its alphabet from the whole text (as nanoGPT does:
otherwise a character seen only in validation would be unencodable); byte-level BPE learns its merges
from the training split only and can still encode anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import ByteBPETokenizer, CharTokenizer, load_text, train_val_split
from .config import TrainConfig


@dataclass
class TextData:
    tokenizer: object
    train_ids: np.ndarray
    val_ids: np.ndarray


def build_tokenizer(config: TrainConfig, text: str, train_text: str):
    if config.tokenizer == "char":
        return CharTokenizer.train(text)
    return ByteBPETokenizer.train(train_text, num_merges=config.bpe_merges)


def prepare_text_data(config: TrainConfig, tokenizer=None) -> TextData:
    """Token ids of the config's corpus; pass the tokenizer a checkpoint saved to reuse it exactly."""
    text = load_text(config.corpus)
    if config.max_chars:
        text = text[: config.max_chars]
    train_text, val_text = train_val_split(text)
    tokenizer = tokenizer or build_tokenizer(config, text, train_text)
    data = TextData(tokenizer, tokenizer.encode(train_text), tokenizer.encode(val_text))
    for name, ids in (("training", data.train_ids), ("validation", data.val_ids)):
        if len(ids) <= config.context_size:
            raise ValueError(
                f"prepare_text_data: the {name} split has {len(ids)} tokens, not more than context_size="
                f"{config.context_size}; use a longer corpus (or a larger max_chars) or a smaller context_size"
            )
    return data
