"""Text data: corpora, tokenizers (character, byte-level BPE), padded batches and next-token windows."""
from .byte_bpe_tokenizer import ByteBPETokenizer
from .char_tokenizer import CharTokenizer
from .char_vocabulary import CharVocabulary
from .corpus import embedded_text, load_text, multilingual_sample, train_val_split
from .padding import PaddedBatch, lm_inputs_and_targets, pad_batch
from .shakespeare import tiny_shakespeare_path
from .tokenizer import Tokenizer
from .windows import all_next_token_examples, evaluation_windows, next_token_batch, random_windows

__all__ = [
    "CharVocabulary", "embedded_text", "load_text", "train_val_split", "next_token_batch", "all_next_token_examples",
    "Tokenizer", "CharTokenizer", "ByteBPETokenizer", "pad_batch", "PaddedBatch", "lm_inputs_and_targets",
    "random_windows", "evaluation_windows", "tiny_shakespeare_path", "multilingual_sample",
]
