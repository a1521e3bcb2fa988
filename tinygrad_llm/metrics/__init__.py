"""Evaluation metrics: perplexity of a language model and the diversity of generated text."""
from .diversity import distinct_n
from .perplexity import evaluate_language_model, perplexity

__all__ = ["perplexity", "evaluate_language_model", "distinct_n"]
