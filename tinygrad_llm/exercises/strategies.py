"""Hypothesis strategies shared by the graders: small shapes, bounded finite floats, logits with targets.

Shapes stay small (sides 1 to 5) so a shrunk failing example fits on a screen, and sides of 1 are
common because many bugs (a wrong axis, a forgotten size-1 dimension) hide or show there.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

HUGE_LOGIT = 1e4  # exp(1e4) overflows float64 (the limit is about 709.78), so naive formulas give inf or nan


def finite_floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def float_arrays(shape, low: float = -10.0, high: float = 10.0) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of `shape` (a tuple or a strategy of tuples) with entries in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=finite_floats(low, high))


def small_shapes(min_dims: int = 1, max_dims: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=5)


@st.composite
def logits_and_targets(draw, low: float = -10.0, high: float = 10.0) -> dict[str, np.ndarray]:
    """A batch of logits (N, C) with C >= 2 and integer class ids (N,) in [0, C)."""
    batch, classes = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    logits = draw(float_arrays((batch, classes), low, high))
    targets = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1)))
    return {"logits": logits, "targets": targets}
