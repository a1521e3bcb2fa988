"""The column-then-row split MLP equals the unsplit MLP, forward and gradients: on K threads in this process
(hypothesis draws the shapes and K) and on 2 MPI processes (tests/mpi_programs/tensor_parallel_mlp.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.distributed.mpi import mpiexec_path, run_mpi
from tinygrad_llm.distributed.tensor_parallel import TensorParallelMLP
from tinygrad_llm.distributed.thread_ranks import run_on_thread_ranks
from tinygrad_llm.nn.layers import Linear

import broken_tensor_parallel as broken

pytestmark = pytest.mark.scaling

PROGRAM = Path(__file__).parent / "mpi_programs" / "tensor_parallel_mlp.py"
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def split_against_unsplit(mlp_class, world_size, batch, width, hidden_per_rank, seed):
    """Run mlp_class on world_size thread ranks and compare output and every gradient with the unsplit layers."""
    tgl.manual_seed(seed)
    up, down = Linear(width, hidden_per_rank * world_size), Linear(hidden_per_rank * world_size, width)
    inputs = np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32)
    x_full = tgl.tensor(inputs, requires_grad=True)
    y_full = down(up(x_full).gelu(approximate="tanh"))
    (y_full * y_full).sum().backward()

    def one_rank(comm):
        mlp = mlp_class.from_layers(up, down, comm)
        x = tgl.tensor(inputs, requires_grad=True)
        y = mlp(x)
        (y * y).sum().backward()
        return y.data, x.grad, mlp.up_weight.grad, mlp.up_bias.grad, mlp.down_weight.grad, mlp.down_bias.grad

    ranks = run_on_thread_ranks(one_rank, world_size)
    for output, input_grad, *_, down_bias_grad in ranks:
        np.testing.assert_allclose(output, y_full.data, **TOLERANCE)
        np.testing.assert_allclose(input_grad, x_full.grad, **TOLERANCE)
        np.testing.assert_allclose(down_bias_grad, down.bias.grad, **TOLERANCE)
    np.testing.assert_allclose(np.concatenate([r[2] for r in ranks], axis=0), up.weight.grad, **TOLERANCE)
    np.testing.assert_allclose(np.concatenate([r[3] for r in ranks]), up.bias.grad, **TOLERANCE)
    np.testing.assert_allclose(np.concatenate([r[4] for r in ranks], axis=1), down.weight.grad, **TOLERANCE)


@given(world_size=st.integers(1, 4), batch=st.integers(1, 5), width=st.integers(1, 8),
       hidden_per_rank=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_split_mlp_equals_the_unsplit_one_on_thread_ranks(world_size, batch, width, hidden_per_rank, seed):
    split_against_unsplit(TensorParallelMLP, world_size, batch, width, hidden_per_rank, seed)


@pytest.mark.parametrize("broken_mlp", [broken.TensorParallelMLPWithBiasOnEveryRank,
                                        broken.TensorParallelMLPWithoutBackwardAllReduce])
def test_the_equivalence_check_catches_the_broken_split(broken_mlp):
    with pytest.raises(AssertionError):
        split_against_unsplit(broken_mlp, world_size=2, batch=3, width=4, hidden_per_rank=3, seed=0)


def test_a_hidden_width_that_does_not_split_evenly_is_refused():
    def one_rank(comm):
        TensorParallelMLP.from_layers(Linear(4, 6), Linear(6, 4), comm)
    with pytest.raises(RuntimeError, match="does not split into 4 equal parts"):
        run_on_thread_ranks(one_rank, 4)


@pytest.mark.skipif(mpiexec_path() is None, reason="mpiexec is not installed (pip install -e '.[distributed]')")
def test_the_split_mlp_equals_the_unsplit_one_on_two_mpi_processes():
    finished = run_mpi(2, [str(PROGRAM)], timeout_s=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report["world_size"] == 2 and len(report["results"]) == 12
    for result in report["results"]:
        assert result.pop("holds_its_share"), result
        assert max(result.values()) <= 1e-5, result
