"""What every encoder-decoder model here promises, so one training loop, greedy search and beam search serve them all.

    encoded = model.encode(source, source_padding)         source (B, S) int64 -> one state per source token
    logits  = model.decode(decoder_input, encoded)          decoder_input (B, T) -> logits (B, T, vocab_size)
    logits  = model(source, decoder_input, source_padding)  both at once (training)

The encoder keeps ONE STATE PER SOURCE TOKEN (B, S, d), not one vector per sentence (misconception M30:
only an attention-free RNN squeezes the source into its final state). The decoder is a language model
over the target that also reads those states through (cross-)attention:

    logits[:, t] predicts target token t and depends on decoder_input[:, :t + 1] = [BOS, y_0 .. y_{t-1}]
    and on the whole source, but never on a padded source position.

Training feeds the gold target shifted right (teacher forcing: decoder_input = [BOS] + target, decoder
target = target + [EOS]), so all T positions train in one pass. Inference has no gold target: it encodes
once and decodes one token at a time with a cache,

    cache = model.new_cache(encoded)
    logits = model.decode(step_ids, encoded, cache=cache)    # (B, 1, V); the cache advances by one

and the logits equal the matching rows of the full decode. Beam search also needs `cache.reorder(rows)`,
which keeps, for every new beam, the state of the beam it extends.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .language_model import DecodingCache
from .module import Module
from ..device import take_rows
from ..tensor import Tensor


@dataclass
class EncodedSource:
    """The encoder's output: `states` (B, S, d), one per source token, and `padding` (B, S), True at pads
    (the decoder must never read those). `final_state` (B, H): where an RNN decoder starts (None for a Transformer)."""

    states: Tensor
    padding: np.ndarray
    final_state: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.states.shape[0]

    def select(self, rows) -> EncodedSource:
        """The encoding of the sources at `rows` (with repeats): beam search runs K beams per source."""
        rows = np.asarray(rows)
        final = None if self.final_state is None else Tensor(take_rows(self.final_state.data, rows))
        return EncodedSource(Tensor(take_rows(self.states.data, rows)), self.padding[rows], final)


class Seq2SeqCache(DecodingCache):
    """A decoder's memory between calls. `reorder(rows)` makes row i hold what row rows[i] held."""

    def reorder(self, rows) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reorder()")


class Seq2SeqModel(Module):
    vocab_size: int
    max_source_length: int | None = None  # the longest source encode accepts (None: any length)
    max_target_length: int | None = None  # the longest decoder input decode accepts (None: any length)

    @property
    def config(self) -> dict:
        """Constructor keyword arguments: type(model)(**model.config) builds the same architecture."""
        raise NotImplementedError(f"{type(self).__name__} must define config")

    def encode(self, source, source_padding=None) -> EncodedSource:
        raise NotImplementedError(f"{type(self).__name__} must define encode()")

    def decode(self, decoder_input, encoded: EncodedSource, cache: Seq2SeqCache | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define decode()")

    def new_cache(self, encoded: EncodedSource) -> Seq2SeqCache:
        raise NotImplementedError(f"{type(self).__name__} must define new_cache()")

    def forward(self, source, decoder_input, source_padding=None) -> Tensor:
        """Teacher-forced logits (B, T, V) for the whole target at once."""
        return self.decode(decoder_input, self.encode(source, source_padding))

    def _check_ids(self, ids, what: str, limit: int | None, already: int = 0) -> np.ndarray:
        """ids as a (B, L) int64 array in the vocabulary and within the model's length limit."""
        name = type(self).__name__
        ids = np.asarray(getattr(ids, "data", ids))
        if ids.ndim != 2:
            raise ValueError(f"{name}: {what} must have shape (batch, length), got {ids.shape}; "
                             "add a batch axis with ids[None] for a single sequence")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name}: {what} must be integer token ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)][0]
            raise IndexError(f"{name}: {what} holds token id {bad}, outside the vocabulary 0..{self.vocab_size - 1}")
        if limit is not None and already + ids.shape[1] > limit:
            held = f"{already} cached + " if already else ""
            raise ValueError(f"{name}: {what} of length {held}{ids.shape[1]} exceeds the model's limit of {limit}; "
                             f"build the model with a larger max_{what.split()[0]}_length or shorten the input")
        return ids.astype(np.int64, copy=False)

    def check_source(self, source, source_padding=None) -> tuple[np.ndarray, np.ndarray]:
        """(source (B, S) int64, padding (B, S) bool; all False when none is given), checked."""
        source = self._check_ids(source, "source ids", self.max_source_length)
        if source_padding is None:
            return source, np.zeros(source.shape, dtype=bool)
        padding = np.asarray(getattr(source_padding, "data", source_padding), dtype=bool)
        if padding.shape != source.shape:
            raise ValueError(f"{type(self).__name__}: source_padding must have the shape of the source "
                             f"{source.shape}, got {padding.shape}")
        if padding.all(axis=1).any():
            row = int(np.flatnonzero(padding.all(axis=1))[0])
            raise ValueError(f"{type(self).__name__}: source {row} is all padding; every source needs at least one "
                             "real token (an empty source gives the decoder nothing to read)")
        return source, padding

    def check_decoder_input(self, decoder_input, encoded: EncodedSource, cache: Seq2SeqCache | None) -> np.ndarray:
        ids = self._check_ids(decoder_input, "target ids", self.max_target_length, cache.length if cache else 0)
        if ids.shape[0] != encoded.batch_size:
            raise ValueError(f"{type(self).__name__}: decoder input has batch {ids.shape[0]} but the encoded source "
                             f"has batch {encoded.batch_size}")
        if cache is not None and cache.batch_size != ids.shape[0]:
            raise ValueError(f"{type(self).__name__}: the cache was made for batch {cache.batch_size}, "
                             f"got a decoder input of batch {ids.shape[0]}")
        return ids
