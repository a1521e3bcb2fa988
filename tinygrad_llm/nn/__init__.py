"""Layers and models built on the autograd engine (PyTorch's torch.nn, from scratch)."""
from . import functional, init
from ..activation_checkpointing import checkpoint
from .containers import ModuleList, Sequential
from .additive_attention import AdditiveAttention
from .attention import MultiHeadAttention
from .cross_attention import CrossAttention
from .decoder_block import DecoderBlock
from .bigram_language_model import BigramLanguageModel
from .gpt import GPT
from .kv_cache import KVCache
from .language_model import DecodingCache, LanguageModel
from .layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Sigmoid, Tanh
from .mlp_language_model import MLPLanguageModel
from .module import Module
from .parameter import Parameter
from .positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from .recurrent_language_model import RecurrentLanguageModel
from .recurrent_seq2seq import RecurrentEncoderDecoder
from .recurrent_layers import GRU, LSTM, RNN
from .rnn_cells import GRUCell, LSTMCell, RNNCell
from .seq2seq_model import EncodedSource, Seq2SeqCache, Seq2SeqModel
from .transformer_block import TransformerBlock
from .transformer_encoder import TransformerEncoder
from .transformer_seq2seq import TransformerEncoderDecoder

__all__ = [
    "functional", "init", "Module", "Parameter", "Sequential", "ModuleList", "Linear", "Embedding",
    "LayerNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "GELU", "Identity", "MLPLanguageModel",
    "MultiHeadAttention", "TransformerBlock", "GPT", "KVCache", "LearnedPositionalEmbedding",
    "SinusoidalPositionalEncoding", "RotaryEmbedding",
    "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "RecurrentLanguageModel", "BigramLanguageModel",
    "LanguageModel", "DecodingCache", "CrossAttention", "DecoderBlock", "AdditiveAttention", "Seq2SeqModel",
    "EncodedSource", "Seq2SeqCache", "TransformerEncoderDecoder", "RecurrentEncoderDecoder", "checkpoint",
    "TransformerEncoder",
]
