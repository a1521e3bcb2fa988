"""Layers and models built on the autograd engine (PyTorch's torch.nn, from scratch)."""
from . import functional, init
from .containers import ModuleList, Sequential
from .layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Sigmoid, Tanh
from .mlp_language_model import MLPLanguageModel
from .module import Module
from .parameter import Parameter

__all__ = [
    "functional", "init", "Module", "Parameter", "Sequential", "ModuleList", "Linear", "Embedding",
    "LayerNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "GELU", "Identity", "MLPLanguageModel",
]
