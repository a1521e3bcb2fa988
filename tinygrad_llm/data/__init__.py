"""Text data: offline corpora, a character vocabulary and next-token batches."""
from .char_vocabulary import CharVocabulary
from .corpus import embedded_text, load_text, train_val_split
from .windows import all_next_token_examples, next_token_batch

__all__ = ["CharVocabulary", "embedded_text", "load_text", "train_val_split", "next_token_batch", "all_next_token_examples"]
