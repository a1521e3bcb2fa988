"""Run under mpiexec -n K: the tensor-parallel MLP against the unsplit one, forward and every gradient.

Rank 0 prints one JSON object with the largest differences over several drawn shapes; tests/test_tensor_parallel.py
asserts on it. The draws come from a seed every rank shares, so all ranks build the same full MLP and input.
"""
import json

import numpy as np

import tinygrad_llm as tgl
from tinygrad_llm.distributed.mpi import world_communicator
from tinygrad_llm.distributed.tensor_parallel import TensorParallelMLP
from tinygrad_llm.nn.layers import Linear

comm = world_communicator()
rank, world_size = comm.Get_rank(), comm.Get_size()


def max_difference(parts, full):
    return float(np.max(np.abs(np.asarray(parts, np.float64) - full)))


def compare(seed, batch, width, hidden_per_rank):
    tgl.manual_seed(seed)
    up, down = Linear(width, hidden_per_rank * world_size), Linear(hidden_per_rank * world_size, width)
    inputs = np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32)
    upstream = np.random.default_rng(seed + 1).standard_normal((batch, width)).astype(np.float32)

    x_full = tgl.tensor(inputs, requires_grad=True)
    y_full = down(up(x_full).gelu(approximate="tanh"))
    (y_full * tgl.tensor(upstream)).sum().backward()

    mlp = TensorParallelMLP.from_layers(up, down, comm)
    x = tgl.tensor(inputs, requires_grad=True)
    y = mlp(x)
    (y * tgl.tensor(upstream)).sum().backward()
    # the split gradients, reassembled from every rank's slice
    up_weight_grad = np.concatenate(comm.allgather(mlp.up_weight.grad), axis=0)
    up_bias_grad = np.concatenate(comm.allgather(mlp.up_bias.grad))
    down_weight_grad = np.concatenate(comm.allgather(mlp.down_weight.grad), axis=1)
    return {
        "output": max_difference(y.data, y_full.data),
        "input_gradient": max_difference(x.grad, x_full.grad),
        "up_weight_gradient": max_difference(up_weight_grad, up.weight.grad),
        "up_bias_gradient": max_difference(up_bias_grad, up.bias.grad),
        "down_weight_gradient": max_difference(down_weight_grad, down.weight.grad),
        "down_bias_gradient": max_difference(mlp.down_bias.grad, down.bias.grad),
        "holds_its_share": mlp.up_weight.shape == (hidden_per_rank, width) and mlp.down_weight.shape == (width, hidden_per_rank),
    }


def main():
    rng = np.random.default_rng(11)
    results = [compare(int(rng.integers(1 << 30)), *(int(v) for v in rng.integers([1, 1, 1], [6, 9, 7])))
               for _ in range(6)]
    worst_by_rank = comm.gather(results, root=0)
    if rank == 0:
        print(json.dumps({"world_size": world_size, "results": [r for rows in worst_by_rank for r in rows]}))


main()
