"""The `bench` sub-command: `bench kernels` and `bench train` (see kernels.py and train.py).

`register(subparsers)` adds it to the program's argparse sub-commands; each action sets `args.func`.
Benchmarks print ratios measured in one run; on a shared machine single timings swing ~30%, so read the
ratios, and rerun when a figure looks off.
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench", help="benchmarks: kernel ladder with roofline, end-to-end training throughput",
        description="Benchmarks (commands, not tests): ratios of the kernel sets against NumPy's BLAS and PyTorch.")
    actions = parser.add_subparsers(dest="bench_action", metavar="ACTION", required=True)

    kernels = actions.add_parser(
        "kernels", help="time every kernel set on a ladder of sizes; JSON + roofline plot",
        description="Time matmul, softmax, cross-entropy, layer norm and causal attention for each kernel set "
        "that imports, against the NumPy reference, numpy's BLAS and PyTorch CPU; measure the roof; the thread-pool "
        "fight; attention's peak extra memory.")
    _size_flags(kernels)
    kernels.add_argument("--out", default="bench_kernels.json", help="JSON report (default: %(default)s)")
    kernels.add_argument("--plot", default="bench_kernels_roofline.png", help="roofline PNG (default: %(default)s)")
    kernels.add_argument("--only", nargs="+", metavar="KERNEL",
                         help="only the cases whose kernel name starts with one of these, e.g. matmul attention")
    kernels.set_defaults(func=_run_kernels)

    train = actions.add_parser(
        "train", help="end-to-end training tokens/s: reference vs numba kernels vs PyTorch",
        description="Train the character MLP language model for a fixed number of steps after warm-up with each "
        "kernel set (and the same model in PyTorch when installed) and report tokens per second.")
    _size_flags(train)
    train.add_argument("--steps", type=int, default=None, help="timed steps per window (default: 300, --fast 50)")
    train.add_argument("--out", default="bench_train.json", help="JSON report (default: %(default)s)")
    train.set_defaults(func=_run_train)
    return parser


def _size_flags(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fast", action="store_true", help="smaller sizes and fewer repeats (CI)")
    size.add_argument("--tiny", action="store_true", help="smallest sizes, 1 repeat: checks the harness, not the machine")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    parser.add_argument("--sets", nargs="+", default=["reference", "numba"], choices=["reference", "numba"],
                        help="kernel sets to run (default: both)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison even if installed")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numpy's BLAS, Numba and torch alike (default: leave each library's own); "
                        "1 gives fairer ratios on a busy shared machine")


def _mode(args) -> str:
    return "tiny" if args.tiny else "fast" if args.fast else "full"


def _run_kernels(args) -> int:
    from .kernels import run_kernel_benchmark

    run_kernel_benchmark(_mode(args), repeats=args.repeats, out=args.out, plot=args.plot, sets=tuple(args.sets),
                         use_torch=not args.no_torch, only=args.only,
                         threads=args.threads)
    return 0


def _run_train(args) -> int:
    from .train import run_train_benchmark

    run_train_benchmark(_mode(args), steps=args.steps, repeats=args.repeats, out=args.out, sets=tuple(args.sets),
                        use_torch=not args.no_torch, threads=args.threads)
    return 0
