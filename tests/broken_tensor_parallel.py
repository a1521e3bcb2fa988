"""Deliberately broken tensor-parallel MLPs, each named after its bug; test_tensor_parallel.py shows the
equivalence check catches both."""
from tinygrad_llm.autograd import Function
from tinygrad_llm.distributed.tensor_parallel import ReduceFromParallelRegion, TensorParallelMLP
from tinygrad_llm.nn import functional as F


class TensorParallelMLPWithBiasOnEveryRank(TensorParallelMLP):
    def forward(self, x):
        hidden = F.linear(x, self.up_weight, self.up_bias).gelu(approximate="tanh")
        partial = F.linear(hidden, self.down_weight, self.down_bias)  # BUG: b2 joins every partial sum: K * b2
        return ReduceFromParallelRegion.apply(partial, comm=self.comm)


class _CopyWithoutGradientSum(Function):
    def forward(self, x, comm):
        return x.copy()

    def backward(self, grad_output):
        return grad_output  # BUG: x's gradient keeps only this rank's share of the hidden units


class TensorParallelMLPWithoutBackwardAllReduce(TensorParallelMLP):
    def forward(self, x):
        x = _CopyWithoutGradientSum.apply(x, comm=self.comm)
        hidden = F.linear(x, self.up_weight, self.up_bias).gelu(approximate="tanh")
        return ReduceFromParallelRegion.apply(F.linear(hidden, self.down_weight), comm=self.comm) + self.down_bias
