"""Successive halving and Hyperband: stop weak trials early and spend the budget on the promising ones.

Successive halving runs many configurations on a small budget, keeps the best 1/eta of them (floor(n / eta),
at least one), multiplies the budget by eta, and repeats up to the maximum budget. Its one gamble is how
small the first budget may be: too small and early losses do not predict final ones. Hyperband hedges that
bet by running several brackets, from "many configurations, tiny first budget" down to "a few configurations,
each with the full budget" (plain random search), each bracket costing about the same.
"""
import math

from ..random import generator
from .search_space import SearchSpace
from .trial import evaluate, ranking_loss


def _check_eta(caller: str, eta):
    if not isinstance(eta, int) or eta < 2:
        raise ValueError(f"{caller}: eta (the factor the budget grows by and the survivors shrink by) must be an "
                         f"integer >= 2, got {eta!r}")


def _tidy(budget: float):
    """81 / 27 is 3.0: hand the objective the integer 3 when a budget is whole (training steps, epochs)."""
    return int(budget) if float(budget).is_integer() else budget


def rung_budgets(max_budget, eta: int, rungs: int) -> list:
    """The budget of each rung of a bracket that ends at max_budget: max_budget / eta^(rungs-1), ..., max_budget."""
    return [_tidy(max_budget / eta ** (rungs - 1 - rung)) for rung in range(rungs)]


def successive_halving(objective, configs: list, max_budget, eta: int = 3, rungs: int | None = None,
                       bracket: int = 0, first_number: int = 0, on_trial=None) -> list:
    """Evaluate configs on rung_budgets(max_budget, eta, rungs); after each rung but the last, keep the
    floor(n / eta) best (at least one) for the next. `rungs` defaults to floor(log_eta(n)) + 1, the number
    that narrows the n configurations down to one. Every trial is returned: the budget spent is the sum of
    their budgets (each rung runs its survivors from scratch)."""
    _check_eta("successive_halving", eta)
    if not configs:
        raise ValueError("successive_halving: give at least one configuration")
    if rungs is None:
        rungs = math.floor(math.log(len(configs), eta) + 1e-9) + 1
    trials, survivors = [], list(configs)
    for rung, budget in enumerate(rung_budgets(max_budget, eta, rungs)):
        rung_trials = [evaluate(objective, config, budget, first_number + len(trials) + i, on_trial, bracket, rung)
                       for i, config in enumerate(survivors)]
        trials += rung_trials
        keep = max(1, len(survivors) // eta)
        survivors = [trial.config for trial in sorted(rung_trials, key=ranking_loss)[:keep]]
    return trials


def hyperband_schedule(max_budget, eta: int = 3, min_budget=1) -> list:
    """The brackets of Hyperband (Li et al., 2018) as lists of (configurations, budget) per rung. With
    s_max = floor(log_eta(max_budget / min_budget)), bracket s starts ceil((s_max + 1) / (s + 1) * eta^s)
    configurations at max_budget / eta^s and keeps floor(n / eta) at each rung."""
    _check_eta("hyperband_schedule", eta)
    if not 0 < min_budget <= max_budget:
        raise ValueError(f"hyperband_schedule: need 0 < min_budget <= max_budget, got {min_budget}, {max_budget}")
    s_max = 0
    while max_budget / eta ** (s_max + 1) >= min_budget:
        s_max += 1
    schedule = []
    for s in range(s_max, -1, -1):
        count = math.ceil((s_max + 1) / (s + 1) * eta ** s - 1e-9)  # the tolerance keeps 5/5 * 1 from rounding up
        counts = [max(1, count // eta ** rung) for rung in range(s + 1)]
        schedule.append(list(zip(counts, rung_budgets(max_budget, eta, s + 1))))
    return schedule


def hyperband(objective, space: SearchSpace, max_budget, eta: int = 3, min_budget=1, rng=None,
              on_trial=None) -> list:
    """Successive halving once per bracket of hyperband_schedule, on fresh configurations drawn from space."""
    rng = generator() if rng is None else rng
    trials = []
    for bracket, rungs in enumerate(hyperband_schedule(max_budget, eta, min_budget)):
        configs = [space.sample(rng) for _ in range(rungs[0][0])]
        trials += successive_halving(objective, configs, max_budget, eta, len(rungs), bracket, len(trials), on_trial)
    return trials
