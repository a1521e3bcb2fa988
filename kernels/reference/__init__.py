"""The reference kernels: plain NumPy, written to be read. They define what every other kernel set
(numba_cpu, and later cupy_gpu) must compute; tests hold the others to these."""
from .attention import attention_backward, attention_forward
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .embedding import embedding_backward
from .gelu import gelu_backward, gelu_forward
from .layer_norm import layer_norm_backward, layer_norm_forward
from .matmul import matmul
from .quantized_matmul import int8_matmul, quantized_matmul
from .softmax import softmax_backward, softmax_forward

__all__ = [
    "matmul", "softmax_forward", "softmax_backward", "cross_entropy_forward", "cross_entropy_backward",
    "layer_norm_forward", "layer_norm_backward", "attention_forward", "attention_backward", "gelu_forward",
    "gelu_backward", "embedding_backward", "int8_matmul", "quantized_matmul",
]
