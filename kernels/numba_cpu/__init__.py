"""The kernels JIT-compiled with Numba: the same contracts as kernels/reference/, faster on CPU.

Thread pools: numpy's BLAS (OpenBLAS, with its own threads) and Numba's parallel loops run in the same
process, one after the other, many times per training step. Under Numba's default OpenMP layer its idle
threads spin, and alternating the two was measured ~8x slower than either alone on this project's
2-core machines. Numba's `workqueue` layer has no spinning pool, so it is chosen here, inside the
library, before any parallel kernel compiles; a user's NUMBA_THREADING_LAYER still wins.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from ..reference.matmul import matmul  # noqa: E402  (BLAS: see the note below)
from .attention import attention_backward, attention_forward  # noqa: E402
from .cross_entropy import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from .embedding import embedding_backward  # noqa: E402
from .gelu import gelu_backward, gelu_forward  # noqa: E402
from .layer_norm import layer_norm_backward, layer_norm_forward  # noqa: E402
from .quantized_matmul import int8_matmul, quantized_matmul  # noqa: E402
from .softmax import softmax_backward, softmax_forward  # noqa: E402

# Matrix products go to numpy's BLAS even in this kernel set. The blocked, packed, parallel Numba matmul
# in matmul.py is the teaching kernel (and `bench kernels` times it): measured on this project's 2-core
# machines it reaches about 0.65-0.70x BLAS at n = 512-2048 but only 0.2-0.4x at n <= 256, and training
# steps are mostly such small products (with it, the character MLP LM trained at 0.7x the reference
# set's speed). What Numba wins is fusion: softmax, cross-entropy, layer norm, attention and GELU above.

__all__ = [
    "matmul", "softmax_forward", "softmax_backward", "cross_entropy_forward", "cross_entropy_backward",
    "layer_norm_forward", "layer_norm_backward", "attention_forward", "attention_backward", "gelu_forward",
    "gelu_backward", "embedding_backward", "int8_matmul", "quantized_matmul",
]
