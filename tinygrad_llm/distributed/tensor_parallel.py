"""Tensor parallelism in miniature: the Transformer MLP split over K ranks (Megatron-LM's column-then-row split).

The MLP is y = GELU(x W1^T + b1) W2^T + b2 with a hidden width h = 4d. Split the h hidden units into K
contiguous groups, one per rank:

    rank r holds  W1[rows of group r]  b1[group r]     the first layer split by output COLUMNS of x W1^T
                  W2[:, columns of group r]            the second layer split by its input ROWS
    rank r computes  hidden_r = GELU(x W1_r^T + b1_r)       no communication: GELU is elementwise
                     partial_r = hidden_r W2_r^T            (B, d): rank r's share of the output
    y = sum over r of partial_r + b2                      ONE all-reduce per MLP in the forward pass

Splitting the first layer by rows instead would need an all-reduce before the GELU (GELU of a partial sum is
not the sum of GELUs); this order needs one. The backward pass mirrors it: every rank uses x, so the gradient of
x is the sum of every rank's contribution, one all-reduce again. Megatron names the pair f and g:

    f: forward = identity,    backward = all-reduce     (where the input enters the parallel region)
    g: forward = all-reduce,  backward = identity       (where the partial outputs leave it)

Each rank holds 1/K of the MLP's weights and does 1/K of its multiply-adds, for two all-reduces of a (B, T, d)
activation per layer: cheap only on fast links, which is why tensor parallelism stays inside one machine.
The same code runs under `mpiexec -n K` (an mpi4py communicator) or on K threads of one process
(`thread_ranks.run_on_thread_ranks`), since it only calls `comm.Allreduce`.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..nn import functional as F
from ..nn.layers import Linear
from ..nn.module import Module
from ..nn.parameter import Parameter
from ..tensor import Tensor


def all_reduce_sum(comm, array: np.ndarray) -> np.ndarray:
    """The elementwise sum of `array` over all ranks, on every rank."""
    total = np.empty_like(array)
    comm.Allreduce(np.ascontiguousarray(array), total)
    return total


class CopyToParallelRegion(Function):
    """Megatron's f: every rank gets x as it is; in backward the ranks' gradients of x are summed."""

    def forward(self, x, comm):
        self.comm = comm
        return x.copy()

    def backward(self, grad_output):
        return all_reduce_sum(self.comm, grad_output)


class ReduceFromParallelRegion(Function):
    """Megatron's g: the ranks' partial outputs are summed; in backward each rank gets the gradient as it is."""

    def forward(self, partial, comm):
        return all_reduce_sum(comm, partial)

    def backward(self, grad_output):
        return grad_output


class TensorParallelMLP(Module):
    """This rank's 1/K of Linear(d, h) -> GELU(tanh) -> Linear(h, d), as in TransformerBlock.mlp.

    Build it from the full layers with `from_layers(up, down, comm)`: each rank copies its own slice, so K ranks
    holding the same full MLP together compute exactly that MLP.
    """

    def __init__(self, up_weight: np.ndarray, up_bias: np.ndarray, down_weight: np.ndarray, down_bias: np.ndarray, comm):
        self.up_weight, self.up_bias = Parameter(up_weight), Parameter(up_bias)
        self.down_weight, self.down_bias = Parameter(down_weight), Parameter(down_bias)
        self.comm = comm

    @classmethod
    def from_layers(cls, up: Linear, down: Linear, comm) -> "TensorParallelMLP":
        hidden, world_size, rank = up.out_features, comm.Get_size(), comm.Get_rank()
        if up.bias is None or down.bias is None or down.in_features != hidden:
            raise ValueError(
                f"TensorParallelMLP.from_layers: needs Linear(d, h) then Linear(h, d), both with biases; got "
                f"{up.in_features}->{up.out_features} (bias={up.bias is not None}) and {down.in_features}->"
                f"{down.out_features} (bias={down.bias is not None})"
            )
        if hidden % world_size:
            raise ValueError(
                f"TensorParallelMLP.from_layers: the hidden width {hidden} does not split into {world_size} equal "
                f"parts; use a width divisible by the number of ranks (GPT's 4d is, for K = 2 or 4)"
            )
        mine = slice(rank * hidden // world_size, (rank + 1) * hidden // world_size)
        return cls(up.weight.data[mine], up.bias.data[mine], down.weight.data[:, mine], down.bias.data, comm)

    def forward(self, x: Tensor) -> Tensor:
        x = CopyToParallelRegion.apply(x, comm=self.comm)
        hidden = F.linear(x, self.up_weight, self.up_bias).gelu(approximate="tanh")
        partial = F.linear(hidden, self.down_weight)
        return ReduceFromParallelRegion.apply(partial, comm=self.comm) + self.down_bias  # b2 once, after the sum
