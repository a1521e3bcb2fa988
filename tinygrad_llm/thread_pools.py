"""How numpy's BLAS threads and Numba's threads share the cores: one setting, made before numpy loads.

A training step alternates BLAS products (numpy -> OpenBLAS, its own worker threads) with Numba kernels
(Numba's worker threads), hundreds of times. After each product OpenBLAS's workers do not sleep: they
spin, waiting for the next product, for 2**28 CPU cycles by default (about 77 ms at 3.5 GHz). A Numba
kernel started in that window shares the cores with the spinning threads. Measured on this project's
2-core machines: a 20 ms attention forward run right after a 512 x 512 product took 2x as long as alone.

OpenBLAS reads its spin time, OPENBLAS_THREAD_TIMEOUT (log2 of the cycles, 4..30), once, when numpy
loads it. This module is imported first by `import tinygrad_llm` and sets 20 (2**20 cycles, about 0.3 ms):
long enough that back-to-back small products still find their threads awake, short enough that a kernel
after a product runs almost alone (measured: alternating attention and a product ran at 0.94-1.01x the
sum of the two alone, and a 0.1 ms softmax with a 128 x 128 product at 0.89-1.04x). The other half of the
fix is Numba's `workqueue` threading layer (kernels/numba_cpu/__init__.py), whose threads never spin.

Where numpy was imported BEFORE tinygrad_llm, OpenBLAS has already read its setting and nothing here can
change it: `openblas_thread_timeout()` says which case a process is in, and `bench kernels` prints it.
A value in the user's environment always wins.
"""
import os
import sys

OPENBLAS_THREAD_TIMEOUT = "20"
OPENBLAS_DEFAULT_TIMEOUT = "28"  # OpenBLAS's own default when the variable is unset

_numpy_loaded_first = "numpy" in sys.modules
_user_value = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
if _user_value is None and not _numpy_loaded_first:
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_THREAD_TIMEOUT


def openblas_thread_timeout() -> dict:
    """The spin time OpenBLAS runs with in this process, and who chose it."""
    if _user_value is not None:
        return {"log2_cycles": _user_value, "source": "the environment (OPENBLAS_THREAD_TIMEOUT set by the user)"}
    if _numpy_loaded_first:
        return {"log2_cycles": OPENBLAS_DEFAULT_TIMEOUT,
                "source": "OpenBLAS's default: numpy was imported before tinygrad_llm, too late to set it"}
    return {"log2_cycles": OPENBLAS_THREAD_TIMEOUT, "source": "tinygrad_llm, before numpy loaded"}
