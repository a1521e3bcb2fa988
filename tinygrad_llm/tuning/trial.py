"""A trial is one evaluation of the objective: a configuration trained with a budget, its validation loss and
the seconds it took. Every searcher returns its trials in the order it ran them, so one results table, one
log format and one `best_trial` serve them all.

The objective is `objective(config, budget) -> loss`: a function of named hyperparameters and of how much to
spend on them (training steps, epochs), returning a validation loss (M54: a fixed configuration handed to
a tuner tunes nothing; tuning is a search space, a strategy, a budget and a validation objective).
"""
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Trial:
    """One evaluation. bracket and rung say where it ran in successive halving or Hyperband (0 elsewhere)."""
    number: int
    config: dict
    budget: float
    loss: float
    seconds: float
    bracket: int = 0
    rung: int = 0

    def as_dict(self) -> dict:
        """Plain values, ready for a JSON line."""
        return asdict(self)


def ranking_loss(trial: Trial) -> float:
    """The loss to rank by: a diverged run (NaN loss) ranks last instead of breaking the comparison."""
    return math.inf if math.isnan(trial.loss) else trial.loss


def evaluate(objective: Callable, config: dict, budget, number: int, on_trial=None, bracket: int = 0,
             rung: int = 0) -> Trial:
    """Run the objective once, time it, record the trial and hand it to on_trial (a logger, a progress bar)."""
    start = time.perf_counter()
    loss = float(objective(config, budget))
    trial = Trial(number, config, budget, loss, time.perf_counter() - start, bracket, rung)
    if on_trial is not None:
        on_trial(trial)
    return trial


def best_trial(trials: list) -> Trial:
    if not trials:
        raise ValueError("best_trial: no trials were run; give the searcher a budget of at least one trial")
    return min(trials, key=ranking_loss)


def results_table(trials: list, limit: int | None = None) -> str:
    """The trials as a text table, best loss first, one column per hyperparameter."""
    names = list(dict.fromkeys(name for trial in trials for name in trial.config))
    header = ["#", "bracket", "rung", "budget", "loss", "seconds", *names]
    rows = [[str(t.number), str(t.bracket), str(t.rung), f"{t.budget:g}", f"{t.loss:.4g}", f"{t.seconds:.2f}",
             *(_format(t.config.get(name, "")) for name in names)]
            for t in sorted(trials, key=ranking_loss)[:limit]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows])


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
