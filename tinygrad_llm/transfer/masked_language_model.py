"""MaskedLanguageModel: the encoder and its MLM head as one model built from plain numbers.

`python -m tinygrad_llm train --objective mlm` trains it with the shared loop, and a training checkpoint stores
a model as (class name, constructor arguments, weights). A ModelWithHead is assembled from two modules, which
a checkpoint cannot name, so this subclass builds both from the same numbers a GPT takes; its weights are
still base.* and head.*, so from_pretrained can put another head on them.
"""
from __future__ import annotations

from ..nn.transformer_encoder import TransformerEncoder
from .heads import MaskedLMHead, ModelWithHead


class MaskedLanguageModel(ModelWithHead):
    def __init__(self, vocab_size: int, context_size: int = 64, embed_dim: int = 128, num_heads: int = 4,
                 num_layers: int = 4, dropout: float = 0.0, tie_weights: bool = True):
        base = TransformerEncoder(vocab_size, context_size=context_size, embed_dim=embed_dim, num_heads=num_heads,
                                  num_layers=num_layers, dropout=dropout)
        super().__init__(base, MaskedLMHead.for_base(base, tie_weights=tie_weights))
        self._config = dict(vocab_size=vocab_size, context_size=context_size, embed_dim=embed_dim,
                            num_heads=num_heads, num_layers=num_layers, dropout=dropout, tie_weights=tie_weights)

    @property
    def config(self) -> dict:
        return dict(self._config)
