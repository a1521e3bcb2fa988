"""tinygrad_llm/thread_pools.py: OpenBLAS's spin time is set before numpy loads, and honestly reported when it
could not be (each case in a fresh interpreter, because the setting only acts at numpy's import)."""
import json
import os
import subprocess
import sys

import pytest

REPORT = "import json, os; from tinygrad_llm.thread_pools import openblas_thread_timeout as t; " \
         "print(json.dumps([os.environ.get('OPENBLAS_THREAD_TIMEOUT'), t()]))"


def _run(prelude: str, env_value: str | None) -> tuple:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if env_value is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_value
    done = subprocess.run([sys.executable, "-c", prelude + REPORT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("prelude, env_value, expected_env, expected_log2, source_word", [
    ("import tinygrad_llm; ", None, "20", "20", "tinygrad_llm"),
    ("import numpy; import tinygrad_llm; ", None, None, "28", "default"),
    ("import tinygrad_llm; ", "12", "12", "12", "environment"),
])
def test_openblas_spin_time_is_set_before_numpy_or_reported(prelude, env_value, expected_env, expected_log2, source_word):
    env_seen, report = _run(prelude, env_value)
    assert env_seen == expected_env
    assert report["log2_cycles"] == expected_log2
    assert source_word in report["source"]
