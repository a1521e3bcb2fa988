"""The MLP language model of Bengio et al. (2003): a fixed window of previous tokens predicts the next.

    ids (B, block) -> embeddings (B, block, d) -> concatenated (B, block*d) -> tanh hidden -> logits (B, V)

It cannot see further back than its window and has one weight per (position, feature) pair: the
limits that recurrent networks and attention remove.
"""
import numpy as np

from ..autograd import no_grad
from ..random import generator
from . import functional as F
from .layers import Embedding, Linear
from .module import Module


class MLPLanguageModel(Module):
    def __init__(self, vocab_size: int, block_size: int, embed_dim: int = 24, hidden_dim: int = 256):
        self.vocab_size, self.block_size = vocab_size, block_size
        self.token_embedding = Embedding(vocab_size, embed_dim)
        self.hidden = Linear(block_size * embed_dim, hidden_dim)
        self.output = Linear(hidden_dim, vocab_size)
        # Small output weights make the first predictions nearly uniform: initial loss ~ ln(vocab_size).
        self.output.weight.data *= 0.1

    def forward(self, contexts):
        contexts = np.asarray(getattr(contexts, "data", contexts))
        if contexts.ndim != 2 or contexts.shape[1] != self.block_size:
            raise ValueError(
                f"MLPLanguageModel: contexts must have shape (batch, {self.block_size}), got {contexts.shape}"
            )
        embedded = self.token_embedding(contexts).reshape(len(contexts), -1)
        return self.output(self.hidden(embedded).tanh())

    def generate(self, context_ids, num_tokens: int, temperature: float = 1.0) -> np.ndarray:
        """Sample `num_tokens` ids after `context_ids`, one at a time, each fed back as input."""
        if temperature <= 0:
            raise ValueError(f"generate: temperature must be positive, got {temperature}")
        ids = list(np.asarray(context_ids, dtype=np.int64).reshape(-1))
        if len(ids) < self.block_size:
            raise ValueError(f"generate: need at least block_size={self.block_size} context ids, got {len(ids)}")
        was_training = self.training
        self.eval()
        with no_grad():
            for _ in range(num_tokens):
                logits = self(np.array([ids[-self.block_size:]]))
                probs = F.softmax(logits / temperature).data[0].astype(np.float64)
                ids.append(int(generator().choice(self.vocab_size, p=probs / probs.sum())))
        self.train(was_training)
        return np.array(ids[-num_tokens:] if num_tokens else [], dtype=np.int64)
