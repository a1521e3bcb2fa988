"""Benchmarks: commands that print ratios measured in one run, never timed assertions in tests.

    python -m tinygrad_llm bench kernels   each kernel set (reference, numba) against NumPy's BLAS and PyTorch,
                                           a roofline plot, the thread-pool fight, attention memory
    python -m tinygrad_llm bench train     end-to-end training tokens/s, reference vs numba kernels vs PyTorch
    python -m tinygrad_llm bench quantized int8/int4 weight-only kernels vs float32 BLAS at decode shapes, the
                                           int8 GEMM vs sgemm, on the roofline

timing.py   median-of-runs timer with warm-up; first call (JIT compile) reported on its own
roofline.py the machine's measured roof (BLAS sgemm peak, copy bandwidth) and the roofline plot
kernels.py  the kernel ladder: sizes, FLOP and byte counts, ratios
train.py    end-to-end training throughput
quantized.py the quantized kernels against float32 BLAS, weights streamed from memory as in decoding
command.py  `register(subparsers)`: the `bench` sub-command

Machines are shared and noisy (single results swing ~30%): compare ratios measured in the same run.
"""
from .timing import Timing, time_call

__all__ = ["Timing", "time_call"]
