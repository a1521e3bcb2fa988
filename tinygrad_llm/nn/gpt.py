"""GPT: a decoder-only Transformer language model (Q12), GPT-2's architecture at toy sizes.

    ids (B, T) -> token embedding (+ positions) -> dropout            (B, T, d)
               -> num_layers x TransformerBlock (causal)               (B, T, d)
               -> final LayerNorm -> LM head (d -> V)                  logits (B, T, V)

logits[:, t] predicts token t + 1 and sees ids[:, :t + 1] only, so one forward pass over a window trains
every position at once (cross-entropy against the inputs shifted by one). "Decoder-only": there is no
encoder and no cross-attention (M28); BERT is the encoder-only family, T5 and BART are encoder-decoders.

Positions: "learned" (GPT-2), "sinusoidal" (fixed, added the same way) or "rope" (rotary, applied to q and
k inside every attention layer; nothing is added to the embeddings). See positional.py.

Weight tying (tie_weights=True): the LM head's weight IS the token embedding matrix (one shared Parameter,
listed once by named_parameters): token i's input vector is also the direction that scores token i as the
output, which saves V*d parameters and helps small models. The head has no bias, as in GPT-2.

Initialisation as GPT-2 / nanoGPT: every Linear and embedding weight ~ N(0, 0.02), biases 0, and the two
layers per block that write into the residual stream (attention out_proj and mlp_down) ~ N(0, 0.02 /
sqrt(2 * num_layers)): the stream is a sum of 2 * num_layers branch outputs, and this keeps its variance
about the same whatever the depth. With such small weights the first logits are nearly equal, so an
untrained model's loss is about ln V.

checkpoint_blocks=True runs every block through activation_checkpointing.checkpoint during training: each
block's intermediates are freed after its forward and recomputed in backward (one more forward pass of the
blocks, for a peak memory that no longer holds every block's activations at once). Gradients are
bit-identical either way, and the parameters (so the saved weights) are the same.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import init
from .kv_cache import KVCache
from .language_model import LanguageModel
from .layers import Dropout, Embedding, LayerNorm, Linear
from .positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from .transformer_block import TransformerBlock
from ..activation_checkpointing import checkpoint
from ..tensor import Tensor

POSITION_KINDS = ("learned", "sinusoidal", "rope")
INIT_STD = 0.02


def gpt2_initialise(model, *residual_streams: list) -> None:
    """GPT-2's scheme: every Linear and embedding weight ~ N(0, 0.02), biases 0, and the layers that write into
    a residual stream ~ N(0, 0.02 / sqrt(the number of writers of that stream)), so the stream's variance does
    not grow with depth. An encoder-decoder has two streams, one per side."""
    for module in model.modules():
        if isinstance(module, Linear):
            init.normal_(module.weight, std=INIT_STD)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (Embedding, LearnedPositionalEmbedding)):
            init.normal_(module.weight, std=INIT_STD)
    for writers in residual_streams:
        for layer in writers:
            init.normal_(layer.weight, std=INIT_STD / math.sqrt(len(writers)))


class GPT(LanguageModel):
    def __init__(self, vocab_size: int, context_size: int = 64, embed_dim: int = 128, num_heads: int = 4,
                 num_layers: int = 4, dropout: float = 0.0, positions: str = "learned", tie_weights: bool = True,
                 bias: bool = True, checkpoint_blocks: bool = False):
        if positions not in POSITION_KINDS:
            raise ValueError(f"GPT: positions must be one of {POSITION_KINDS}, got {positions!r}")
        for name, value in (("vocab_size", vocab_size), ("context_size", context_size), ("embed_dim", embed_dim),
                            ("num_heads", num_heads), ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPT: {name} must be a positive integer, got {value!r}")
        self._config = dict(vocab_size=vocab_size, context_size=context_size, embed_dim=embed_dim,
                            num_heads=num_heads, num_layers=num_layers, dropout=dropout, positions=positions,
                            tie_weights=tie_weights, bias=bias, checkpoint_blocks=checkpoint_blocks)
        self.checkpoint_blocks = bool(checkpoint_blocks)
        self.vocab_size, self.max_context, self.num_layers = vocab_size, context_size, num_layers
        self.token_embedding = Embedding(vocab_size, embed_dim)
        self.position_embedding = (LearnedPositionalEmbedding(context_size, embed_dim) if positions == "learned" else
                                   SinusoidalPositionalEncoding(context_size, embed_dim) if positions == "sinusoidal" else
                                   None)
        self.rotary = RotaryEmbedding(embed_dim // num_heads, context_size) if positions == "rope" else None
        self.embedding_dropout = Dropout(dropout)
        self.blocks = [TransformerBlock(embed_dim, num_heads, dropout=dropout, bias=bias) for _ in range(num_layers)]
        self.final_norm = LayerNorm(embed_dim)
        self.lm_head = Linear(embed_dim, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.token_embedding.weight
        self._initialise()

    def _initialise(self):
        gpt2_initialise(self, [layer for block in self.blocks for layer in (block.attn.out_proj, block.mlp_down)])

    @property
    def config(self) -> dict:
        return dict(self._config)

    def new_cache(self, batch_size: int) -> KVCache:
        return KVCache(batch_size, self.num_layers)

    def _first_position(self, cache: KVCache | None):
        """The position of ids[:, 0]: the number of tokens already in the cache (0 without one). A cache whose
        rows have seen different numbers of tokens (a server's ragged batch) gives an int array (B,), one
        position per row, and positions and rotary angles follow each row's own count."""
        return cache.next_positions if cache is not None else 0

    def forward(self, ids, cache: KVCache | None = None, padding_mask=None) -> Tensor:
        """ids (B, T) -> logits (B, T, V).

        cache: from new_cache(B); ids are then the tokens after those already cached, and the cache advances.
        padding_mask: (B, T) booleans, True at padding tokens, which no token attends to (their own logits
            are meaningless: exclude them from the loss with ignore_index).
        """
        if cache is not None and not (isinstance(cache, KVCache) and cache.num_layers == self.num_layers):
            raise TypeError(f"GPT: cache must be a KVCache for {self.num_layers} layers from model.new_cache(batch_size), "
                            f"got {cache!r}")
        ids = self.check_ids(ids, cache)
        batch, time = ids.shape
        if padding_mask is not None:
            padding_mask = np.asarray(getattr(padding_mask, "data", padding_mask), dtype=bool)
            if padding_mask.shape != ids.shape:
                raise ValueError(f"GPT: padding_mask must have the shape of ids {ids.shape}, got {padding_mask.shape}")
        key_padding = cache.extend_padding(padding_mask, time) if cache is not None else padding_mask
        start = self._first_position(cache)
        x = self.token_embedding(ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(time, start)
        x = self.embedding_dropout(x)
        for index, block in enumerate(self.blocks):
            run_block = partial(block, causal=True, padding_mask=key_padding, cache=cache, layer_index=index,
                                rotary=self.rotary, positions_offset=start)
            # A cache is filled by the forward pass: a recomputation would append the same keys twice.
            x = checkpoint(run_block, x) if self.checkpoint_blocks and cache is None else run_block(x)
        logits = self.lm_head(self.final_norm(x))
        if cache is not None:
            cache.length += time
        return logits

    @staticmethod
    def parameter_count(vocab_size: int, context_size: int = 64, embed_dim: int = 128, num_heads: int = 4,
                        num_layers: int = 4, dropout: float = 0.0, positions: str = "learned",
                        tie_weights: bool = True, bias: bool = True, checkpoint_blocks: bool = False) -> int:
        """The exact number of parameters, in closed form (equals GPT(**same kwargs).num_parameters()).

            token embedding                 V d
            learned positions               T d          (sinusoidal and rope: 0, they are not learned)
            per block (L of them):
              q_proj, k_proj, v_proj, out_proj (d -> d each),
              mlp_up (d -> 4d), mlp_down (4d -> d)   12 d^2  weights
                                              + 9 d      their biases (3d + d + 4d + d), if bias
              two LayerNorms                  + 4 d      (scale and shift each; kept when bias=False)
            final LayerNorm                 2 d
            LM head                         V d          only when untied (tied: it is the token embedding); no bias

        So with biases a block is 12 d^2 + 13 d, and for large d the total is about 12 L d^2 + V d
        (Q39). num_heads, dropout and checkpoint_blocks do not change the count.
        """
        d, V = embed_dim, vocab_size
        per_block = 12 * d * d + 4 * d + (9 * d if bias else 0)
        positions_params = context_size * d if positions == "learned" else 0
        head = 0 if tie_weights else V * d
        return V * d + positions_params + num_layers * per_block + 2 * d + head

    @staticmethod
    def flops_per_token(vocab_size: int, context_size: int = 64, embed_dim: int = 128, num_heads: int = 4,
                        num_layers: int = 4, dropout: float = 0.0, positions: str = "learned",
                        tie_weights: bool = True, bias: bool = True, checkpoint_blocks: bool = False) -> int:
        """Forward-pass FLOPs per token of a full context_size window, counting the matrix products only:

            2 * (12 L d^2 + V d)     every weight of a matmul does one multiply-add (2 FLOPs) per token:
                                     the 12 d^2 of each block and the V d of the LM head (tied or not, the
                                     product happens); embedding lookups, biases, LayerNorm, softmax and GELU
                                     are O(d) per token and left out
          + 4 L T d                  attention: q k^T and p v, each T d multiply-adds per token per layer
                                     (all H heads together), with every query against all T keys; a causal
                                     kernel skips the keys after the query, about half of it

        i.e. about 2N + 4 L T d (Q39). A training step costs about 3x this (the backward pass
        needs two products per forward product: one for the input gradient, one for the weight gradient),
        and about 4x with checkpoint_blocks (the blocks' forward runs again in backward).
        """
        d, L = embed_dim, num_layers
        return 2 * (12 * L * d * d + vocab_size * d) + 4 * L * context_size * d
