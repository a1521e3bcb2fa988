"""Command line: `python -m tinygrad_llm train | exercises ... | bench ...` (run with --help for each)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields


def _add_train(subparsers):
    from .char_lm_training import CharLMConfig

    parser = subparsers.add_parser(
        "train",
        help="train a character-level MLP language model on the embedded corpus and print samples",
        description="Train a character-level MLP language model (Bengio et al. 2003) with AdamW, warmup + cosine "
        "and gradient clipping; evaluate on held-out text; save a checkpoint; print samples.",
    )
    help_text = {
        "corpus": "'embedded' (Python's own docs, offline) or a path to a .txt file or folder",
        "block_size": "characters of context the model sees",
        "embed_dim": "size of each character's embedding",
        "hidden_dim": "width of the tanh hidden layer",
        "batch_size": "examples per step",
        "steps": "optimizer steps",
        "lr": "peak learning rate (after warmup)",
        "min_lr": "learning rate at the end of the cosine decay",
        "warmup_steps": "steps of linear warmup",
        "weight_decay": "AdamW decoupled weight decay (matrices only)",
        "clip_norm": "clip the global gradient norm to this",
        "eval_every": "evaluate train/val loss every N steps",
        "max_chars": "use only the first N characters of the corpus",
        "seed": "seed for initialisation, batches and sampling",
    }
    for field in fields(CharLMConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = int if field.name in ("max_chars",) else type(field.default)
        parser.add_argument(flag, type=kind, default=field.default, help=f"{help_text[field.name]} (default: %(default)s)")
    parser.add_argument("--checkpoint", default="checkpoints/char_mlp.npz", help="where to save (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=3, help="number of samples to print (default: %(default)s)")
    parser.add_argument("--sample-length", type=int, default=200, help="characters per sample (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: %(default)s)")
    parser.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from .char_lm_training import CharLMConfig, train_char_lm

    config = CharLMConfig(**{f.name: getattr(args, f.name) for f in fields(CharLMConfig)})
    print(f"Training a character MLP language model: {config}")
    result = train_char_lm(config, checkpoint_path=args.checkpoint)
    vocab, model = result["vocab"], result["model"]
    print(
        f"\nDone in {result['seconds']:.1f} s: train loss {result['train_loss']:.4f}, val loss {result['val_loss']:.4f} "
        f"nats/char (uniform guess: {result['uniform_loss']:.4f}). Checkpoint: {args.checkpoint}"
    )
    prompt = result["val_ids"][: config.block_size]  # the samples continue the start of the held-out text
    for i in range(args.samples):
        text = vocab.decode(model.generate(prompt, args.sample_length, temperature=args.temperature))
        print(f"\n--- sample {i + 1} (temperature {args.temperature}) ---\n{vocab.decode(prompt)}{text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .benchmarks.command import register as add_bench
    from .exercises.command import register as add_exercises

    parser = argparse.ArgumentParser(prog="python -m tinygrad_llm", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    add_exercises(subparsers)
    add_bench(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
