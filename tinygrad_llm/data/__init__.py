"""Text data: corpora, tokenizers (character, byte-level BPE), padded batches and next-token windows."""
from .byte_bpe_tokenizer import ByteBPETokenizer
from .char_tokenizer import CharTokenizer
from .corpus import embedded_text, load_text, multilingual_sample, train_val_split
from .padding import PaddedBatch, lm_inputs_and_targets, pad_batch
from .seq2seq_tasks import (BOS_ID, EOS_ID, IGNORE_INDEX, PAD_ID, TASKS, AdditionTask, CopyTask, DuplicateTask,
                            ReverseTask, Seq2SeqBatch, Seq2SeqExample, Seq2SeqTask, SortTask, TaskVocabulary,
                            ToyTranslationTask, exact_match, make_batch, make_split, make_task, sample_examples)
from .shakespeare import tiny_shakespeare_path
from .tokenizer import Tokenizer
from .deduplication import MinHash, exact_deduplicate, jaccard, lsh_candidate_pairs, near_duplicate_pairs, shingles
from .normalization import postprocess_generation
from .windows import evaluation_windows, random_windows

__all__ = [
    "embedded_text", "load_text", "train_val_split",
    "Tokenizer", "CharTokenizer", "ByteBPETokenizer", "pad_batch", "PaddedBatch", "lm_inputs_and_targets",
    "random_windows", "evaluation_windows", "tiny_shakespeare_path", "multilingual_sample", "exact_deduplicate",
    "shingles", "jaccard", "MinHash", "lsh_candidate_pairs", "near_duplicate_pairs", "postprocess_generation",
    "PAD_ID", "BOS_ID", "EOS_ID", "IGNORE_INDEX", "TASKS", "TaskVocabulary", "Seq2SeqExample", "Seq2SeqTask",
    "CopyTask", "ReverseTask", "SortTask", "DuplicateTask", "AdditionTask", "ToyTranslationTask", "make_task",
    "sample_examples", "make_split", "Seq2SeqBatch", "make_batch", "exact_match",
]
