"""A recurrent language model: token embedding -> RNN/LSTM/GRU -> linear head to the vocabulary.

    ids (B, T) -> embeddings (B, T, embed_dim) -> hidden states (B, T, hidden_dim) -> logits (B, T, V)

Unlike the MLP model's fixed window, the hidden state summarises everything read so far, so the context
has no hard limit (max_context is None); what limits it in practice is how far gradients reach in
training (Q09) and how much a fixed-size vector can hold.

Decoding is cheap for the same reason: the cache is just the state after the tokens seen so far (one
(num_layers, B, hidden_dim) array, two for the LSTM), so each new token costs one step, whatever the
length of the text.
"""
from __future__ import annotations

from . import functional as F
from .language_model import DecodingCache, LanguageModel
from .layers import Embedding, Linear
from .recurrent_layers import GRU, LSTM, RNN
from .rnn_cells import map_state

RECURRENT_LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class RecurrentState(DecodingCache):
    """The recurrent layer's state after `length` tokens, as plain arrays: h (num_layers, B, H), or the
    LSTM's pair (h, c). No gradient flows through it (what truncated BPTT does on purpose)."""

    def __init__(self, batch_size: int, state):
        super().__init__(batch_size)
        self.state = state


class RecurrentLanguageModel(LanguageModel):
    max_context = None

    def __init__(self, vocab_size: int, cell: str = "lstm", embed_dim: int = 64, hidden_dim: int = 128,
                 num_layers: int = 1, dropout: float = 0.0):
        if cell not in RECURRENT_LAYERS:
            raise ValueError(f"RecurrentLanguageModel: cell must be one of {sorted(RECURRENT_LAYERS)}, got {cell!r}")
        self.vocab_size, self.cell = vocab_size, cell
        self.embed_dim, self.hidden_dim, self.num_layers, self.dropout = embed_dim, hidden_dim, num_layers, dropout
        self.token_embedding = Embedding(vocab_size, embed_dim)
        self.recurrent = RECURRENT_LAYERS[cell](embed_dim, hidden_dim, num_layers, batch_first=True, dropout=dropout)
        self.output = Linear(hidden_dim, vocab_size)
        # Small output weights and no output bias make the first predictions nearly uniform: loss ~ ln(vocab_size).
        self.output.weight.data *= 0.1
        self.output.bias.data[...] = 0.0

    @property
    def config(self) -> dict:
        return dict(vocab_size=self.vocab_size, cell=self.cell, embed_dim=self.embed_dim, hidden_dim=self.hidden_dim,
                    num_layers=self.num_layers, dropout=self.dropout)

    def new_cache(self, batch_size: int) -> RecurrentState:
        initial = self.recurrent.initial_state(batch_size, self.token_embedding.weight.dtype)
        return RecurrentState(batch_size, map_state(lambda t: t.data, initial))

    def forward(self, ids, cache: RecurrentState | None = None):
        """Logits (B, T, V). With a cache, start from its state and leave the final state in it."""
        ids = self.check_ids(ids, cache)
        hidden, final_state = self.recurrent(self.token_embedding(ids), None if cache is None else cache.state)
        if cache is not None:
            cache.state = map_state(lambda t: t.data, final_state)
            cache.length += ids.shape[1]
        # Dropout also before the head, so that it regularises a one-layer model too.
        return self.output(F.dropout(hidden, self.dropout, self.training))
