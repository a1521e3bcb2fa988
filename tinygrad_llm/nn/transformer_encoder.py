"""TransformerEncoder: a BERT-style base model (Q26, Q27), the GPT's trunk without the causal mask.

    ids (B, T) -> token embedding + learned positions -> dropout              (B, T, d)
               -> num_layers x TransformerBlock (causal=False, pads masked)    (B, T, d)
               -> final LayerNorm                                              hidden states (B, T, d)

Every token attends to every other token, to its left and to its right, so hidden[:, i] depends on the
whole window; in a GPT it depends on ids[:, :i + 1] only. That is why an encoder cannot generate text
left to right, and why it cannot be trained to predict the next token (it would see it): it is trained as
a masked LM instead (tinygrad_llm/transfer/masking.py).

A base model, not a language model: forward returns hidden states and there is no output layer. A task
adds a head on top (tinygrad_llm/transfer/heads.py: the masked-LM head, a sequence or token classifier),
and asking the base itself for logits is an error that says so (M49).

The [MASK] token: the encoder does not own a vocabulary, so the caller reserves an id that no text
produces and builds the encoder with a vocabulary that includes it. The library's tokenizers reserve one
(`tokenizer.mask_id`, among the special ids, so `vocab_size=tokenizer.vocab_size` already counts it); with
a vocabulary of V ordinary ids and no spare one, use id V and build the encoder with vocab_size=V + 1.

Initialisation and parameter names follow the GPT (gpt2_initialise; token_embedding, position_embedding,
blocks, final_norm), so the same trunk can be read the same way in both models.
"""
from __future__ import annotations

import numpy as np

from .gpt import gpt2_initialise
from .language_model import LanguageModel
from .layers import Dropout, Embedding, LayerNorm
from .module import Module
from .positional import LearnedPositionalEmbedding
from .transformer_block import TransformerBlock
from ..tensor import Tensor


class MissingHeadError(TypeError):
    """A base model was used where task outputs (logits) are needed: it has no head (M49)."""


def missing_head_message(model, where: str) -> str:
    """Why a base model cannot give logits, and what to do instead."""
    return (
        f"{where}: {type(model).__name__} is a base model: it returns hidden states (batch, time, "
        f"{getattr(model, 'hidden_size', 'd')}), not task logits (M49). Put a head on it, e.g. "
        "ModelWithHead(base, MaskedLMHead.for_base(base)) from tinygrad_llm.transfer.heads for token predictions, "
        "SequenceClassificationHead for one label per sequence, or from_pretrained(path, head=...)"
    )


class TransformerEncoder(Module):
    def __init__(self, vocab_size: int, context_size: int = 64, embed_dim: int = 64, num_heads: int = 4,
                 num_layers: int = 2, mlp_ratio: int = 4, dropout: float = 0.0):
        for name, value in (("vocab_size", vocab_size), ("context_size", context_size), ("embed_dim", embed_dim),
                            ("num_heads", num_heads), ("num_layers", num_layers), ("mlp_ratio", mlp_ratio)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TransformerEncoder: {name} must be a positive integer, got {value!r}")
        if embed_dim % num_heads:
            raise ValueError(f"TransformerEncoder: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self._config = dict(vocab_size=vocab_size, context_size=context_size, embed_dim=embed_dim,
                            num_heads=num_heads, num_layers=num_layers, mlp_ratio=mlp_ratio, dropout=dropout)
        self.vocab_size, self.max_context, self.hidden_size = vocab_size, context_size, embed_dim
        self.num_layers = num_layers
        self.token_embedding = Embedding(vocab_size, embed_dim)
        self.position_embedding = LearnedPositionalEmbedding(context_size, embed_dim)
        self.embedding_dropout = Dropout(dropout)
        self.blocks = [TransformerBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(num_layers)]
        self.final_norm = LayerNorm(embed_dim)
        gpt2_initialise(self, [layer for block in self.blocks for layer in (block.attn.out_proj, block.mlp_down)])

    @property
    def config(self) -> dict:
        """Constructor keyword arguments: TransformerEncoder(**encoder.config) builds the same architecture."""
        return dict(self._config)

    def forward(self, ids, padding_mask=None) -> Tensor:
        """ids (B, T) -> hidden states (B, T, embed_dim), one vector per token that has seen the whole window.

        padding_mask: (B, T) booleans, True at padding tokens, which no token attends to; the states AT padding
            positions are computed but mean nothing (a head ignores them).
        """
        ids = LanguageModel.check_ids(self, ids)  # the library's one check of token ids (shape, dtype, range, length)
        if padding_mask is not None:
            padding_mask = np.asarray(getattr(padding_mask, "data", padding_mask), dtype=bool)
            if padding_mask.shape != ids.shape:
                raise ValueError(f"TransformerEncoder: padding_mask must have the shape of ids {ids.shape}, "
                                 f"got {padding_mask.shape}")
        x = self.embedding_dropout(self.token_embedding(ids) + self.position_embedding(ids.shape[1]))
        for block in self.blocks:
            x = block(x, causal=False, padding_mask=padding_mask)
        return self.final_norm(x)

    def logits(self, *args, **kwargs):
        """There are none: a base model has no output layer. Always raises MissingHeadError (M49)."""
        raise MissingHeadError(missing_head_message(self, "TransformerEncoder.logits"))
