"""The interview bank: every question and common wrong answer the project teaches, each tied to the notebook
section, experiment, exercise and test that back it (bank.toml; `python -m tinygrad_llm bank`)."""
from .bank import Bank, Misconception, Question, load_bank

__all__ = ["Bank", "Misconception", "Question", "load_bank"]
