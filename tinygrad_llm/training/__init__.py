"""The shared training loop, its configuration, checkpoints that resume bit-exactly, and run logs; the
encoder-decoder training loop on synthetic tasks."""
from .checkpoints import load_trained_model
from .config import MODEL_KINDS, TOKENIZER_KINDS, TrainConfig
from .loop import TrainingRun, build_optimizer, estimate_loss, train_language_model
from .model_factory import build_model, rebuild_model
from .run_log import plot_loss_curve, write_logs
from .seq2seq_training import Seq2SeqTrainConfig, Seq2SeqTrainingRun, seq2seq_loss, train_seq2seq
from .text_data import TextData, prepare_text_data

__all__ = [
    "TrainConfig", "MODEL_KINDS", "TOKENIZER_KINDS", "TrainingRun", "train_language_model", "build_optimizer",
    "estimate_loss", "build_model", "rebuild_model", "load_trained_model", "plot_loss_curve", "write_logs",
    "prepare_text_data", "TextData", "Seq2SeqTrainConfig", "Seq2SeqTrainingRun", "seq2seq_loss", "train_seq2seq",
]
