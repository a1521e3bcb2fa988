"""The `bench` sub-command: `bench kernels`, `bench train`, `bench quality`, `bench seq2seq`, `bench quantized`,
`bench distributed` and `bench serve` (one module each).

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
    kernels.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                         help="cuda: the GPU kernel set against the reference on GPU arrays and PyTorch CUDA, larger sizes")
    kernels.add_argument("--runs", type=int, default=1,
                         help="run the whole ladder N times and report each target's median (default: %(default)s)")
    kernels.set_defaults(func=_run_kernels)

    train = actions.add_parser(
        "train", help="end-to-end training tokens/s: reference vs numba kernels vs PyTorch",
        description="Train the character MLP language model and the GPT (nanoGPT's CPU configuration) for a fixed "
        "number of steps after warm-up with each kernel set (and the same models in PyTorch when installed) and "
        "report tokens per second.")
    _size_flags(train)
    train.add_argument("--steps", type=int, default=None, help="timed steps per window (default: 100, --fast 20)")
    train.add_argument("--models", nargs="+", default=["char_mlp", "gpt"], choices=["char_mlp", "gpt"],
                       help="models to time (default: both)")
    train.add_argument("--out", default="bench_train.json", help="JSON report (default: %(default)s)")
    train.set_defaults(func=_run_train)

    quality = actions.add_parser(
        "quality", help="nanoGPT's CPU configuration: val loss and tokens/s here vs the PyTorch twin",
        description="Train the GPT in nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, context 64, batch 12, "
        "2000 steps, lr 1e-3 warmup 100 cosine to 1e-4, AdamW (0.9, 0.99), wd 0.1, clip 1) and, when torch is "
        "installed, its PyTorch twin from the same initial weights on the same batches; report both val losses "
        "and training tokens/s.")
    quality.add_argument("--corpus", default="embedded",
                         help="'embedded', 'shakespeare' (downloaded once) or a path to a text file or folder")
    quality.add_argument("--steps", type=int, default=2000, help="training steps (default: %(default)s)")
    quality.add_argument("--eval-every", type=int, default=250, help="evaluate every N steps (default: %(default)s)")
    quality.add_argument("--final-eval-batches", type=int, default=200,
                         help="validation windows for the final val loss (default: %(default)s)")
    quality.add_argument("--max-chars", type=int, default=0, help="use only the first N characters (0: all)")
    quality.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin even if installed")
    quality.add_argument("--torch-threads", type=int, default=None,
                         help="threads for torch (default: torch's own); set OPENBLAS_NUM_THREADS for numpy's side")
    quality.add_argument("--config", default="cpu", choices=["cpu", "gpu"],
                         help="nanoGPT's CPU configuration, or its GPU one (6 layers, 6 heads, 384 wide, context 256, "
                         "batch 64, dropout 0.2; use --steps 5000) (default: %(default)s)")
    quality.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                         help="where both sides train (default: %(default)s)")
    quality.add_argument("--out", default="bench_quality.json", help="JSON report (default: %(default)s)")
    quality.set_defaults(func=_run_quality)

    seq2seq = actions.add_parser(
        "seq2seq", help="train the Transformer encoder-decoder on reverse and addition; held-out exact match and time",
        description="Train an encoder-decoder on each task within its stated budget (tinygrad_llm/benchmarks/seq2seq.py) "
        "and report free-running exact match (greedy and beam 4) on held-out examples and the training time.")
    seq2seq.add_argument("--fast", action="store_true", help="tiny budgets: checks the harness, not the model")
    seq2seq.add_argument("--tasks", nargs="+", default=["reverse", "addition"], choices=["reverse", "addition"])
    seq2seq.add_argument("--model", default="transformer", choices=["transformer", "gru"],
                         help="the Transformer, or a GRU with additive attention of the same width")
    seq2seq.add_argument("--seed", type=int, default=0)
    seq2seq.add_argument("--out", default="bench_seq2seq.json", help="JSON report (default: %(default)s)")
    seq2seq.set_defaults(func=_run_seq2seq)

    distributed = actions.add_parser(
        "distributed", help="data-parallel GPT training on 1, 2 and 4 MPI ranks: tokens/s, speedup, bytes per step",
        description="Train the main job's GPT single-process (fp32, fp16, bf16) and with --data-parallel under "
        "mpiexec at each rank count, the global batch fixed at 12 windows; report tokens/s, speedups with Amdahl's "
        "serial fraction, and the ring all-reduce's bytes per rank per step against 2(K-1)/K |theta| 4.")
    distributed.add_argument("--fast", action="store_true", help="a tiny model and few steps: checks the harness")
    distributed.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4], help="rank counts (default: 1 2 4)")
    distributed.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16"],
                             choices=["fp32", "fp16", "bf16"], help="single-process precisions (default: all)")
    distributed.add_argument("--out", default="bench_distributed.json", help="JSON report (default: %(default)s)")
    distributed.set_defaults(func=_run_distributed)

    quantized = actions.add_parser(
        "quantized", help="int8/int4 weight-only kernels vs float32 BLAS at decode shapes, int8 GEMM; JSON + roofline",
        description="Time x @ W.T at decode shapes (batch 1, 2, 4, 8; W d x d, d = 128..4096) with float32 BLAS, the "
        "reference quantized_matmul and the Numba int8 and int4 weight-only kernels, each weight streamed from memory; "
        "and the int8 x int8 -> int32 GEMM against float32 sgemm. Reports time, speedup over BLAS, GB/s, GFLOP/s and "
        "each kernel's place under the measured roofline.")
    quantized_size = quantized.add_mutually_exclusive_group()
    quantized_size.add_argument("--fast", action="store_true", help="fewer sizes (d up to 2048), 3 repeats")
    quantized_size.add_argument("--tiny", action="store_true", help="smallest sizes, 1 repeat: checks the harness")
    quantized.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    quantized.add_argument("--threads", type=int, default=None,
                           help="threads for numpy's BLAS and Numba alike (default: each library's own)")
    quantized.add_argument("--out", default="bench_quantized.json", help="JSON report (default: %(default)s)")
    quantized.add_argument("--plot", default="bench_quantized_roofline.png",
                           help="roofline PNG (default: %(default)s)")
    quantized.set_defaults(func=_run_quantized)

    serve = actions.add_parser(
        "serve", help="the HTTP server under Poisson load: p50/p99 latency and throughput against B, w and the rate",
        description="Start the real server (`serve`) in a subprocess for each max batch size B and max wait w, send "
        "Poisson arrivals at several rates from the loopback load generator, then run the same batching policy on "
        "a simulated clock with the model's measured service times to reach rates this machine cannot send. "
        "Prints a table; writes JSON and a latency-against-throughput plot.")
    serve.add_argument("--checkpoint", default=None,
                       help="checkpoint.npz to serve (default: train a small GPT first, about a minute)")
    serve.add_argument("--fast", action="store_true", help="B in {1, 4}, 3 rates, about 200 live requests")
    serve.add_argument("--seed", type=int, default=0, help="seed of the arrivals and the prompt (default: %(default)s)")
    serve.add_argument("--out", default="bench_serve.json", help="JSON report (default: %(default)s)")
    serve.add_argument("--plot", default="bench_serve.png", help="latency/throughput PNG (default: %(default)s)")
    serve.set_defaults(func=_run_serve)
    return parser


def _size_flags(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fast", action="store_true", help="smaller sizes and fewer repeats (CI)")
    size.add_argument("--tiny", action="store_true", help="smallest sizes, 1 repeat: checks the harness, not the machine")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    parser.add_argument("--sets", nargs="+", default=None, choices=["reference", "numba", "cupy"],
                        help="kernel sets to run (default: reference and numba; with --device cuda, reference and cupy)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison even if installed")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numpy's BLAS, Numba and torch alike (default: leave each library's own); "
                        "1 gives fairer ratios on a busy shared machine")


def _mode(args) -> str:
    return "tiny" if args.tiny else "fast" if args.fast else "full"


def _run_kernels(args) -> int:
    from .kernels import run_kernel_benchmark, run_kernel_benchmark_runs

    options = dict(mode=_mode(args), repeats=args.repeats, sets=tuple(args.sets) if args.sets else None,
                   use_torch=not args.no_torch, only=args.only, threads=args.threads, device=args.device)
    if args.runs > 1:
        run_kernel_benchmark_runs(args.runs, out=args.out, plot=args.plot, **options)
    else:
        run_kernel_benchmark(out=args.out, plot=args.plot, **options)
    return 0


def _run_train(args) -> int:
    from .train import run_train_benchmark

    run_train_benchmark(_mode(args), steps=args.steps, repeats=args.repeats, out=args.out, sets=tuple(args.sets or ("reference", "numba")),
                        use_torch=not args.no_torch, models=tuple(args.models), threads=args.threads)
    return 0


def _run_quality(args) -> int:
    from .quality import run_quality_benchmark

    run_quality_benchmark(args.corpus, steps=args.steps, eval_every=args.eval_every,
                          final_eval_batches=args.final_eval_batches, use_torch=not args.no_torch, out=args.out,
                          max_chars=args.max_chars, torch_threads=args.torch_threads, config_name=args.config,
                          device=args.device)
    return 0


def _run_seq2seq(args) -> int:
    from .seq2seq import run_seq2seq_benchmark

    run_seq2seq_benchmark("fast" if args.fast else "full", tasks=tuple(args.tasks), kind=args.model, out=args.out,
                          seed=args.seed)
    return 0


def _run_quantized(args) -> int:
    from .quantized import run_quantized_benchmark

    run_quantized_benchmark(_mode(args), repeats=args.repeats, out=args.out, plot=args.plot, threads=args.threads)
    return 0


def _run_distributed(args) -> int:
    from .distributed import run_distributed_benchmark

    run_distributed_benchmark("fast" if args.fast else "full", ranks=tuple(args.ranks),
                              precisions=tuple(args.precisions), out=args.out)
    return 0


def _run_serve(args) -> int:
    from .serve import run_serve_benchmark

    run_serve_benchmark("fast" if args.fast else "full", checkpoint=args.checkpoint, out=args.out, plot=args.plot,
                        seed=args.seed)
    return 0
