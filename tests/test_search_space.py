"""Search spaces: every sample and every grid point meets the bounds and the constraints, the log scale puts
the median at the geometric mean, the unit-cube map round-trips, and the M55 broken variants are caught."""
import math

import numpy as np
import pytest
from hypothesis import Phase, assume, example, given, settings, strategies as st

from tinygrad_llm.tuning.search_space import (Categorical, Constraint, IntUniform, LogUniform, MultipleOf,
                                              SearchSpace, Uniform)

import broken_search_space as broken

pytestmark = pytest.mark.hpo

# A space description: lr bounds, the head choices, width bounds (always wide enough to hold a multiple of
# every head count), the dropout ceiling and whether the width * layers budget constraint applies.
space_specs = st.fixed_dictionaries(dict(
    lr_low=st.floats(-7, -1), lr_decades=st.floats(0.2, 5), heads=st.sets(st.integers(1, 12), min_size=1),
    width_low=st.integers(1, 64), width_span=st.integers(11, 200), width_log=st.booleans(),
    dropout=st.floats(0.05, 0.9), budget=st.none() | st.integers(300, 2000)))


def build_space(spec, width_parameter=MultipleOf) -> SearchSpace:
    constraints = []
    if spec["budget"] is not None:
        constraints.append(Constraint(f"width * layers <= {spec['budget']}",
                                      lambda c: c["width"] * c["layers"] <= spec["budget"]))
    return SearchSpace({
        "lr": LogUniform(10 ** spec["lr_low"], 10 ** (spec["lr_low"] + spec["lr_decades"])),
        "heads": Categorical(sorted(spec["heads"])),
        "width": width_parameter("heads", spec["width_low"], spec["width_low"] + spec["width_span"],
                                 log=spec["width_log"]),
        "dropout": Uniform(0.0, spec["dropout"]),
        "layers": IntUniform(1, 4),
    }, constraints)


def assert_valid(config, spec):
    """The conditions written out from the description, independently of SearchSpace.contains."""
    assert set(config) == {"lr", "heads", "width", "dropout", "layers"}
    assert 10 ** spec["lr_low"] <= config["lr"] <= 10 ** (spec["lr_low"] + spec["lr_decades"])
    assert config["heads"] in spec["heads"]
    assert isinstance(config["width"], int) and config["width"] % config["heads"] == 0, config
    assert spec["width_low"] <= config["width"] <= spec["width_low"] + spec["width_span"], config
    assert 0.0 <= config["dropout"] <= spec["dropout"]
    assert config["layers"] in (1, 2, 3, 4)
    assert spec["budget"] is None or config["width"] * config["layers"] <= spec["budget"]


def check_every_sample_is_valid(width_parameter):
    @given(space_specs, st.integers(0, 2**32 - 1))
    @example(dict(lr_low=-5, lr_decades=3, heads={4, 6}, width_low=16, width_span=84, width_log=False, dropout=0.5,
                  budget=None), 0)  # 100 is not a multiple of 6: the edge where clipping breaks divisibility
    @settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))  # unshrunk: the broken variant fails at once
    def samples_are_valid(spec, seed):
        space, rng = build_space(spec, width_parameter), np.random.default_rng(seed)
        for _ in range(200):
            assert_valid(space.sample(rng), spec)

    samples_are_valid()


def test_every_sample_satisfies_the_bounds_and_the_constraints():
    check_every_sample_is_valid(MultipleOf)


@pytest.mark.broken
def test_the_check_catches_a_width_rounded_to_the_heads_then_clipped():
    with pytest.raises(AssertionError):
        check_every_sample_is_valid(broken.WidthRoundedToTheHeads)


@given(space_specs, st.integers(2, 4))
def test_every_grid_point_satisfies_the_bounds_and_the_constraints(spec, points):
    space = build_space(spec)
    grid = space.grid(points)
    assert grid, "the grid keeps the points that satisfy the constraints; the smallest width, one layer, fits"
    for config in grid:
        assert_valid(config, spec)
    assert len({tuple(sorted(c.items())) for c in grid}) == len(grid)  # no point twice


@given(st.floats(-7, 1), st.floats(0.2, 5), st.integers(2, 9))
def test_grids_are_evenly_spaced_on_each_parameter_scale(log_low, decades, points):
    low, high = 10 ** log_low, 10 ** (log_low + decades)
    log_grid, linear_grid = LogUniform(low, high).grid(points), Uniform(low, high).grid(points)
    assert linear_grid[0] == low and linear_grid[-1] == high
    assert log_grid[0] == pytest.approx(low, rel=1e-12) and log_grid[-1] == pytest.approx(high, rel=1e-12)
    np.testing.assert_allclose(np.diff(np.log(log_grid)), decades * math.log(10) / (points - 1), rtol=1e-9)
    np.testing.assert_allclose(np.diff(linear_grid), (high - low) / (points - 1), rtol=1e-9)


@given(space_specs, st.integers(0, 2**32 - 1))
def test_to_unit_and_from_unit_are_inverse(spec, seed):
    space, rng = build_space(spec), np.random.default_rng(seed)
    config = space.sample(rng)
    u = space.to_unit(config)
    assert u.shape == (space.dimension,) and np.all((u >= 0) & (u <= 1))
    back = space.from_unit(u)
    assert {k: back[k] for k in ("heads", "width", "layers")} == {k: config[k] for k in ("heads", "width", "layers")}
    assert back["lr"] == pytest.approx(config["lr"], rel=1e-12)
    assert back["dropout"] == pytest.approx(config["dropout"], rel=1e-12, abs=1e-15)
    continuous = [0, 3]  # lr and dropout: for reals the point itself comes back
    assert space.to_unit(back)[continuous] == pytest.approx(u[continuous], abs=1e-12)


@given(space_specs, st.lists(st.floats(0, 1), min_size=5, max_size=5))
def test_every_point_of_the_unit_cube_meets_the_divisibility_condition(spec, u):
    """Not only samples: any point an optimiser proposes maps to a width that the heads divide."""
    config = build_space({**spec, "budget": None}).from_unit(u)
    assert_valid(config, {**spec, "budget": None})


def check_log_uniform_draws(parameter_class):
    """The median of log-uniform draws is the geometric mean of the bounds, and the share above a point t is
    log(high / t) / log(high / low). The sample median of n uniform draws has standard deviation about
    1 / (2 sqrt(n)) of the range (here, the log range); a proportion p has sqrt(p (1 - p) / n)."""
    @given(st.floats(-7, 0), st.floats(0.5, 6), st.floats(0.1, 0.9), st.integers(0, 2**32 - 1))
    @example(-5, 3, 2 / 3, 0)  # [1e-5, 1e-2] with t = 1e-3: one draw in three lands above it
    @settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))
    def draws(log_low, decades, t_fraction, seed):
        n, low, high = 1000, 10 ** log_low, 10 ** (log_low + decades)
        space = SearchSpace({"lr": parameter_class(low, high)})
        rng = np.random.default_rng(seed)
        draws = np.array([space.sample(rng)["lr"] for _ in range(n)])
        log_range = math.log(high / low)
        assert abs(math.log(np.median(draws)) - math.log(math.sqrt(low * high))) <= 5 * log_range / (2 * math.sqrt(n))
        t = 10 ** (log_low + t_fraction * decades)
        expected = math.log(high / t) / log_range
        assert abs(np.mean(draws > t) - expected) <= 5 * math.sqrt(expected * (1 - expected) / n)

    draws()


def test_log_uniform_median_is_the_geometric_mean_and_the_share_above_follows_the_log():
    check_log_uniform_draws(LogUniform)


@pytest.mark.broken
def test_the_check_catches_a_learning_rate_drawn_uniformly():
    with pytest.raises(AssertionError):
        check_log_uniform_draws(broken.LearningRateDrawnUniformly)


def test_the_chance_of_exceeding_1e_3_is_a_third_on_a_log_scale_and_0_9009_on_a_linear_one():
    assert 1 - LogUniform(1e-5, 1e-2).cdf(1e-3) == pytest.approx(1 / 3, abs=1e-12)
    assert 1 - Uniform(1e-5, 1e-2).cdf(1e-3) == pytest.approx((1e-2 - 1e-3) / (1e-2 - 1e-5), abs=1e-12)
    assert 1 - Uniform(1e-5, 1e-2).cdf(1e-3) == pytest.approx(0.9009, abs=1e-4)


@given(st.floats(-3, 3), st.floats(0.1, 10), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_uniform_draws_exceed_a_point_with_the_linear_probability(low, width, t_fraction, seed):
    n, high, t = 2000, low + width, low + t_fraction * width
    parameter = Uniform(low, high)
    draws = np.array([parameter.from_unit(u) for u in np.random.default_rng(seed).random(n)])
    expected = 1 - parameter.cdf(t)
    assert expected == pytest.approx((high - t) / (high - low), abs=1e-12)
    assert abs(np.mean(draws > t) - expected) <= 5 * math.sqrt(expected * (1 - expected) / n) + 1 / n


@given(st.integers(1, 50), st.integers(0, 200), st.integers(1, 7), st.booleans(), st.integers(0, 2**32 - 1))
def test_integer_draws_take_every_allowed_value_and_only_those(low, span_steps, step, log, seed):
    assume(low > step / 2 or not log)  # a log scale needs the lowest cell [low - step/2, low + step/2] positive
    parameter = IntUniform(low, low + span_steps * step, log=log, step=step)
    rng = np.random.default_rng(seed)
    draws = {parameter.from_unit(u) for u in rng.random(300)}
    assert draws <= set(parameter.values())
    assert {parameter.from_unit(0.0), parameter.from_unit(1.0)} == {parameter.low, parameter.high}
    assert all(parameter.from_unit(parameter.to_unit(v)) == v for v in parameter.values())


def test_bad_spaces_raise_errors_that_name_the_problem():
    with pytest.raises(ValueError, match="LogUniform.*positive"):
        LogUniform(0.0, 1.0)
    with pytest.raises(ValueError, match="no multiple of heads=7"):
        SearchSpace({"heads": Categorical([2, 7]), "width": MultipleOf("heads", 8, 13)})
    heads_and_width = SearchSpace({"heads": Categorical([2, 4, 6]), "width": MultipleOf("heads", 16, 100)})
    assert heads_and_width.violations({"heads": 6, "width": 96}) == []
    assert heads_and_width.violations({"heads": 6, "width": 100})[0].startswith("width=100 is outside")
    with pytest.raises(ValueError, match="earlier"):
        SearchSpace({"width": MultipleOf("heads", 8, 64), "heads": IntUniform(1, 4)})
    impossible = SearchSpace({"width": IntUniform(8, 64)}, [Constraint("width > 100", lambda c: c["width"] > 100)],
                             max_tries=50)
    with pytest.raises(ValueError, match="SearchSpace.sample.*width > 100"):
        impossible.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="from_unit.*1 numbers"):
        impossible.from_unit([0.5, 0.5])
    with pytest.raises(ValueError, match="to_unit.*width=65"):
        impossible.to_unit({"width": 65})
    assert impossible.violations({"width": 64}) == ["width > 100"]
