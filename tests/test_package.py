"""The public surface a learner meets first: the README example runs, and the PyTorch-shaped names exist."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_llm as tgl

pytestmark = pytest.mark.autograd

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README should show a Python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_starts_with_the_two_commands():
    head = README.read_text(encoding="utf-8").splitlines()[:6]
    assert any("python -m tinygrad_llm train" in line for line in head)
    assert any("pytest" in line for line in head)


@pytest.mark.parametrize("name", [
    "tensor", "zeros", "ones", "randn", "arange", "full", "no_grad", "manual_seed", "cat", "stack", "split", "where",
])
def test_top_level_names(name):
    assert callable(getattr(tgl, name))


@pytest.mark.parametrize("module, names", [
    (tgl.nn, ["Module", "Parameter", "Linear", "Sequential", "ReLU", "Tanh", "GELU", "Sigmoid", "Embedding", "LayerNorm", "Dropout", "init"]),
    (tgl.nn.functional, ["softmax", "log_softmax", "cross_entropy", "mse_loss", "huber_loss", "dropout", "layer_norm", "embedding"]),
    (tgl.optim, ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "clip_grad_norm_", "StepLR", "ExponentialLR",
                 "CosineAnnealingLR", "LinearWarmupCosine", "ReduceLROnPlateau", "EarlyStopping"]),
    (tgl.testing, ["gradcheck"]),
])
def test_submodule_names(module, names):
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module.__name__} lacks {missing}"


def test_exercises_are_reachable_from_the_top_level():
    assert tgl.exercises.check("softmax", lambda x, axis=-1: np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)).passed is False


def test_plain_import_does_not_load_hypothesis():
    code = "import sys, tinygrad_llm; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_manual_seed_fixes_random_tensors():
    tgl.manual_seed(3)
    a = tgl.randn(4)
    tgl.manual_seed(3)
    np.testing.assert_array_equal(a.data, tgl.randn(4).data)
    assert a.dtype == np.float32


def test_every_subpackage_is_listed_in_pyproject():
    import tomllib

    root = README.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"tinygrad_llm." + ".".join(p.parent.relative_to(root / "tinygrad_llm").parts) for p in (root / "tinygrad_llm").rglob("__init__.py")}
    on_disk = {name.rstrip(".") for name in on_disk}
    on_disk |= {"tinygrad_llm.kernels" + "".join("." + part for part in p.parent.relative_to(root / "kernels").parts) for p in (root / "kernels").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(on_disk - listed)}"
