"""Shared test setup: hypothesis profiles.

TGL_HYPOTHESIS_PROFILE=ci (the default when CI is set) is derandomized, so a failure in CI reproduces on
every machine, with a bounded example count; `dev` draws more and different examples each run. Both
have no deadline, because a first call may JIT-compile.
"""
import os

# The tests multiply small matrices, where a second BLAS thread only adds hand-off cost, and on a shared
# 2-core machine a spinning OpenBLAS thread slowed them ~10x. Set before numpy is imported; a value set
# outside wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("TGL_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(items):
    """The notebooks first. Each takes minutes while most tests take milliseconds, and under `pytest -n auto` the
    workers would otherwise reach them last, one core running the tail alone."""
    items.sort(key=lambda item: "test_notebooks.py" not in item.nodeid)
