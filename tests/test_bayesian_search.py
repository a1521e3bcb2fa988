"""Bayesian search over a SearchSpace (Q34, M55): every trial meets the space's constraints, also when the best
losses lie along a constraint's edge and some trials diverge; the proposals depend only on the seed and the
losses, so a search resumed from a log of its losses replays itself; it beats random search's median on a cheap
objective; bad arguments raise clear errors. A Bayesian search that forgets the constraints
(tests/broken_bayesian_search.py) is caught. The Branin regret experiment runs in its fast mode."""
import math
import zlib

import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from tinygrad_llm.experiments.branin_regret import METHODS, branin_regret
from tinygrad_llm.tuning import bayesian_search as bayesian_search_module
from tinygrad_llm.tuning.bayesian_search import bayesian_search, losses_for_the_model
from tinygrad_llm.tuning.search_space import Categorical, Constraint, IntUniform, LogUniform, SearchSpace
from tinygrad_llm.tuning.searchers import random_search
from tinygrad_llm.tuning.trial import best_trial

import broken_bayesian_search as broken
from test_search_space import assert_valid, build_space, space_specs

pytestmark = pytest.mark.hpo

# A fixed space whose parameter budget (width * layers <= 300) cuts off the widest, deepest models.
TIGHT_SPEC = dict(lr_low=-5, lr_decades=3, heads={2, 4, 6}, width_low=8, width_span=248, width_log=True,
                  dropout=0.5, budget=300)


def widest_model_wins(config, budget):
    """Lower for wider, deeper models, so the best losses lie along the parameter budget's edge; a dropout
    above 0.4 "diverges" (NaN), as a too-aggressive setting can."""
    if config["dropout"] > 0.4:
        return math.nan
    return -config["width"] * config["layers"] + (math.log10(config["lr"]) + 3) ** 2


def run_and_check(spec, seed, trials=6):
    space, seen = build_space(spec), []
    results = bayesian_search(widest_model_wins, space, trials, initial_points=3, seed=seed, candidates=100,
                              on_trial=seen.append)
    assert seen == results and [trial.number for trial in results] == list(range(trials))
    for trial in results:
        problems = space.violations(trial.config)
        assert not problems, f"trial {trial.number} {trial.config} breaks {problems}"
        assert_valid(trial.config, spec)


@given(space_specs, st.integers(0, 2**16))
@example(TIGHT_SPEC, 0)
@settings(max_examples=8, phases=(Phase.explicit, Phase.reuse, Phase.generate))  # each example runs a search
def test_every_trial_meets_the_constraints(spec, seed):
    run_and_check(spec, seed)


@pytest.mark.broken
def test_a_search_that_forgets_the_constraints_is_caught(monkeypatch):
    monkeypatch.setattr(bayesian_search_module, "_landing", broken.landing_that_forgets_the_constraints)
    monkeypatch.setattr(bayesian_search_module, "_allowed", broken.keep_every_configuration)
    with pytest.raises(AssertionError, match=r"breaks \['width \* layers <= 300'\]"):
        run_and_check(TIGHT_SPEC, 0, trials=10)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=20))
def test_diverged_losses_enter_the_model_as_the_worst_finite_loss(losses):
    modelled = losses_for_the_model(losses)
    finite = [loss for loss in losses if math.isfinite(loss)]
    assert np.all(np.isfinite(modelled))
    for loss, value in zip(losses, modelled):
        assert value == (loss if math.isfinite(loss) else max(finite, default=0.0))


def test_a_search_where_every_trial_diverges_still_runs():
    results = bayesian_search(lambda config, budget: math.nan, build_space(TIGHT_SPEC), 6, initial_points=2,
                              candidates=100)
    assert len(results) == 6 and all(math.isnan(trial.loss) for trial in results)


def noisy_loss(config, budget):
    """widest_model_wins plus noise that depends only on the configuration, like a training run's fixed seed."""
    noise = np.random.default_rng(zlib.crc32(repr(config).encode())).normal(0.0, 20.0)
    return widest_model_wins(config, budget) + noise


def test_the_same_seed_and_losses_give_the_same_trials():
    space = build_space(TIGHT_SPEC)
    first, second = (bayesian_search(noisy_loss, space, 7, initial_points=3, seed=4, candidates=100)
                     for _ in range(2))
    assert [t.config for t in first] == [t.config for t in second]
    np.testing.assert_array_equal([t.loss for t in first], [t.loss for t in second])


def test_a_search_resumed_from_its_log_replays_its_trials():
    """Resuming a search: run it again with the same seed, answering the logged configurations from the log (no
    training) and training only the rest. It must propose exactly the configurations of an uninterrupted run."""
    space = build_space(TIGHT_SPEC)
    uninterrupted = bayesian_search(noisy_loss, space, 8, initial_points=3, seed=2, candidates=100)
    assert any(math.isnan(trial.loss) for trial in uninterrupted)  # the log holds diverged trials too
    log = {repr(trial.config): trial.loss for trial in uninterrupted[:5]}  # interrupted after five trials
    trained = []

    def resumed_objective(config, budget):
        if repr(config) in log:
            return log[repr(config)]
        trained.append(config)
        return noisy_loss(config, budget)

    resumed = bayesian_search(resumed_objective, space, 8, initial_points=3, seed=2, candidates=100)
    assert [t.config for t in resumed] == [t.config for t in uninterrupted]
    assert trained == [t.config for t in uninterrupted[5:]]


def bowl(config, budget):
    """Zero at lr = 1e-3 and width = 64, on the log scales."""
    return (math.log10(config["lr"]) + 3) ** 2 + (math.log2(config["width"]) - 6) ** 2


@pytest.mark.parametrize("seed", [0, 1])
def test_bayesian_search_beats_the_median_random_search(seed):
    """15 trials on a bowl over a log-uniform learning rate and a log-scaled integer width. Measured: BO's best
    loss was below 0.0006 on each of seeds 0-5, random search's median over 21 runs between 0.22 and 0.62."""
    space = SearchSpace({"lr": LogUniform(1e-5, 1e-1), "width": IntUniform(8, 512, log=True)})
    ours = best_trial(bayesian_search(bowl, space, 15, seed=seed, candidates=300)).loss
    rng = np.random.default_rng(seed)
    assert ours < np.median([best_trial(random_search(bowl, space, 15, rng=rng)).loss for _ in range(21)])


@pytest.mark.parametrize("arguments, message", [
    (dict(space={"lr": LogUniform(1e-5, 1e-2)}), "must be a SearchSpace"),
    (dict(trials=3, initial_points=5), "initial_points <= trials"),
    (dict(trials=0, initial_points=0), "initial_points <= trials"),
    (dict(kernel="gaussian"), "unknown kernel"),
    (dict(acquisition="pi"), "acquisition must be one of"),
])
def test_bad_arguments_raise_clear_errors(arguments, message):
    call = dict(objective=bowl, space=SearchSpace({"lr": LogUniform(1e-5, 1e-1), "width": IntUniform(8, 512)}),
                trials=6) | arguments
    with pytest.raises(ValueError, match=f"bayesian_search: .*{message}"):
        bayesian_search(**call)


def test_unsatisfiable_constraints_raise_a_clear_error():
    odd_heads = Constraint("an odd number of heads", lambda config: config["heads"] % 2)
    space = SearchSpace({"heads": Categorical([2, 4])}, [odd_heads])
    with pytest.raises(ValueError, match="no draw in .* satisfied the constraints"):
        bayesian_search(bowl, space, 3, initial_points=1)


def test_branin_regret_curves_are_consistent():
    result = branin_regret(fast=True)
    evaluations = result["evaluations"]
    np.testing.assert_array_equal(result["evaluation"], np.arange(1, evaluations + 1))
    for method in METHODS:
        lower, median, upper = (result[f"{method}_{name}"] for name in ("lower_quartile", "median", "upper_quartile"))
        assert lower.shape == median.shape == upper.shape == (evaluations,)
        assert np.all(lower >= 0) and np.all(lower <= median) and np.all(median <= upper)
        assert np.all(np.diff(median) <= 0)  # the best so far never gets worse, in every run, so in the median
        assert result[f"{method}_final_median_regret"] == median[-1]
