"""`bench seq2seq`: train the Transformer encoder-decoder on reverse and addition and report exact match on
held-out examples, with the training budget and the wall-clock time on this machine.

Each task has a stated budget (model size, lengths, steps, batch, learning rate). The held-out examples are
drawn first and excluded from every training batch, at lengths where the task has many more examples
than the model will see (at length 1, reverse has only 10 examples: held out, they would all be unseen
forms rather than a fair test). Exact match is free-running (greedy, and beam search of width 4): the
whole output sequence must be right.
"""
from __future__ import annotations

import datetime
import json
import time

from ..data.seq2seq_tasks import make_split, make_task
from ..metrics.seq2seq_evaluation import evaluate_seq2seq
from ..nn import RecurrentEncoderDecoder, TransformerEncoderDecoder
from ..random import manual_seed
from ..training.seq2seq_training import Seq2SeqTrainConfig, train_seq2seq

# The budgets that reach >= 99% exact match (full) and a small one that checks the harness (fast).
BUDGETS = {
    "reverse": {
        "full": dict(lengths=(3, 12), steps=1500, batch_size=64, lr=1e-3, embed_dim=64, layers=2),
        "fast": dict(lengths=(3, 6), steps=60, batch_size=32, lr=3e-3, embed_dim=32, layers=1),
    },
    "addition": {
        "full": dict(lengths=(2, 3), steps=12000, batch_size=64, lr=2e-3, embed_dim=64, layers=2),
        "fast": dict(lengths=(2, 2), steps=60, batch_size=32, lr=3e-3, embed_dim=32, layers=1),
    },
}
HELD_OUT = {"full": 1000, "fast": 100}


def build_seq2seq_model(kind: str, task, lengths: tuple[int, int], embed_dim: int, layers: int):
    """A Transformer sized to the task's longest source and target, or a GRU with attention of the same width."""
    if kind == "transformer":
        return TransformerEncoderDecoder(task.vocabulary.size, task.max_source_length(lengths[1]),
                                         task.max_target_length(lengths[1]) + 1, embed_dim=embed_dim, num_heads=4,
                                         num_encoder_layers=layers, num_decoder_layers=layers)
    return RecurrentEncoderDecoder(task.vocabulary.size, "gru", embed_dim=embed_dim // 2, hidden_dim=embed_dim)


def solve_task(name: str, mode: str = "full", kind: str = "transformer", seed: int = 0, verbose: bool = True) -> dict:
    """Train one model on one task within its budget; return the budget, the time and the held-out scores."""
    budget = BUDGETS[name][mode]
    task = make_task(name)
    low, high = budget["lengths"]
    _, held_out = make_split(task, 0, HELD_OUT[mode], low, high, seed=seed)
    manual_seed(seed)
    model = build_seq2seq_model(kind, task, (low, high), budget["embed_dim"], budget["layers"])
    config = Seq2SeqTrainConfig(steps=budget["steps"], batch_size=budget["batch_size"], min_length=low,
                                max_length=high, lr=budget["lr"], warmup_steps=min(100, budget["steps"] // 10),
                                eval_every=max(1, budget["steps"] // 10), seed=seed)
    start = time.perf_counter()
    run = train_seq2seq(model, task, config, held_out=held_out, progress=verbose)
    wall = time.perf_counter() - start
    greedy = evaluate_seq2seq(model, held_out, task.vocabulary)
    beam = evaluate_seq2seq(model, held_out, task.vocabulary, search="beam", beam_width=4)
    result = {"task": name, "model": kind, "parameters": model.num_parameters(), "budget": budget,
              "held_out_examples": len(held_out), "train_seconds": run.seconds, "wall_seconds": wall,
              "examples_per_s": run.examples_per_s, "train_loss_last_tenth": run.history[-1]["train_loss"],
              "exact_match_greedy": greedy["exact_match"], "exact_match_beam4": beam["exact_match"],
              "token_accuracy_teacher_forced": greedy["token_accuracy"]}
    if verbose:
        print(f"{name:9s} {kind}: {result['parameters']:,} parameters, lengths {low}..{high}, {budget['steps']} steps "
              f"x {budget['batch_size']}: {wall:.0f} s; held-out exact match greedy {greedy['exact_match']:.2%}, "
              f"beam(4) {beam['exact_match']:.2%}; teacher-forced token accuracy {greedy['token_accuracy']:.2%}")
    return result


def run_seq2seq_benchmark(mode: str = "full", tasks=("reverse", "addition"), kind: str = "transformer",
                          out="bench_seq2seq.json", seed: int = 0, verbose: bool = True) -> dict:
    report = {"meta": {"mode": mode, "model": kind, "seed": seed, "when": datetime.datetime.now().isoformat()},
              "results": [solve_task(name, mode, kind, seed, verbose) for name in tasks]}
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
        if verbose:
            print(f"wrote {out}")
    return report
