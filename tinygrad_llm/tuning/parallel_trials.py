"""Trials on several ranks at once, one trial each, finding exactly what the serial search finds (Q34).

A searcher is a sequential program: which trial it runs next may depend on every loss before it. Rewriting each
one for parallel workers would change what it finds. Instead every rank runs the unchanged searcher, over and
over, on an objective that answers from a memo {(config, budget) -> trial} shared by all ranks:

    1. replay: run the searcher from the start; a (config, budget) in the memo gets its loss, any other is a
       request, answered with NaN for now (searchers already treat NaN as a diverged trial);
    2. rank r trains request r (the replay stops once there is one request per rank);
    3. every rank hands every other its result (allgather), and all add them to the memo;
    4. repeat until a replay makes no request: its trials are the search's result.

The searcher is deterministic given its seed and the losses it is told, and every rank holds the same memo, so
every rank replays the same requests in the same order and nobody has to coordinate who trains what.

The first request of a replay is always a trial the serial search runs: everything before it was answered with
real losses. Later requests were chosen after a NaN placeholder, so they are speculative. Random and grid search
never look at the losses, so all their requests are real; successive halving's requests within a rung are real;
Bayesian optimisation's initial design is real, but each later proposal depends on the loss before it, so its
other ranks mostly guess wrong. A speculative result is not thrown away (a loss depends only on its config and
budget), and it is used if the real search asks for it later; `ParallelSearch.wasted` counts the ones it never did.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .trial import Trial, evaluate
from .trial_log import trial_key


class _OneRequestPerRank(Exception):
    """Stops a replay once every rank has a trial to train: the rest of it would only add speculation."""


@dataclass
class ParallelSearch:
    trials: list  # the search's trials, in the searcher's order, exactly as the serial search runs them
    trained: list  # the trials the ranks trained in this call, in the order they were requested
    rounds: int  # replays that ended in training (each round every rank trains at most one trial)

    @property
    def wasted(self) -> int:
        """Trials trained speculatively that the search never asked for."""
        used = {trial_key(trial.config, trial.budget) for trial in self.trials}
        return sum(trial_key(trial.config, trial.budget) not in used for trial in self.trained)


def replay(search, memo: dict, wanted: int):
    """Run search(objective, on_trial) with the memo's losses. Returns (its trials, []) when the memo answered
    every request, else (None, the first `wanted` unanswered trials, as placeholders with a NaN loss)."""
    requests, requested = [], set()

    def objective(config: dict, budget) -> float:
        known = memo.get(trial_key(config, budget))
        return known.loss if known is not None else math.nan

    def on_trial(trial: Trial):
        key = trial_key(trial.config, trial.budget)
        if key not in memo and key not in requested:
            requests.append(trial)
            requested.add(key)
            if len(requests) == wanted:
                raise _OneRequestPerRank

    try:
        trials = search(objective, on_trial)
    except _OneRequestPerRank:
        return None, requests
    return (None, requests) if requests else (trials, [])


def run_search_on_ranks(search, objective, comm, known=(), on_result=None) -> ParallelSearch:
    """Run search(objective, on_trial) (a deterministic searcher: seeded, deciding only from the losses it is
    told) with the trials spread over the ranks of comm: anything with Get_rank(), Get_size() and allgather(obj),
    such as mpi4py's COMM_WORLD. Every rank calls it and trains at most one trial per round, timed as
    `evaluate` times it. known: trials already run (a log read back, on any one rank), never trained again.
    on_result(trial) is called for each newly trained trial, in request order (tune's rank 0 logs it there).
    Every rank returns the same ParallelSearch: the serial search's trials (configs, budgets, losses, order),
    each with the seconds its training took on whichever rank ran it."""
    rank, size = comm.Get_rank(), comm.Get_size()
    memo = {trial_key(trial.config, trial.budget): trial for trials in comm.allgather(list(known)) for trial in trials}
    trained, rounds = [], 0
    while True:
        trials, requests = replay(search, memo, wanted=size)
        if not requests:  # the replay's own timings measured the memo: give each trial its training time
            timed = [dataclasses.replace(t, seconds=memo[trial_key(t.config, t.budget)].seconds) for t in trials]
            return ParallelSearch(timed, trained, rounds)
        mine = [evaluate(objective, t.config, t.budget, t.number, bracket=t.bracket, rung=t.rung)
                for t in requests[rank:rank + 1]]
        for trial in (trial for results in comm.allgather(mine) for trial in results):  # in rank order
            memo[trial_key(trial.config, trial.budget)] = trial
            trained.append(trial)
            if on_result is not None:
                on_result(trial)
        rounds += 1

