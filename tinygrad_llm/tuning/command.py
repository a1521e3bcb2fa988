"""`python -m tinygrad_llm tune`: search the GPT's learning rate, width, dropout and warmup for the lowest
validation loss, with any of the library's searchers, resumably.

A trial is one training run (the shared loop, `train`'s settings for everything not searched) whose objective is
the validation loss at its last step; its budget is the number of optimizer steps (successive halving gives the
early rungs fewer). Every trial is appended to out_dir/trials.jsonl as it finishes (trial_log.py), so re-running
the same command after an interruption retrains nothing and goes on where it stopped. At the end the command
writes the results table (results.txt) and a plot of the best loss so far against the trial (best_so_far.png).
Under `mpiexec -n K python -m tinygrad_llm tune --parallel-trials ...` the K ranks train trials side by side, one
each, and the search finds exactly what it finds in one process (parallel_trials.py).

The searched ranges are centred on `train`'s flags: the learning rate from a tenth to ten times --lr (log-uniform),
the width (embed_dim) from half to twice --embed-dim among the multiples of --num-heads (M55: never rounded into
a width the heads do not divide), dropout in [0, 0.3] and the warmup as a fraction of the steps in [0, 0.2].
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..training.config import TrainConfig
from .parallel_trials import run_search_on_ranks
from .search_space import Categorical, LogUniform, MultipleOf, SearchSpace, Uniform
from .searchers import grid_search, random_search
from .successive_halving import successive_halving
from .trial import Trial, best_trial, ranking_loss, results_table
from .trial_log import TrialLog

METHODS = ("bo", "random", "grid", "halving")
# train's flags that tune does not take: dropout and warmup are searched outright; it tunes a causal GPT in
# one process (--lr and --embed-dim stay: they centre their searched ranges)
NOT_FLAGS = ("dropout", "warmup_steps", "model", "objective", "mask_rate", "hidden_dim", "mlp_window", "data_parallel",
             "log_histograms")
HALVING_ETA = 3  # successive halving keeps the best third at each rung and triples their steps


def gpt_search_space(base: TrainConfig) -> SearchSpace:
    """The GPT's learning rate, width, dropout and warmup, centred on base's lr and embed_dim (see the module
    docstring). num_heads is a one-choice parameter: the width is drawn among its multiples."""
    return SearchSpace({
        "lr": LogUniform(base.lr / 10, base.lr * 10),
        "num_heads": Categorical((base.num_heads,)),
        "embed_dim": MultipleOf("num_heads", max(base.embed_dim // 2, 1), base.embed_dim * 2, log=True),
        "dropout": Uniform(0.0, 0.3),
        "warmup_fraction": Uniform(0.0, 0.2),
    })


def trial_train_config(base: TrainConfig, config: dict, budget) -> TrainConfig:
    """base with a trial's values, trained for `budget` steps. The names of config are TrainConfig fields, except
    warmup_fraction (warmup_steps as a share of the steps, so a short rung keeps the schedule's shape); min_lr
    follows lr, keeping base's ratio of the two."""
    steps = max(1, round(budget))
    values = {name: value for name, value in config.items() if name != "warmup_fraction"}
    if "warmup_fraction" in config:
        values["warmup_steps"] = round(config["warmup_fraction"] * steps)
    if "lr" in config:
        values["min_lr"] = config["lr"] * base.min_lr / base.lr
    return dataclasses.replace(base, **values, steps=steps)


def validation_loss_objective(base: TrainConfig, data=None):
    """objective(config, budget) -> the validation loss at the end of a run of trial_train_config(base, config,
    budget). The text is prepared once (no searched value changes it) and every run starts from base's seed, so
    the same (config, budget) always gives the same loss."""
    from ..training import train_language_model
    from ..training.text_data import prepare_text_data

    data = prepare_text_data(base) if data is None else data

    def objective(config: dict, budget) -> float:
        run = train_language_model(trial_train_config(base, config, budget), progress=False, data=data)
        return run.final["val_loss"]

    return objective


def _grid_points(space: SearchSpace, trials: int) -> int:
    """The most points per parameter whose whole grid fits in `trials` evaluations (at least one)."""
    points = 1
    while len(space.grid(points + 1)) <= trials:
        points += 1
    return points


def _halving_configs(space: SearchSpace, trials: int, seed: int) -> list:
    return [space.sample(np.random.default_rng([seed, number])) for number in range(trials)]


def run_searcher(method: str, objective, space: SearchSpace, trials: int, max_budget, seed: int = 0,
                 on_trial=None) -> list:
    """One search: `trials` trials with the full budget (bo, random; grid: the largest full grid that fits), or
    successive halving started on `trials` configurations (budgets max_budget / 3^k). Deterministic given the
    seed and the losses, which is what lets a memoised re-run replay a log."""
    if method == "bo":
        from .bayesian_search import bayesian_search

        return bayesian_search(objective, space, trials, max_budget, initial_points=min(5, trials), seed=seed,
                               on_trial=on_trial)
    if method == "random":
        return random_search(objective, space, trials, max_budget, np.random.default_rng(seed), on_trial)
    if method == "grid":
        return grid_search(objective, space, _grid_points(space, trials), max_budget, on_trial)
    if method == "halving":
        return successive_halving(objective, _halving_configs(space, trials, seed), max_budget, HALVING_ETA,
                                  on_trial=on_trial)
    raise ValueError(f"run_searcher: method must be one of {METHODS}, got {method!r}")


def planned_trials(method: str, space: SearchSpace, trials: int, max_budget, seed: int = 0) -> list:
    """The budget of every trial the search will run, in order, known in advance for all methods but bo
    (whose trials all get max_budget): found by running the searcher on a free objective."""
    if method == "bo":
        return [max_budget] * trials
    return [trial.budget for trial in run_searcher(method, lambda config, budget: 0.0, space, trials, max_budget, seed)]


@dataclass
class TuningResult:
    trials: list  # in the order the searcher ran them
    best: Trial
    trained: int  # trials run by this call; the others were answered from the log
    log: Path
    table: Path
    plot: Path | None
    wasted: int = 0  # with several ranks: trials trained speculatively that the search never asked for


def tune(objective, space: SearchSpace, method: str, trials: int, max_budget, out_dir, search: dict | None = None,
         seed: int = 0, progress: bool = True, plot: bool = True, comm=None) -> TuningResult | None:
    """Run a search resumably in out_dir: trials.jsonl (appended as trials finish), results.txt and (with plot)
    best_so_far.png. `search` describes everything else the losses depend on (the fixed training settings);
    with the method, seed, budget and space it heads the log, and a log headed differently is refused.
    The number of trials is left out of it: running again with more trials extends a search.
    With comm (an mpi4py communicator), every rank calls tune and trains trials (parallel_trials.py); the
    trials are the same as without it, and only rank 0 reads and writes files: the other ranks return None."""
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"tune: --trials must be a positive integer, got {trials!r}")
    if method not in METHODS:
        raise ValueError(f"tune: --method must be one of {METHODS}, got {method!r}")
    out_dir = Path(out_dir)

    def searcher(objective_, on_trial):
        return run_searcher(method, objective_, space, trials, max_budget, seed, on_trial)

    if comm is not None and comm.Get_rank() != 0:
        run_search_on_ranks(searcher, objective, comm)
        return None
    description = {"method": method, "seed": seed, "max_budget": max_budget,
                   "space": {name: repr(parameter) for name, parameter in space.parameters.items()},
                   "constraints": [constraint.description for constraint in space.constraints], **(search or {})}
    log = TrialLog(out_dir / "trials.jsonl", description)
    if comm is None:
        bar = tqdm(total=len(planned_trials(method, space, trials, max_budget, seed)), desc=f"tune ({method})",
                   disable=not progress, unit="trial")
    else:  # speculative trials make the number trained unknown in advance
        bar = tqdm(desc=f"tune ({method}, {comm.Get_size()} ranks)", disable=not progress, unit="trial")
    recorded, wasted = [], 0

    def on_trial(trial: Trial):
        recorded.append(log.record(trial))
        bar.update()
        bar.set_postfix(best=f"{best_trial(recorded).loss:.4f}", logged=len(log.trials))

    try:
        if comm is None:
            searcher(log.memoised(objective), on_trial)
        else:
            finished = run_search_on_ranks(searcher, objective, comm, log.trials, on_trial)
            recorded, wasted = finished.trials, finished.wasted
    finally:
        bar.close()
    table = out_dir / "results.txt"
    table.write_text(results_table(recorded) + "\n", encoding="utf-8")
    figure = out_dir / "best_so_far.png" if plot else None
    if plot:
        plot_best_so_far(recorded, max_budget, figure, title=f"{method} search, {len(recorded)} trials")
    return TuningResult(recorded, best_trial(recorded), log.appended - wasted, log.path, table, figure, wasted)


def best_so_far(trials: list, max_budget) -> np.ndarray:
    """After each trial, the lowest loss among the trials so far that had the full budget (NaN before the
    first): a loss after fewer steps is not comparable, so halving's early rungs do not count."""
    losses = [ranking_loss(t) if t.budget == max_budget else math.inf for t in trials]
    running = np.minimum.accumulate(losses) if losses else np.array([])
    return np.where(np.isinf(running), np.nan, running)


def plot_best_so_far(trials: list, max_budget, path=None, title: str = "", ax=None):
    """Each trial's loss (dots, by budget) and the best full-budget loss so far (a step line) against the
    trial number, on `ax` or on a new Figure (not pyplot's: it must not switch a notebook's backend) saved to path."""
    from matplotlib.figure import Figure

    figure = None
    if ax is None:
        figure = Figure(figsize=(6, 3.5))
        ax = figure.subplots()
    numbers = np.arange(1, len(trials) + 1)
    for budget in sorted({t.budget for t in trials}):
        shown = [(n, t.loss) for n, t in zip(numbers, trials) if t.budget == budget]
        ax.plot(*zip(*shown), ".", alpha=0.6, label=f"trial, {budget:g} steps")
    ax.step(numbers, best_so_far(trials, max_budget), where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if figure is not None and path is not None:
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    return ax


def _flag(name: str, value) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def train_command(config: TrainConfig) -> str:
    """The `train` command line that repeats a configuration: a flag for each setting that is not the default."""
    default = TrainConfig()
    return " ".join(["python -m tinygrad_llm train"] + [
        _flag(field.name, getattr(config, field.name)) for field in dataclasses.fields(TrainConfig)
        if getattr(config, field.name) != getattr(default, field.name)])


def register(subparsers, add_train_config_flags) -> None:
    """Add `tune` to the program's sub-commands, with train's flags (add_train_config_flags) for what it does
    not search."""
    parser = subparsers.add_parser(
        "tune", help="search the GPT's learning rate, width, dropout and warmup (bo, random, grid, halving); resumable",
        description=__doc__.split("\n\n", 1)[1].replace("%", "%%"))
    parser.add_argument("--trials", type=int, default=20,
                        help="trials (halving: configurations in its first rung) (default: %(default)s)")
    parser.add_argument("--method", choices=METHODS, default="bo",
                        help="Bayesian optimisation, random search, the largest grid that fits, or successive "
                        "halving (default: %(default)s)")
    parser.add_argument("--out-dir", default="runs/tune",
                        help="folder for trials.jsonl, results.txt and best_so_far.png; running the same command "
                        "again continues the search logged there (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--parallel-trials", action="store_true",
                        help="run under `mpiexec -n K`: every rank trains trials, one at a time each, and the search "
                        "finds exactly what it finds in one process; only rank 0 prints and writes")
    add_train_config_flags(parser, skip=NOT_FLAGS)
    parser.set_defaults(func=_run_tune)


def _run_tune(args) -> int:
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in NOT_FLAGS}
    base = TrainConfig(**flags, warmup_steps=0)  # warmup is searched (as a fraction of the steps)
    space = gpt_search_space(base)
    comm, guard = None, contextlib.nullcontext()
    if args.parallel_trials:  # under mpiexec: a failing rank stops every rank
        from ..distributed import stop_job_on_failure, world_communicator

        comm = world_communicator()
        guard = stop_job_on_failure(comm)
    if comm is None or comm.Get_rank() == 0:
        planned = planned_trials(args.method, space, args.trials, base.steps, base.seed)
        print(f"Tuning with {args.method}: {len(planned)} trials ({sum(planned):g} steps in all) over "
              f"{', '.join(f'{name}={parameter}' for name, parameter in space.parameters.items())}")
    objective = validation_loss_objective(base)
    try:
        with guard:
            result = tune(objective, space, args.method, args.trials, base.steps, args.out_dir,
                          search={"train": dataclasses.asdict(base)}, seed=base.seed, progress=not args.no_progress,
                          comm=comm)
    except KeyboardInterrupt:
        print(f"\nInterrupted: the finished trials are in {Path(args.out_dir) / 'trials.jsonl'}; run the same "
              f"command again to continue from there.")
        return 130
    if result is None:  # a rank other than 0: its trials are in rank 0's log
        return 0
    print(results_table(result.trials, limit=10))
    best = result.best
    print(f"\nBest: validation loss {best.loss:.4f} after {best.budget:g} steps (trial {best.number}); "
          f"{result.trained} trials trained now, {len(result.trials) - result.trained} answered from the log"
          f"{f', {result.wasted} speculative trials unused' if result.wasted else ''}.\n"
          f"Repeat it: {train_command(trial_train_config(base, best.config, best.budget))}\n"
          f"Files: {result.log}, {result.table}, {result.plot}")
    return 0
