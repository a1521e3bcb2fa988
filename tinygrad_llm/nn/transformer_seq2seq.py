"""The Transformer encoder-decoder (Q15; "Attention Is All You Need", pre-LN as in T5 and GPT-2).

    source (B, S) -> embedding + source positions -> N_enc x TransformerBlock(causal=False, source pads masked)
                  -> final LayerNorm                                                  encoder states (B, S, d)
    [BOS] + target (B, T) -> embedding + target positions
                  -> N_dec x DecoderBlock(causal self-attention, cross-attention to the encoder states, MLP)
                  -> final LayerNorm -> head (d -> V)                                 logits (B, T, V)

Embeddings: `share_embeddings=True` uses one token table for source and target (our tasks share one
vocabulary, as T5 shares one across languages); `tie_output=True` makes the head's weight the target
embedding, as in GPT. Positions are learned, one table per side (the encoder and decoder count positions
separately), so a model cannot read past the max_source_length / max_target_length it was built for.

Incremental decoding (`new_cache`) keeps two things per decoder layer: the self-attention keys and values
of the target generated so far (they grow by one per step, the KV cache of a GPT) and the cross-attention
keys and values of the encoder states (computed once per source, since they never change).

Parameters (closed form in `parameter_count`; d_ff = mlp_ratio * d, with biases):
    encoder block 4d^2 + 2 d d_ff + d_ff + 9d,  decoder block 8d^2 + 2 d d_ff + d_ff + 15d,
    V d per token table, (S_max + T_max) d of positions, 2d per final LayerNorm, d V + V for an untied head.
"""
from __future__ import annotations

import numpy as np

from .decoder_block import DecoderBlock
from .gpt import gpt2_initialise
from .kv_cache import KVCache
from .layers import Dropout, Embedding, LayerNorm, Linear
from .positional import LearnedPositionalEmbedding
from .seq2seq_model import EncodedSource, Seq2SeqCache, Seq2SeqModel
from .transformer_block import TransformerBlock
from ..autograd import no_grad
from ..device import take_rows
from ..tensor import Tensor


class TransformerDecoderCache(KVCache, Seq2SeqCache):
    """The decoder's self-attention KV cache (inherited) plus each layer's cross-attention keys and values."""

    def __init__(self, batch_size: int, memory_keys: list, memory_values: list, memory_padding: np.ndarray):
        super().__init__(batch_size, len(memory_keys))
        self.memory_keys, self.memory_values, self.memory_padding = memory_keys, memory_values, memory_padding

    def reorder(self, rows) -> None:
        super().reorder(rows)
        rows = np.asarray(rows)
        self.memory_keys = [Tensor(take_rows(k.data, rows)) for k in self.memory_keys]
        self.memory_values = [Tensor(take_rows(v.data, rows)) for v in self.memory_values]
        self.memory_padding = self.memory_padding[rows]


class TransformerEncoderDecoder(Seq2SeqModel):
    def __init__(self, vocab_size: int, max_source_length: int = 32, max_target_length: int = 32, embed_dim: int = 64,
                 num_heads: int = 4, num_encoder_layers: int = 2, num_decoder_layers: int = 2, mlp_ratio: int = 4,
                 dropout: float = 0.0, share_embeddings: bool = True, tie_output: bool = True):
        for name, value in (("vocab_size", vocab_size), ("max_source_length", max_source_length),
                            ("max_target_length", max_target_length), ("embed_dim", embed_dim), ("num_heads", num_heads),
                            ("num_encoder_layers", num_encoder_layers), ("num_decoder_layers", num_decoder_layers),
                            ("mlp_ratio", mlp_ratio)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TransformerEncoderDecoder: {name} must be a positive integer, got {value!r}")
        self._config = dict(vocab_size=vocab_size, max_source_length=max_source_length,
                            max_target_length=max_target_length, embed_dim=embed_dim, num_heads=num_heads,
                            num_encoder_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers,
                            mlp_ratio=mlp_ratio, dropout=dropout, share_embeddings=share_embeddings,
                            tie_output=tie_output)
        self.vocab_size, self.max_source_length, self.max_target_length = vocab_size, max_source_length, max_target_length
        self.source_embedding = Embedding(vocab_size, embed_dim)
        self.target_embedding = self.source_embedding if share_embeddings else Embedding(vocab_size, embed_dim)
        self.source_positions = LearnedPositionalEmbedding(max_source_length, embed_dim)
        self.target_positions = LearnedPositionalEmbedding(max_target_length, embed_dim)
        self.embedding_dropout = Dropout(dropout)
        self.encoder_blocks = [TransformerBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(num_encoder_layers)]
        self.encoder_norm = LayerNorm(embed_dim)
        self.decoder_blocks = [DecoderBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(num_decoder_layers)]
        self.decoder_norm = LayerNorm(embed_dim)
        self.head = Linear(embed_dim, vocab_size, bias=not tie_output)
        if tie_output:
            self.head.weight = self.target_embedding.weight
        self._initialise()

    def _initialise(self):
        """GPT-2's scheme (gpt.py); the residual writers are the attention, cross-attention and MLP outputs."""
        encoder = [layer for block in self.encoder_blocks for layer in (block.attn.out_proj, block.mlp_down)]
        decoder = [layer for block in self.decoder_blocks
                   for layer in (block.attn.out_proj, block.cross_attn.out_proj, block.mlp_down)]
        gpt2_initialise(self, encoder, decoder)

    @property
    def config(self) -> dict:
        return dict(self._config)

    def encode(self, source, source_padding=None) -> EncodedSource:
        """source (B, S) ids, source_padding (B, S) True at pads -> encoder states (B, S, d).

        States at real positions do not depend on the pads (every block masks them as keys); the states AT pad
        positions are computed but never read."""
        source, padding = self.check_source(source, source_padding)
        x = self.embedding_dropout(self.source_embedding(source) + self.source_positions(source.shape[1]))
        for block in self.encoder_blocks:
            x = block(x, causal=False, padding_mask=padding)
        return EncodedSource(self.encoder_norm(x), padding)

    def _memory(self, encoded: EncodedSource) -> tuple[list, list]:
        """Every decoder layer's cross-attention keys and values of the encoder states."""
        pairs = [block.cross_attn.project_memory(encoded.states) for block in self.decoder_blocks]
        return [k for k, _ in pairs], [v for _, v in pairs]

    def new_cache(self, encoded: EncodedSource) -> TransformerDecoderCache:
        """A cache holding the encoder's projected keys and values (computed here, once) and an empty self-attention cache."""
        keys, values = self._memory(encoded)
        return TransformerDecoderCache(encoded.batch_size, keys, values, encoded.padding)

    def decode(self, decoder_input, encoded: EncodedSource, cache: TransformerDecoderCache | None = None) -> Tensor:
        """decoder_input (B, T) = [BOS] + target prefix -> logits (B, T, V); with a cache, the tokens after those cached."""
        if cache is not None and not isinstance(cache, TransformerDecoderCache):
            raise TypeError(f"TransformerEncoderDecoder: cache must come from model.new_cache(encoded), got {cache!r}")
        ids = self.check_decoder_input(decoder_input, encoded, cache)
        start = cache.length if cache is not None else 0
        keys, values = (cache.memory_keys, cache.memory_values) if cache is not None else self._memory(encoded)
        x = self.embedding_dropout(self.target_embedding(ids) + self.target_positions(ids.shape[1], start))
        for index, block in enumerate(self.decoder_blocks):
            x = block(x, keys[index], values[index], encoded.padding, cache=cache, layer_index=index)
        logits = self.head(self.decoder_norm(x))
        if cache is not None:
            cache.length += ids.shape[1]
        return logits

    def attention_maps(self, source, decoder_input, source_padding=None) -> list[np.ndarray]:
        """Teacher-forced cross-attention probabilities of every decoder layer, each (B, H, T, S)."""
        attentions = [block.cross_attn for block in self.decoder_blocks]
        for attention in attentions:
            attention.record_weights = True
        try:
            with no_grad():
                self(source, decoder_input, source_padding)
            return [attention.last_weights for attention in attentions]
        finally:
            for attention in attentions:
                attention.record_weights, attention.last_weights = False, None

    @staticmethod
    def parameter_count(vocab_size: int, max_source_length: int = 32, max_target_length: int = 32, embed_dim: int = 64,
                        num_heads: int = 4, num_encoder_layers: int = 2, num_decoder_layers: int = 2, mlp_ratio: int = 4,
                        dropout: float = 0.0, share_embeddings: bool = True, tie_output: bool = True) -> int:
        """The exact number of parameters (equals TransformerEncoderDecoder(**same kwargs).num_parameters())."""
        d, V, d_ff = embed_dim, vocab_size, mlp_ratio * embed_dim
        encoder_block = 4 * d * d + 2 * d * d_ff + d_ff + 9 * d
        decoder_block = 8 * d * d + 2 * d * d_ff + d_ff + 15 * d
        tables = V * d * (1 if share_embeddings else 2)
        positions = (max_source_length + max_target_length) * d
        head = 0 if tie_output else d * V + V
        return (tables + positions + num_encoder_layers * encoder_block + num_decoder_layers * decoder_block
                + 2 * (2 * d) + head)
