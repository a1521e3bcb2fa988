"""An RNN encoder-decoder, with or without additive attention (Q14; Cho et al. 2014, Bahdanau et al. 2014).

    encoder:  source (B, S) -> embedding -> GRU or LSTM -> states h_1 .. h_S (B, S, H)
              final state = h at the LAST REAL token of each source (pads come after it and are skipped)
    decoder, one step per target position t, starting from the final state:
              context_t = attention(s_{t-1}, h_1..h_S)         with attention=True (Bahdanau)
                        = the final state, at every step       with attention=False (the bottleneck)
              s_t       = cell([embedding(y_{t-1}); context_t], s_{t-1})
              logits_t  = Linear([s_t; context_t])

With attention=False the decoder's only view of the source is one H-dimensional vector, whatever the
source length: that is the fixed-length bottleneck people wrongly attribute to every encoder (M30), and
why such a model degrades on long inputs. With attention it re-reads a state per source token at every
step, as a Transformer's cross-attention does.

The cache for incremental decoding is the decoder state after the tokens seen so far, plus the projected
attention keys of the source (computed once). Padding must be on the right: a left pad would run through
the encoder before the real tokens and change their states.
"""
from __future__ import annotations

import numpy as np

from .additive_attention import AdditiveAttention
from .layers import Embedding, Linear
from .recurrent_layers import GRU, LSTM
from .rnn_cells import GRUCell, LSTMCell, map_state, state_parts
from .seq2seq_model import EncodedSource, Seq2SeqCache, Seq2SeqModel
from ..autograd import no_grad
from ..device import array_module, take_rows
from ..tensor import Tensor, cat, stack

CELLS = {"gru": (GRU, GRUCell), "lstm": (LSTM, LSTMCell)}


def _hidden(state) -> Tensor:
    """h from a GRU state h or an LSTM state (h, c)."""
    return state_parts(state)[0]


class RecurrentDecoderCache(Seq2SeqCache):
    """The decoder state after `length` tokens (plain arrays) and the source's projected attention keys."""

    def __init__(self, batch_size: int, state, projected_keys: Tensor | None):
        super().__init__(batch_size)
        self.state, self.projected_keys = state, projected_keys

    def reorder(self, rows) -> None:
        rows = np.asarray(rows)
        self.state = map_state(lambda part: take_rows(part, rows), self.state)
        if self.projected_keys is not None:
            self.projected_keys = Tensor(take_rows(self.projected_keys.data, rows))
        self.batch_size = len(rows)


class RecurrentEncoderDecoder(Seq2SeqModel):
    max_source_length = max_target_length = None  # a recurrent model takes any length

    def __init__(self, vocab_size: int, cell: str = "gru", embed_dim: int = 32, hidden_dim: int = 64,
                 attention: bool = True, attention_dim: int | None = None):
        if cell not in CELLS:
            raise ValueError(f"RecurrentEncoderDecoder: cell must be one of {sorted(CELLS)}, got {cell!r}")
        self._config = dict(vocab_size=vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=hidden_dim,
                            attention=attention, attention_dim=attention_dim)
        layer_class, cell_class = CELLS[cell]
        self.vocab_size, self.uses_attention = vocab_size, bool(attention)
        self.embedding = Embedding(vocab_size, embed_dim)
        self.encoder = layer_class(embed_dim, hidden_dim, batch_first=True)
        self.decoder_cell = cell_class(embed_dim + hidden_dim, hidden_dim)
        self.attention = AdditiveAttention(hidden_dim, hidden_dim, attention_dim or hidden_dim) if attention else None
        self.head = Linear(2 * hidden_dim, vocab_size)
        self.record_attention = False   # set by attention_maps
        self.attention_weights = []     # (B, S) per decoder step, while record_attention is on

    @property
    def config(self) -> dict:
        return dict(self._config)

    def encode(self, source, source_padding=None) -> EncodedSource:
        """source (B, S) -> states (B, S, H) and the state at each source's last real token (B, H)."""
        source, padding = self.check_source(source, source_padding)
        lengths = (~padding).sum(axis=1)
        if (padding != (np.arange(source.shape[1]) >= lengths[:, None])).any():
            raise ValueError("RecurrentEncoderDecoder: source padding must all be at the END of each row (right "
                             "padding); a pad before a real token would run through the encoder and change its state")
        states, _ = self.encoder(self.embedding(source))
        final = states[np.arange(source.shape[0]), lengths - 1]
        return EncodedSource(states, padding, final)

    def _initial_state(self, encoded: EncodedSource):
        """The decoder starts from the encoder's final state (and, for an LSTM, a zero cell state)."""
        h = encoded.final_state
        if len(self.decoder_cell.state_names) == 1:
            return h
        return h, Tensor(array_module(h.data).zeros(h.shape, dtype=h.dtype))

    def new_cache(self, encoded: EncodedSource) -> RecurrentDecoderCache:
        with no_grad():
            keys = self.attention.project_keys(encoded.states) if self.uses_attention else None
            state = map_state(lambda part: part.data, self._initial_state(encoded))
        return RecurrentDecoderCache(encoded.batch_size, state, keys)

    def decode(self, decoder_input, encoded: EncodedSource, cache: RecurrentDecoderCache | None = None) -> Tensor:
        """decoder_input (B, T) = [BOS] + target prefix -> logits (B, T, V), one cell step per position."""
        if cache is not None and not isinstance(cache, RecurrentDecoderCache):
            raise TypeError(f"RecurrentEncoderDecoder: cache must come from model.new_cache(encoded), got {cache!r}")
        ids = self.check_decoder_input(decoder_input, encoded, cache)
        if cache is not None:
            state, keys = map_state(Tensor, cache.state), cache.projected_keys
        else:
            state = self._initial_state(encoded)
            keys = self.attention.project_keys(encoded.states) if self.uses_attention else None
        embedded = self.embedding(ids)
        outputs = []
        for t in range(ids.shape[1]):
            if self.uses_attention:
                context, weights = self.attention(_hidden(state), keys, encoded.states, encoded.padding)
                if self.record_attention:
                    self.attention_weights.append(weights.data)
            else:
                context = encoded.final_state
            state = self.decoder_cell(cat([embedded[:, t], context], axis=-1), state)
            outputs.append(cat([_hidden(state), context], axis=-1))
        if cache is not None:
            cache.state = map_state(lambda part: part.data, state)
            cache.length += ids.shape[1]
        return self.head(stack(outputs, axis=1))

    def attention_maps(self, source, decoder_input, source_padding=None) -> np.ndarray:
        """Teacher-forced attention weights (B, T, S): row t says which source tokens output t read."""
        if not self.uses_attention:
            raise ValueError("RecurrentEncoderDecoder: this model has attention=False; it reads only the final state")
        self.record_attention, self.attention_weights = True, []
        try:
            with no_grad():
                self(source, decoder_input, source_padding)
            return np.stack(self.attention_weights, axis=1)
        finally:
            self.record_attention, self.attention_weights = False, []
