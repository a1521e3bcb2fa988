"""Command line: `python -m tinygrad_llm train | sample | quantize | serve | exercises ... | bank | quiz | bench ...
| tune` (--help for each)."""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
from dataclasses import fields

from .device import DeviceUnavailableError


def add_train_config_flags(parser, skip=()) -> None:
    """One flag per TrainConfig field (--embed-dim for embed_dim), with its help; `tune` reuses them for the
    settings it does not search (skip: the fields left out)."""
    from .training.config import FIELD_HELP, TrainConfig

    for field in fields(TrainConfig):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                                help=f"{FIELD_HELP[field.name]} (default: %(default)s)")
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default,
                                help=f"{FIELD_HELP[field.name]} (default: %(default)s)")


def _add_train(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train a language model (default: a small GPT on the embedded corpus, ~5 min) and print samples",
        description="Train a language model with the shared loop: AdamW (decay on matrices only), linear warmup + "
        "cosine decay, global-norm clipping, gradient accumulation, periodic evaluation, optional early stopping. "
        "Writes a resumable checkpoint, CSV/JSON logs and a loss-curve plot to --out-dir, then prints held-out "
        "perplexity and samples. The defaults are nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, "
        "context 64, batch 12) on the embedded corpus.",
    )
    add_train_config_flags(parser)
    parser.add_argument("--out-dir", default=None,
                        help="folder for checkpoint.npz, history.csv/.json and loss_curve.png (default: runs/<model>)")
    parser.add_argument("--resume", metavar="CHECKPOINT", default=None,
                        help="continue the run saved in this checkpoint, with its own configuration")
    parser.add_argument("--samples", type=int, default=2, help="samples to print after training (default: %(default)s)")
    parser.add_argument("--sample-tokens", type=int, default=200, help="tokens per sample (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from .metrics import evaluate_language_model
    from .training import TrainConfig, train_language_model
    from .training.checkpoints import read_training_checkpoint

    if args.resume:
        config = TrainConfig(**read_training_checkpoint(args.resume)[1]["train_config"])
    else:
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    out_dir = args.out_dir or f"runs/{config.model if config.objective == 'causal' else config.objective}"
    guard, is_main = contextlib.nullcontext(), True
    if config.data_parallel:  # under mpiexec: a failing rank stops every rank; only rank 0 prints
        from .distributed import stop_job_on_failure, world_communicator

        communicator = world_communicator()
        guard, is_main = stop_job_on_failure(communicator), communicator.Get_rank() == 0
    with guard:
        if is_main:
            print(f"Training: {config}")
        run = train_language_model(config, out_dir=out_dir, resume_from=args.resume, progress=not args.no_progress,
                                   print_fn=print)
    if not is_main:
        return 0
    if config.objective == "mlm":
        return _report_masked_lm(run, config, out_dir)
    held_out = evaluate_language_model(run.model, run.val_ids, config.context_size, batch_size=config.batch_size)
    uniform = math.log(run.tokenizer.vocab_size)
    print(f"\nDone in {run.seconds:.1f} s ({run.tokens_per_s:,.0f} training tokens/s). Last estimate: train loss "
          f"{run.final['train_loss']:.4f}, val loss {run.final['val_loss']:.4f}. Whole validation split: loss "
          f"{held_out['loss']:.4f} nats/token, perplexity {held_out['perplexity']:.2f} (a uniform guess: loss "
          f"{uniform:.4f}, perplexity {run.tokenizer.vocab_size}).\nCheckpoint: {run.checkpoint}  logs: {out_dir}")
    if config.private:
        print(f"DP-SGD: ({run.final['epsilon']:.3f}, {run.final['delta']:.1e})-differentially private for each window "
              f"of {config.context_size + 1} training tokens (the weights; the printed train losses are not)")
    prompt_length = min(config.context_size // 2, 32)
    prompt = run.val_ids[:prompt_length]  # the samples continue the start of the held-out text
    for i in range(args.samples):
        print(f"\n--- sample {i + 1} (temperature {args.temperature}) ---")
        _stream(run.model, run.tokenizer, prompt, args.sample_tokens, seed=config.seed + i,
                temperature=args.temperature)
    return 0


def _report_masked_lm(run, config, out_dir) -> int:
    """After `train --objective mlm`: masked-token accuracy on the validation split against the baselines, and
    one window with its blanks filled in (a masked LM reads both sides; it does not continue text)."""
    import numpy as np

    from .data import IGNORE_INDEX
    from .transfer.masked_accuracy import (bigram_accuracy, masked_accuracy, masked_predictions, masked_windows,
                                           unigram_accuracy)

    tokenizer = run.tokenizer
    special_ids = tuple(tokenizer.special_tokens.values())
    masked = masked_windows(run.val_ids, config.context_size, tokenizer.mask_id, tokenizer.vocab_size,
                            seed=config.seed, rate=config.mask_rate, special_ids=special_ids)
    print(f"\nDone in {run.seconds:.1f} s ({run.tokens_per_s:,.0f} training tokens/s). Last estimate: masked-token "
          f"loss train {run.final['train_loss']:.4f}, val {run.final['val_loss']:.4f}.")
    print(f"Masked-token accuracy on the validation split: {masked_accuracy(run.model, masked.inputs, masked.targets):.3f} "
          f"(always the most frequent token: {unigram_accuracy(run.train_ids, masked.targets):.3f}; the likeliest "
          f"token after the left neighbour: {bigram_accuracy(run.train_ids, masked.inputs, masked.targets, tokenizer.mask_id):.3f})"
          f"\nCheckpoint: {run.checkpoint}  logs: {out_dir}  (put a task head on it with "
          "tinygrad_llm.transfer.pretrained.from_pretrained(path, head=..., strict=False))")
    window, predicted = masked.inputs[0], masked_predictions(run.model, masked.inputs[:1])[0]
    shown = lambda ids: "".join("_" if i == tokenizer.mask_id else tokenizer.decode([i]) for i in ids)
    filled = np.where(masked.targets[0] != IGNORE_INDEX, predicted, window)
    print(f"\n--- a validation window, [MASK] shown as _ ---\n{shown(window)}\n--- filled in ---\n{shown(filled)}")
    return 0


def _stream(model, tokenizer, prompt_ids, max_new_tokens, **sampling) -> None:
    """Print the prompt, then each new token as it is generated."""
    from .generation import generate

    print(tokenizer.decode(prompt_ids), end="", flush=True)
    decoder = tokenizer.stream_decoder()
    generate(model, prompt_ids, max_new_tokens, on_token=lambda token: print(decoder.push(token), end="", flush=True),
             **sampling)
    print(decoder.flush())


def _add_sample(subparsers):
    parser = subparsers.add_parser(
        "sample", help="generate text from a trained checkpoint",
        description="Load a checkpoint written by `train` and continue a prompt, streaming tokens as they come. "
        "Decoding: greedy (--temperature 0), temperature, top-k and top-p sampling, with the model's cache.",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by `train`")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=300, help="tokens to generate (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="0 is greedy; below 1 sharper, above 1 flatter (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k likeliest tokens")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample only among the smallest set of tokens whose probability reaches p")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=1, help="independent samples (default: %(default)s)")
    parser.add_argument("--ban", nargs="+", default=[], metavar="WORD",
                        help="words the sample may not contain: the token that would complete one gets probability 0 "
                        "(exact tokens only: other spellings or capitals still pass)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the model runs (default: %(default)s)")
    parser.add_argument("--quantize", choices=["int8", "int4"], default=None,
                        help="quantize every Linear weight after loading: int8 per output channel, or int4 per group "
                        "of 64 input columns (a layer with fewer or other in_features: the largest group dividing "
                        "them). A checkpoint written by `quantize` is loaded quantized without this flag")
    parser.set_defaults(func=_run_sample)


def _run_sample(args) -> int:
    from .compression import load_model, quantize
    from .compression.quantize_model import PRESETS
    from .responsible.restricted_decoding import ban_ngrams

    model, tokenizer, metadata = load_model(args.checkpoint)
    if args.quantize:
        if "quantized_layers" in metadata:
            raise ValueError(f"sample: {args.checkpoint} is already quantized; drop --quantize")
        quantize(model, **PRESETS[args.quantize])
    model.to(args.device)
    if not args.prompt:
        raise SystemExit("sample: --prompt must not be empty (a language model continues some text)")
    prompt = tokenizer.encode(args.prompt)
    banned = [ban_ngrams([tokenizer.encode(word) for word in args.ban])] if args.ban else []
    for i in range(args.samples):
        if args.samples > 1:
            print(f"--- sample {i + 1} ---")
        _stream(model, tokenizer, prompt, args.max_new_tokens, seed=args.seed + i, temperature=args.temperature,
                top_k=args.top_k, top_p=args.top_p, logits_processors=banned)
    return 0


def _add_serve(subparsers):
    parser = subparsers.add_parser(
        "serve", help="serve a trained checkpoint over HTTP (OpenAI-style /v1/completions, streaming, batching)",
        description="Load a checkpoint written by `train` once and answer POST /v1/completions (JSON, or server-sent "
        "events with \"stream\": true), GET /health and GET /metrics. Requests join a running batch at token "
        "boundaries (continuous batching); a full queue answers 503 with Retry-After. Ctrl+C or SIGTERM shuts down "
        "gracefully. Needs the `serve` extra: pip install -e \".[serve]\".")
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by `train`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; others print a warning)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--max-batch-size", type=int, default=8,
                        help="B: requests decoded together in one step (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0,
                        help="w: how long an idle server waits for a batch to fill (default: %(default)s)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests that may wait for a slot before the server answers 503 (default: %(default)s)")
    parser.add_argument("--max-tokens-limit", type=int, default=512,
                        help="the largest max_tokens one request may ask for (default: %(default)s)")
    parser.add_argument("--shutdown-grace-s", type=float, default=10.0,
                        help="on SIGINT/SIGTERM, how long in-flight requests may finish before they are cancelled "
                        "(default: %(default)s)")
    parser.set_defaults(func=_run_serve)


def _run_serve(args) -> int:
    from .serving.server import serve

    return serve(args.checkpoint, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
                 max_wait_s=args.max_wait_ms / 1000, max_queue=args.max_queue, max_tokens_limit=args.max_tokens_limit,
                 shutdown_grace_s=args.shutdown_grace_s)


def _add_quantize(subparsers):
    parser = subparsers.add_parser(
        "quantize", help="write an int8/int4 copy of a trained checkpoint and print what was quantized",
        description="Quantize every Linear weight of a checkpoint written by `train` (post-training, no data needed), "
        "write a compressed quantized checkpoint that `sample --checkpoint` loads, and print the coverage report "
        "(which arrays became integers, which stayed float and why) and the sizes in memory and on disk.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz written by `train`")
    parser.add_argument("--out", required=True, help="the quantized checkpoint to write (.npz)")
    parser.add_argument("--bits", type=int, choices=[8, 4], default=8, help="integer width (default: %(default)s)")
    parser.add_argument("--scheme", choices=["symmetric", "affine"], default="symmetric",
                        help="zero point 0, or an integer zero point per slice (default: %(default)s)")
    parser.add_argument("--granularity", choices=["tensor", "channel", "group"], default=None,
                        help="one scale per weight matrix, per output channel, or per group of input columns "
                        "(default: channel for 8 bits, group for 4)")
    parser.add_argument("--group-size", type=int, default=None,
                        help="input columns per scale with --granularity group (default: 64)")
    parser.set_defaults(func=_run_quantize)


def _run_quantize(args) -> int:
    import os

    from .compression import quantize, save_quantized
    from .training import load_trained_model

    granularity = args.granularity or ("channel" if args.bits == 8 else "group")
    group_size = (args.group_size or 64) if granularity == "group" else args.group_size
    model, tokenizer, metadata = load_trained_model(args.checkpoint)
    report = quantize(model, bits=args.bits, symmetric=args.scheme == "symmetric", granularity=granularity,
                      group_size=group_size)
    save_quantized(model, args.out, tokenizer,
                   {"source": str(args.checkpoint), "train_config": metadata["train_config"]})
    print(report.table())
    size_in, size_out = os.path.getsize(args.checkpoint), os.path.getsize(args.out)
    print(f"\nOn disk: {args.checkpoint} {size_in:,} bytes (weights, optimizer state, float32) -> {args.out} "
          f"{size_out:,} bytes (compressed .npz, weights only)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .benchmarks.command import register as add_bench
    from .exercises.command import register as add_exercises
    from .question_bank.command import register as add_bank
    from .question_bank.quiz import register as add_quiz
    from .tuning.command import register as add_tune

    parser = argparse.ArgumentParser(prog="python -m tinygrad_llm", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_quantize(subparsers)
    _add_serve(subparsers)
    add_exercises(subparsers)
    add_bank(subparsers)
    add_quiz(subparsers)
    add_bench(subparsers)
    add_tune(subparsers, add_train_config_flags)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IndexError, DeviceUnavailableError) as error:  # the message says what to do
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
