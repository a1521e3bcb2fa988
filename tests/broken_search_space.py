"""Deliberately broken search-space parameters, each named after its bug (M55); test_search_space.py proves
that its checks catch every one."""
from dataclasses import dataclass

from tinygrad_llm.tuning.search_space import IntUniform, LogUniform, MultipleOf


@dataclass(frozen=True)
class LearningRateDrawnUniformly(LogUniform):
    """Keeps LogUniform's name and bounds but draws on a linear scale: on [1e-5, 1e-2] nine draws in ten land
    above 1e-3, and the median sits near 5e-3 instead of the geometric mean 3.2e-4."""

    def from_unit(self, u):
        return self.low + u * (self.high - self.low)  # BUG: linear, not logarithmic


@dataclass(frozen=True)
class WidthRoundedToTheHeads(MultipleOf):
    """Draws the width anywhere in [low, high], rounds it to the nearest multiple of the heads and clips it
    back into the bounds. The clip breaks divisibility whenever high (or low) is not a multiple of the heads:
    with width in [16, 100] and 6 heads, a draw of 99.5 rounds to 102 and is clipped to 100."""

    def resolve(self, divisor):
        return _RoundedThenClipped(self.low, self.high, log=self.log, divisor=divisor)


@dataclass(frozen=True)
class _RoundedThenClipped(IntUniform):
    divisor: int = 1

    def from_unit(self, u):
        width = LogUniform(self.low, self.high).from_unit(u) if self.log else self.low + u * (self.high - self.low)
        return int(min(max(round(width / self.divisor) * self.divisor, self.low), self.high))  # BUG: clip after round
