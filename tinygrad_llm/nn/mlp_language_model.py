"""The MLP language model of Bengio et al. (2003): a fixed window of previous tokens predicts the next.

For each position t of ids (B, T):
    window ids[t - block + 1 .. t] (B, T, block) -> embeddings (B, T, block, d) -> concatenated (B, T, block*d)
    -> tanh hidden -> logits (B, T, V)
Positions before the start of the sequence read a learned "nothing here yet" embedding (row V of the
table), so every position gets a prediction and the model follows the LanguageModel protocol.

It cannot see further back than its window and has one weight per (position, feature) pair: the
limits that recurrent networks and attention remove.
"""
import numpy as np

from .language_model import DecodingCache, LanguageModel
from .layers import Embedding, Linear


class TokenWindowCache(DecodingCache):
    """The last block_size - 1 tokens: all the MLP needs to continue."""

    def __init__(self, batch_size: int, recent: np.ndarray):
        super().__init__(batch_size)
        self.recent = recent


class MLPLanguageModel(LanguageModel):
    def __init__(self, vocab_size: int, block_size: int = 8, embed_dim: int = 24, hidden_dim: int = 256):
        if block_size < 1:
            raise ValueError(f"MLPLanguageModel: block_size must be at least 1, got {block_size}")
        self.vocab_size, self.block_size = vocab_size, block_size
        self.embed_dim, self.hidden_dim = embed_dim, hidden_dim
        self.token_embedding = Embedding(vocab_size + 1, embed_dim)  # the extra row: before the text starts
        self.hidden = Linear(block_size * embed_dim, hidden_dim)
        self.output = Linear(hidden_dim, vocab_size)
        # Small output weights and no output bias make the first predictions nearly uniform: loss ~ ln(vocab_size).
        self.output.weight.data *= 0.1
        self.output.bias.data[...] = 0.0

    @property
    def config(self) -> dict:
        return dict(vocab_size=self.vocab_size, block_size=self.block_size, embed_dim=self.embed_dim,
                    hidden_dim=self.hidden_dim)

    def new_cache(self, batch_size: int) -> TokenWindowCache:
        return TokenWindowCache(batch_size, self._nothing_yet(batch_size))

    def _nothing_yet(self, batch_size: int) -> np.ndarray:
        return np.full((batch_size, self.block_size - 1), self.vocab_size, dtype=np.int64)

    def forward(self, ids, cache: TokenWindowCache | None = None):
        ids = self.check_ids(ids, cache)
        batch, time = ids.shape
        history = cache.recent if cache is not None else self._nothing_yet(batch)
        padded = np.concatenate([history, ids], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.block_size, axis=1)  # (B, T, block)
        if cache is not None:
            cache.recent = padded[:, padded.shape[1] - (self.block_size - 1):]
            cache.length += time
        embedded = self.token_embedding(windows).reshape(batch, time, self.block_size * self.embed_dim)
        return self.output(self.hidden(embedded).tanh())
