"""The record of a run: one row per evaluation, written as CSV and JSON, and a loss-curve plot.

Rows are keyed by the global optimizer step (strictly increasing, also across a resume), never by epoch:
a plot of loss against step is comparable between runs with different batch sizes only through tokens,
so each row also carries the tokens seen so far.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

COLUMNS = ("step", "tokens", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "train_seconds")


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        write(f)
    os.replace(tmp, path)


def write_logs(out_dir, history: list[dict], config: dict) -> dict:
    """history.csv, history.json and loss_curve.png in out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "history.csv", "json": out_dir / "history.json", "plot": out_dir / "loss_curve.png"}

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in COLUMNS} for row in history)

    _write_atomically(paths["csv"], write_csv)
    _write_atomically(paths["json"], lambda f: json.dump({"config": config, "history": history}, f, indent=1))
    plot_loss_curve(history, paths["plot"], title=f"{config.get('model', '')} on {config.get('corpus', '')}")
    return paths


def plot_loss_curve(history: list[dict], path=None, title: str = "", ax=None):
    """Train and val loss against step, drawn on `ax` (a notebook's axes) or on a new figure saved to `path`.

    The new figure is a plain matplotlib Figure, not pyplot's: saving a log from inside a notebook must not
    switch the notebook's plotting backend."""
    from matplotlib.figure import Figure

    figure = None
    if ax is None:
        figure = Figure(figsize=(6, 3.5))
        ax = figure.subplots()
    steps = [row["step"] for row in history]
    ax.plot(steps, [row["train_loss"] for row in history], label="train", marker=".")
    ax.plot(steps, [row["val_loss"] for row in history], label="val", marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    if figure is not None and path is not None:
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    return ax
