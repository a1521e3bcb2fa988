"""Search spaces: named hyperparameters, each a map from the unit interval onto its values, plus constraints.

Every parameter is defined by `from_unit(u)`: drawing u uniformly on [0, 1] and mapping it IS the parameter's
sampling distribution, and `to_unit` is its inverse. So a whole configuration is a point of the unit cube
[0, 1]^d, which is where Bayesian optimisation fits its Gaussian process, and a grid is `from_unit` of evenly
spaced points. The scale matters (M55): a learning rate drawn uniformly on [1e-5, 1e-2] lands above 1e-3 nine
times out of ten, so the smallest two decades are almost never tried; LogUniform spends a third of the draws
in each decade.

Constraints are never met by rounding a draw into place: rounding a width to a multiple of the head count and
then clipping it to the bounds breaks divisibility (M55). Divisibility is built into the parameter instead
(MultipleOf draws only among the multiples of an earlier parameter's value); any other constraint is enforced by
rejection sampling, with a clear error when no draw satisfies it.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..random import generator


def _on_scale(value, log: bool) -> float:
    return math.log(value) if log else value


def _from_scale(value: float, log: bool) -> float:
    return math.exp(value) if log else value


def _interpolate(low, high, u: float, log: bool) -> float:
    """The point a fraction u of the way from low to high, measured on a log scale when log is True."""
    start, end = _on_scale(low, log), _on_scale(high, log)
    return _from_scale((1 - u) * start + u * end, log)  # exact at both ends on a linear scale


def _fraction_of_the_way(low, high, value, log: bool) -> float:
    """The inverse of _interpolate: how far value lies from low towards high (0 at low, 1 at high)."""
    start, end = _on_scale(low, log), _on_scale(high, log)
    return (_on_scale(value, log) - start) / (end - start)


@dataclass(frozen=True)
class Uniform:
    """A real number drawn evenly between low and high (for dropout, momentum: ranges within one decade)."""
    low: float
    high: float
    log = False

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"{type(self).__name__}: need finite low < high, got low={self.low}, high={self.high}")

    def from_unit(self, u: float) -> float:
        value = _interpolate(self.low, self.high, u, self.log)
        return float(min(max(value, self.low), self.high))  # exp(log(low)) may miss low by one rounding

    def to_unit(self, value) -> float:
        return _fraction_of_the_way(self.low, self.high, value, self.log)

    def contains(self, value) -> bool:
        return isinstance(value, (float, int, np.floating, np.integer)) and self.low <= value <= self.high

    def cdf(self, value) -> float:
        """The exact probability that a draw is at most value (P(draw > t) is 1 - cdf(t))."""
        return min(max(self.to_unit(value), 0.0), 1.0)

    def grid(self, points: int) -> list:
        """`points` values evenly spaced on the parameter's scale, bounds included (one point: the middle)."""
        units = np.linspace(0.0, 1.0, points) if points > 1 else [0.5]
        return [self.from_unit(float(u)) for u in units]


@dataclass(frozen=True)
class LogUniform(Uniform):
    """A positive real number whose logarithm is uniform: each decade between low and high gets an equal share
    of the draws, and the median is the geometric mean sqrt(low * high). For learning rates and weight decay."""
    log = True

    def __post_init__(self):
        super().__post_init__()
        if self.low <= 0:
            raise ValueError(f"LogUniform: the bounds must be positive to take logarithms, got low={self.low}")


@dataclass(frozen=True)
class IntUniform:
    """An integer from low, low + step, ..., high, each equally likely; with log=True the draw is log-uniform
    on [low - step/2, high + step/2] taken to the nearest allowed value, so small values get more draws (for
    widths and layer counts spanning several octaves)."""
    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self):
        name = type(self).__name__
        if not all(isinstance(v, (int, np.integer)) for v in (self.low, self.high, self.step)):
            raise ValueError(f"{name}: low, high and step must be integers, got {self.low}, {self.high}, {self.step}")
        if self.step < 1 or self.low > self.high or (self.high - self.low) % self.step:
            raise ValueError(f"{name}: need step >= 1, low <= high and high - low a multiple of step, got "
                             f"low={self.low}, high={self.high}, step={self.step}")
        if self.log and self.low - self.step / 2 <= 0:
            raise ValueError(f"{name}: log=True needs low > step / 2 (the lowest cell must stay positive), got "
                             f"low={self.low}, step={self.step}")

    def values(self) -> list:
        return list(range(self.low, self.high + 1, self.step))

    def _cell_edges(self):
        """Each allowed value owns an interval of width step around it; the unit interval spans all of them."""
        return self.low - self.step / 2, self.high + self.step / 2

    def from_unit(self, u: float) -> int:
        x = _interpolate(*self._cell_edges(), u, self.log)
        index = min(max(round((x - self.low) / self.step), 0), (self.high - self.low) // self.step)
        return int(self.low + index * self.step)

    def to_unit(self, value) -> float:
        return _fraction_of_the_way(*self._cell_edges(), value, self.log)

    def contains(self, value) -> bool:
        return (isinstance(value, (int, np.integer)) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)

    def grid(self, points: int) -> list:
        """Up to `points` allowed values spread over the scale, bounds included, without repeats."""
        units = np.linspace(0.0, 1.0, points) if points > 1 else [0.5]
        return list(dict.fromkeys(self.from_unit(float(u)) for u in units))


@dataclass(frozen=True)
class Categorical:
    """One of a fixed list of choices (an activation, an optimizer), each equally likely."""
    choices: tuple

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices or len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"Categorical: need at least one choice and no repeats, got {self.choices}")

    def values(self) -> list:
        return list(self.choices)

    def from_unit(self, u: float):
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]

    def to_unit(self, value) -> float:
        return (self.choices.index(value) + 0.5) / len(self.choices)  # the middle of the choice's cell

    def contains(self, value) -> bool:
        return value in self.choices

    def grid(self, points: int) -> list:
        """Every choice, whatever `points` is: leaving a category out is not a coarser grid but a smaller space."""
        return list(self.choices)


@dataclass(frozen=True)
class MultipleOf:
    """An integer in [low, high] that is a multiple of the earlier parameter `of` (embed_dim of num_heads). It
    is drawn among those multiples only, so divisibility holds by construction, for every point of the unit
    cube. `resolve` turns it into the IntUniform over the multiples allowed by the value already drawn."""
    of: str
    low: int
    high: int
    log: bool = False

    def resolve(self, divisor: int) -> IntUniform:
        first = -(-self.low // divisor) * divisor
        last = self.high // divisor * divisor
        if first > last:
            raise ValueError(f"MultipleOf: no multiple of {self.of}={divisor} lies in [{self.low}, {self.high}]; "
                             f"widen the bounds or drop {self.of}={divisor} from its choices")
        return IntUniform(first, last, log=self.log, step=divisor)


@dataclass(frozen=True)
class Constraint:
    """A condition on a whole configuration that the parameters cannot express (e.g. a parameter budget).
    SearchSpace enforces it by rejection: it draws again, and never edits a configuration to fit."""
    description: str
    holds: Callable[[dict], bool]


class SearchSpace:
    """Named parameters, drawn in order (so MultipleOf can refer to an earlier one), plus constraints.

    >>> space = SearchSpace({"lr": LogUniform(1e-5, 1e-2), "num_heads": Categorical([2, 4, 6]),
    ...                      "embed_dim": MultipleOf("num_heads", 16, 128, log=True)})
    """

    def __init__(self, parameters: dict, constraints=(), max_tries: int = 1000):
        if not parameters:
            raise ValueError("SearchSpace: give at least one parameter, e.g. {'lr': LogUniform(1e-5, 1e-2)}")
        self.parameters = dict(parameters)
        self.constraints = list(constraints)
        self.max_tries = max_tries
        names = list(self.parameters)
        for position, (name, parameter) in enumerate(self.parameters.items()):
            if isinstance(parameter, MultipleOf):
                self._check_divisors(name, parameter, names[:position])

    def _check_divisors(self, name: str, parameter: MultipleOf, earlier: list):
        base = self.parameters.get(parameter.of)
        if parameter.of not in earlier or not hasattr(base, "values"):
            raise ValueError(f"SearchSpace: {name}=MultipleOf({parameter.of!r}) needs {parameter.of!r} to be an "
                             f"earlier IntUniform or Categorical parameter; the parameters in order are {earlier}")
        divisors = base.values()
        if not all(isinstance(d, (int, np.integer)) and d >= 1 for d in divisors):
            raise ValueError(f"SearchSpace: {name} is a multiple of {parameter.of}, whose values must be positive "
                             f"integers, got {divisors}")
        for divisor in divisors:
            parameter.resolve(divisor)  # raises, naming the divisor, when it has no multiple in the bounds

    @property
    def names(self) -> list:
        return list(self.parameters)

    @property
    def dimension(self) -> int:
        """The number of unit-cube coordinates: one per parameter."""
        return len(self.parameters)

    def _parameter(self, name: str, partial_config: dict):
        parameter = self.parameters[name]
        if isinstance(parameter, MultipleOf):
            return parameter.resolve(partial_config[parameter.of])
        return parameter

    def from_unit(self, u) -> dict:
        """The configuration at point u of [0, 1]^d. Every point meets the MultipleOf conditions; a Constraint
        may still fail here, so an optimiser proposing points should check `violations`."""
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (self.dimension,) or not np.all((u >= 0) & (u <= 1)):
            raise ValueError(f"SearchSpace.from_unit: need {self.dimension} numbers in [0, 1] (one per parameter "
                             f"{self.names}), got shape {u.shape} with values {u}")
        config = {}
        for name, coordinate in zip(self.names, u):
            config[name] = self._parameter(name, config).from_unit(float(coordinate))
        return config

    def to_unit(self, config: dict) -> np.ndarray:
        """The point of [0, 1]^d whose from_unit is config (for reals, up to rounding)."""
        problems = self.violations(config, constraints=False)
        if problems:
            raise ValueError(f"SearchSpace.to_unit: the configuration is outside the space: {'; '.join(problems)}")
        return np.array([self._parameter(name, config).to_unit(config[name]) for name in self.names])

    def violations(self, config: dict, constraints: bool = True) -> list:
        """What is wrong with config, in words: missing or unknown names, values out of their parameter's
        range, and failed constraints. An empty list means config belongs to the space."""
        if set(config) != set(self.names):
            return [f"the names are {sorted(config)}, expected {sorted(self.names)}"]
        problems = []
        for name, parameter in self.parameters.items():
            if isinstance(parameter, MultipleOf):
                if not self.parameters[parameter.of].contains(config[parameter.of]):
                    continue  # its divisor is reported already
                if not self._parameter(name, config).contains(config[name]):
                    problems.append(f"{name}={config[name]!r} is outside {parameter} with "
                                    f"{parameter.of}={config[parameter.of]}")
            elif not parameter.contains(config[name]):
                problems.append(f"{name}={config[name]!r} is outside {parameter}")
        if constraints and not problems:
            problems += [c.description for c in self.constraints if not c.holds(config)]
        return problems

    def contains(self, config: dict) -> bool:
        return not self.violations(config)

    def sample(self, rng: np.random.Generator | None = None) -> dict:
        """One configuration drawn from the space (from the library's generator unless rng is given), redrawn
        until every constraint holds."""
        rng = generator() if rng is None else rng
        for _ in range(self.max_tries):
            config = self.from_unit(rng.random(self.dimension))
            if all(c.holds(config) for c in self.constraints):
                return config
        raise ValueError(f"SearchSpace.sample: no draw in {self.max_tries} satisfied the constraints "
                         f"{[c.description for c in self.constraints]}; they may be unsatisfiable in this space, "
                         f"or too rare for rejection: build the condition into the parameters (as MultipleOf does)")

    def grid(self, points_per_parameter) -> list:
        """Every combination of each parameter's grid (an int for all parameters, or a dict by name), evenly
        spaced on each parameter's scale; a MultipleOf gets its grid for each value of its divisor, and
        combinations that break a constraint are left out."""
        if isinstance(points_per_parameter, int):
            points_per_parameter = dict.fromkeys(self.names, points_per_parameter)
        missing = [name for name in self.names if points_per_parameter.get(name, 0) < 1]
        if missing:
            raise ValueError(f"SearchSpace.grid: give a number of points >= 1 for every parameter; missing or "
                             f"below 1: {missing}")
        configs = [{}]
        for name in self.names:
            configs = [{**partial, name: value} for partial in configs
                       for value in self._parameter(name, partial).grid(points_per_parameter[name])]
        return [config for config in configs if all(c.holds(config) for c in self.constraints)]
