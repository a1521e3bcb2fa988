"""Grid, random search, successive halving and Hyperband on objectives whose answers are known."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinygrad_llm.experiments.search_strategies import learning_rate_above_1e_3, random_versus_grid
from tinygrad_llm.tuning.search_space import IntUniform, LogUniform, SearchSpace, Uniform
from tinygrad_llm.tuning.searchers import grid_search, random_search
from tinygrad_llm.tuning.successive_halving import hyperband, hyperband_schedule, successive_halving
from tinygrad_llm.tuning.trial import best_trial, results_table

pytestmark = pytest.mark.hpo

LR_AND_WIDTH = SearchSpace({"lr": LogUniform(1e-5, 1e-1), "width": IntUniform(8, 512, log=True)})


def bowl(config, budget):
    """Zero at lr = 1e-3 and width = 64, growing with the distance on the log scales."""
    return (math.log10(config["lr"]) + 3) ** 2 + (math.log2(config["width"]) - 6) ** 2


@given(st.integers(0, 2**32 - 1))
def test_random_search_finds_near_the_optimum(seed):
    """The box |log10 lr + 3| < 0.4, |log2 width - 6| < 0.6 fills about 0.2 x 0.2 of the unit cube, so 500 draws
    all miss it with probability about 0.96^500 ~ 1e-9; inside it the loss is below 0.4^2 + 0.6^2 = 0.52."""
    seen = []
    trials = random_search(bowl, LR_AND_WIDTH, 500, rng=np.random.default_rng(seed), on_trial=seen.append)
    assert seen == trials and [t.number for t in trials] == list(range(500))
    assert all(LR_AND_WIDTH.contains(t.config) for t in trials)
    assert best_trial(trials).loss < 0.52


@given(st.integers(1, 5), st.integers(1, 5))
def test_grid_search_evaluates_every_grid_point_once(lr_points, dropout_points):
    space = SearchSpace({"lr": LogUniform(1e-4, 1e-1), "dropout": Uniform(0.0, 0.5)})
    trials = grid_search(bowl_with_dropout, space, {"lr": lr_points, "dropout": dropout_points}, budget=7)
    assert len(trials) == lr_points * dropout_points
    assert len({(t.config["lr"], t.config["dropout"]) for t in trials}) == len(trials)
    assert all(t.budget == 7 for t in trials)
    assert best_trial(trials).loss == min(bowl_with_dropout(t.config, 7) for t in trials)


def bowl_with_dropout(config, budget):
    return (math.log10(config["lr"]) + 3) ** 2 + (config["dropout"] - 0.1) ** 2


@given(st.integers(1, 40), st.sampled_from([2, 3, 4]), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_successive_halving_keeps_the_best_fraction_at_each_rung(count, eta, rungs, seed):
    """The losses are a random table (configuration x rung), so a later rung may reorder the survivors: each
    rung must keep the best of ITS OWN losses, exactly floor(n / eta) of them (at least one)."""
    losses = np.random.default_rng(seed).permutation(count * rungs).reshape(count, rungs).astype(float)
    budget_of_rung = [eta ** rung for rung in range(rungs)]
    spent = []

    def objective(config, budget):
        spent.append(budget)
        return losses[config["id"], budget_of_rung.index(budget)]

    trials = successive_halving(objective, [{"id": i} for i in range(count)], eta ** (rungs - 1), eta, rungs)
    survivors = list(range(count))
    for rung in range(rungs):
        rung_trials = [t for t in trials if t.rung == rung]
        assert sorted(t.config["id"] for t in rung_trials) == sorted(survivors)
        assert all(t.budget == budget_of_rung[rung] and t.loss == losses[t.config["id"], rung] for t in rung_trials)
        survivors = sorted(survivors, key=lambda i: losses[i, rung])[:max(1, len(survivors) // eta)]
    assert spent == [t.budget for t in trials]  # the budget it reports is the budget it spent
    counts = [max(1, count // eta ** rung) for rung in range(rungs)]
    assert sum(t.budget for t in trials) == sum(n * b for n, b in zip(counts, budget_of_rung))


def test_successive_halving_narrows_down_to_one_configuration_at_the_full_budget_by_default():
    trials = successive_halving(bowl, [LR_AND_WIDTH.sample(np.random.default_rng(i)) for i in range(27)], 81, eta=3)
    assert [(sum(t.rung == r for t in trials), {t.budget for t in trials if t.rung == r}) for r in range(4)] == [
        (27, {3}), (9, {9}), (3, {27}), (1, {81})]


def test_a_diverged_trial_never_survives_a_rung():
    losses = {0: float("nan"), 1: 2.0, 2: 1.0}
    trials = successive_halving(lambda c, b: losses[c["id"]], [{"id": i} for i in losses], 9, eta=3, rungs=2)
    assert [t.config["id"] for t in trials if t.rung == 1] == [2]
    assert best_trial(trials).config["id"] == 2


def test_hyperband_brackets_follow_the_standard_schedule():
    """Li et al. (2018), Table 1: max budget 81, eta 3, as (configurations, budget) per rung."""
    assert hyperband_schedule(81, eta=3) == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]


@given(st.sampled_from([2, 3, 4]), st.integers(0, 4), st.sampled_from([1, 2, 5]))
def test_hyperband_brackets_grow_the_budget_and_shrink_the_survivors_by_eta(eta, s_max, min_budget):
    schedule = hyperband_schedule(min_budget * eta ** s_max, eta, min_budget)
    assert len(schedule) == s_max + 1
    for s, bracket in zip(range(s_max, -1, -1), schedule):
        counts, budgets = zip(*bracket)
        assert len(bracket) == s + 1 and budgets[-1] == min_budget * eta ** s_max
        assert budgets[0] == min_budget * eta ** (s_max - s)
        assert counts[0] == math.ceil((s_max + 1) * eta ** s / (s + 1) - 1e-9)
        assert all(later == max(1, counts[0] // eta ** i) for i, later in enumerate(counts))
        assert all(b * eta == nxt for b, nxt in zip(budgets, budgets[1:]))


@given(st.integers(0, 2**32 - 1))
def test_hyperband_runs_its_schedule_and_reports_what_it_spent(seed):
    spent = []

    def objective(config, budget):
        spent.append(budget)
        return bowl(config, budget) + 1 / budget

    trials = hyperband(objective, LR_AND_WIDTH, max_budget=27, eta=3, rng=np.random.default_rng(seed))
    for bracket, rungs in enumerate(hyperband_schedule(27, 3)):
        for rung, (count, budget) in enumerate(rungs):
            here = [t for t in trials if t.bracket == bracket and t.rung == rung]
            assert len(here) == count and all(t.budget == budget for t in here)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert spent == [t.budget for t in trials]


def test_results_table_lists_the_best_first():
    trials = random_search(bowl, LR_AND_WIDTH, 6, budget=3, rng=np.random.default_rng(0))
    lines = results_table(trials, limit=4).splitlines()
    assert lines[0].split() == ["#", "bracket", "rung", "budget", "loss", "seconds", "lr", "width"]
    assert len(lines) == 5 and int(lines[1].split()[0]) == best_trial(trials).number
    assert [float(line.split()[4]) for line in lines[1:]] == sorted(float(line.split()[4]) for line in lines[1:])


def test_experiment_random_search_beats_a_grid_when_one_parameter_matters():
    result = random_versus_grid(fast=True)
    assert result["grid_distinct_x"] == 3 and result["random_distinct_x"] == 9
    assert result["random_median_regret"] <= result["grid_median_regret"]


def test_experiment_uniform_learning_rates_exceed_1e_3_nine_times_in_ten():
    result = learning_rate_above_1e_3(fast=True)
    assert abs(result["uniform_share_above"] - 0.9009) <= 0.02
    assert abs(result["log_uniform_share_above"] - 1 / 3) <= 0.02
    assert result["log_uniform_median"] == pytest.approx((1e-5 * 1e-2) ** 0.5, rel=0.2)
