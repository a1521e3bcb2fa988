"""A deliberately broken piece of Bayesian search; test_bayesian_search.py proves that its checks catch it."""
import numpy as np


def landing_that_forgets_the_constraints(space):
    """Scores each candidate where its configuration lands, as bayesian_search does, but allows every one. When
    the best losses lie along a constraint's edge (the widest model that fits a parameter budget), EI leads the
    search straight across it, and the trials break the constraint (M55)."""

    def landing(points):
        landed = np.array([space.to_unit(space.from_unit(point)) for point in points])
        return landed, np.ones(len(points), dtype=bool)  # BUG: a configuration that breaks a constraint may win

    return landing


def keep_every_configuration(space, config, rng):
    """Keeps a configuration (an initial Latin-hypercube point, or a proposal) even when it breaks a constraint."""
    return config  # BUG: it should be replaced by a draw from the space, which meets the constraints
