"""A deliberately broken parallel search; test_parallel_trials.py proves that its checks catch it."""
import dataclasses
import math

from tinygrad_llm.tuning.trial import evaluate
from tinygrad_llm.tuning.trial_log import trial_key


def search_that_ends_when_the_requests_fit_in_one_round(search, objective, comm):
    """Replays the search on the shared memo as run_search_on_ranks does, but when a replay's requests all fit in
    one round it trains them and returns that replay's trials with their losses filled in, skipping the replay
    that would check them. Right for random and grid search, whose requests are all real; wrong when a request
    was chosen after a NaN placeholder (a BO proposal, a halving survivor): the guess is returned as the search."""
    rank, size = comm.Get_rank(), comm.Get_size()
    memo = {}
    while True:
        trials, requests = [], {}

        def answer(config, budget):
            known = memo.get(trial_key(config, budget))
            return known.loss if known is not None else math.nan

        def on_trial(trial):
            trials.append(trial)
            key = trial_key(trial.config, trial.budget)
            if key not in memo:
                requests.setdefault(key, trial)

        search(answer, on_trial)
        if not requests:
            return trials
        mine = [evaluate(objective, t.config, t.budget, t.number) for t in list(requests.values())[rank:rank + 1]]
        for trial in (trial for results in comm.allgather(mine) for trial in results):
            memo[trial_key(trial.config, trial.budget)] = trial
        if len(requests) <= size:  # BUG: every request is answered now, but some were asked after a placeholder
            return [dataclasses.replace(t, loss=memo[trial_key(t.config, t.budget)].loss) for t in trials]
