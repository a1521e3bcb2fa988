"""Evaluation metrics: perplexity, BLEU, classification scores, calibration, the diversity of generated text, and
exact match of an encoder-decoder's outputs."""
from .bleu import (SMOOTHING, BLEUResult, brevity_penalty, clipped_matches, closest_reference_length, corpus_bleu,
                   ngram_counts, sentence_bleu, smoothed_precisions, tokenize_13a)
from .calibration import confidences_and_correct, expected_calibration_error, reliability_bins
from .classification import (accuracy, classification_report, confusion_matrix, f1_score, precision,
                             precision_recall_f1, recall)
from .diversity import distinct_n
from .perplexity import evaluate_language_model, perplexity
from .seq2seq_evaluation import evaluate_seq2seq

__all__ = [
    "perplexity", "evaluate_language_model", "distinct_n",
    "sentence_bleu", "corpus_bleu", "BLEUResult", "SMOOTHING", "tokenize_13a", "ngram_counts", "clipped_matches",
    "closest_reference_length", "brevity_penalty", "smoothed_precisions",
    "accuracy", "confusion_matrix", "precision", "recall", "f1_score", "precision_recall_f1", "classification_report",
    "expected_calibration_error", "reliability_bins", "confidences_and_correct", "evaluate_seq2seq",
]
