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
