"""From a TrainConfig to a model, and from a checkpoint's (class name, config) back to the same model."""
from __future__ import annotations

from .. import nn
from ..transfer.masked_language_model import MaskedLanguageModel
from .config import TrainConfig


def build_model(config: TrainConfig, vocab_size: int) -> nn.LanguageModel:
    """The model a TrainConfig asks for, freshly initialised from the library's generator."""
    if config.objective == "mlm":
        return MaskedLanguageModel(vocab_size, context_size=config.context_size, embed_dim=config.embed_dim,
                                   num_heads=config.num_heads, num_layers=config.num_layers, dropout=config.dropout,
                                   tie_weights=config.tie_weights)
    if config.model == "bigram":
        return nn.BigramLanguageModel(vocab_size)
    if config.model == "mlp":
        return nn.MLPLanguageModel(vocab_size, config.mlp_window, config.embed_dim, config.hidden_dim)
    if config.model in ("rnn", "lstm", "gru"):
        return nn.RecurrentLanguageModel(vocab_size, cell=config.model, embed_dim=config.embed_dim,
                                         hidden_dim=config.hidden_dim, num_layers=config.num_layers,
                                         dropout=config.dropout)
    return nn.GPT(vocab_size, context_size=config.context_size, embed_dim=config.embed_dim,
                  num_heads=config.num_heads, num_layers=config.num_layers, dropout=config.dropout,
                  positions=config.positions, tie_weights=config.tie_weights,
                  checkpoint_blocks=config.checkpoint_blocks)


MODEL_CLASSES = {cls.__name__: cls for cls in (nn.BigramLanguageModel, nn.MLPLanguageModel,
                                               nn.RecurrentLanguageModel, nn.GPT, MaskedLanguageModel)}


def rebuild_model(class_name: str, model_config: dict) -> nn.LanguageModel:
    """The architecture a checkpoint describes (its weights are loaded separately)."""
    if class_name not in MODEL_CLASSES:
        raise ValueError(f"rebuild_model: unknown model class {class_name!r}; known: {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[class_name](**model_config)
