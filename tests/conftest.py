"""Shared test setup: hypothesis profiles, and how `pytest -n auto` shares the tests between its workers.

TGL_HYPOTHESIS_PROFILE=ci (the default when CI is set) is derandomized, so a failure in CI reproduces on
every machine, with a bounded example count; `dev` draws more and different examples each run. Both
have no deadline, because a first call may JIT-compile.
"""
import os

# The tests multiply small matrices, where a second BLAS thread only adds hand-off cost, and on a shared
# 2-core machine a spinning OpenBLAS thread slowed them ~10x. Set before numpy is imported; a value set
# outside wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("TGL_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under `pytest -n auto`, xdist's loadgroup scheduler instead of its default load (so `--dist load` gets it too).

    load deals the tests out in long runs: its first run for worker 0 held every notebook, which then ran one after
    another on one core. loadgroup sends the tests marked xdist_group (below) together to one worker, the groups with
    the most tests first, then every other test one at a time to whichever worker is free.
    """
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    if hasattr(config, "workerinput"):  # a worker: it re-reads the command line, which does not say loadgroup
        config.option.loadgroup = config.workerinput.get("loadgroup", False)


@pytest.hookimpl(optionalhook=True)  # an xdist hook, absent under -p no:xdist
def pytest_configure_node(node):
    """Tell each worker whether the controller groups, so that it marks the groups when it collects."""
    node.workerinput["loadgroup"] = node.config.option.dist == "loadgroup"


def pytest_itemcollected(item):
    """Under `pytest -n auto`, the tests that share a module-scoped fixture (most often a model the module trains)
    go to one worker. Dealt out one by one, they would reach both workers, and each would build the fixture: the
    same training done twice. Marked as each test is collected, before any collection_modifyitems hook."""
    if getattr(item.config.option, "loadgroup", False) and _shares_a_fixture_beyond_one_test(item):
        item.add_marker(pytest.mark.xdist_group(item.path.stem))


def pytest_collection_modifyitems(items):
    """The notebooks first among the single tests: each takes minutes while most tests take milliseconds, so the
    workers share them out early and end on short tests, not with one core running a notebook alone."""
    items.sort(key=lambda item: "test_notebooks.py" not in item.nodeid)


def _shares_a_fixture_beyond_one_test(item):
    fixture_table = getattr(item, "_fixtureinfo", None)  # pytest's per-test fixture table (doctests have none)
    if fixture_table is None:
        return False
    # Session-scoped ones (pytest's tmp_path_factory) are built once per worker whatever the grouping.
    return any(definitions[-1].scope in ("class", "module") for definitions in fixture_table.name2fixturedefs.values())
