"""The Transformer block, pre-LN (GPT-2 and nearly every LLM since):

    x = x + attention(LayerNorm(x))        tokens exchange information
    x = x + MLP(LayerNorm(x))              each token thinks on its own:  Linear(d, 4d) -> GELU -> Linear(4d, d)

The GELU is GPT-2's tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), within 1e-3 of
the exact x * Phi(x) and cheaper: a few vectorised array passes instead of an erf per element.

Why pre-LN trains deep stacks more easily than the original post-LN, x = LayerNorm(x + f(x)):
- The residual path x -> x + f(x) -> ... is a clean identity from the embeddings to the last layer, so the
  gradient reaches every block undiminished (d(x + f(x))/dx = I + df/dx). In post-LN every block's output
  passes through a LayerNorm, and the gradient is rescaled by each of them on its way down.
- Each branch f sees a normalised input whatever the scale of the residual stream, so its output does not
  blow up with depth; post-LN needs a careful learning-rate warmup to survive the first steps of a deep stack.
The price: the residual stream itself is never normalised, hence the final LayerNorm before the output layer.
"""
from __future__ import annotations

from .attention import MultiHeadAttention
from .layers import Dropout, LayerNorm, Linear
from .module import Module
from ..tensor import Tensor


class TransformerBlock(Module):
    """Pre-LN block: attention and an MLP (hidden width mlp_ratio * d), each on a residual branch.

    `bias` switches the biases of the four Linear layers (LayerNorms keep theirs). `attn.out_proj` and
    `mlp_down` are the two layers that write into the residual stream; GPT scales their initialisation.
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0, bias: bool = True):
        self.ln1 = LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.ln2 = LayerNorm(embed_dim)
        self.mlp_up = Linear(embed_dim, mlp_ratio * embed_dim, bias=bias)
        self.mlp_down = Linear(mlp_ratio * embed_dim, embed_dim, bias=bias)
        self.mlp_dropout = Dropout(dropout)

    def mlp(self, x: Tensor) -> Tensor:
        """The position-wise feed-forward network: the same two layers applied to every token separately."""
        return self.mlp_dropout(self.mlp_down(self.mlp_up(x).gelu(approximate="tanh")))

    def forward(self, x: Tensor, causal: bool = True, padding_mask=None, cache=None, layer_index=None,
                rotary=None, positions_offset=None) -> Tensor:
        """x (B, T, d) -> (B, T, d); the keyword arguments go to the attention (see MultiHeadAttention.forward)."""
        x = x + self.attn(self.ln1(x), causal=causal, padding_mask=padding_mask, cache=cache,
                          layer_index=layer_index, rotary=rotary, positions_offset=positions_offset)
        return x + self.mlp(self.ln2(x))
