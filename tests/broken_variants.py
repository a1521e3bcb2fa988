"""Deliberately broken implementations, each named after its bug.

These are the classic mistakes of interviews and first implementations. Each one is small enough to
spot by reading it next to the correct version in the library; `test_broken_variants.py` proves that
the learning checks catch every one of them.
"""
import numpy as np

from tinygrad_llm.autograd import Function, unbroadcast
from tinygrad_llm.nn import functional as F
from tinygrad_llm.ops.elementwise import GELU
from tinygrad_llm.ops.matmul import MatMul
from tinygrad_llm.optim.adam import Adam, AdamW
from tinygrad_llm.optim.sgd import SGD
from tinygrad_llm.random import generator
from tinygrad_llm.tensor import Tensor


# ------------------------------------------------------------------ softmax family
class _SoftmaxWithoutMaxSubtraction(Function):
    def forward(self, x, axis=-1):
        e = np.exp(x)  # BUG: exp(1e4) overflows to inf, inf / inf = nan
        self.out, self.axis = e / e.sum(axis=axis, keepdims=True), axis
        return self.out

    def backward(self, g):
        return self.out * (g - (g * self.out).sum(axis=self.axis, keepdims=True))


def softmax_without_max_subtraction(x, axis=-1):
    return _SoftmaxWithoutMaxSubtraction.apply(x, axis=axis)


def softmax_over_wrong_axis(x, axis=-1):
    return F.softmax(x, axis=0)  # BUG: normalises columns, not each row of logits


def log_softmax_as_log_of_softmax(x, axis=-1):
    return F.softmax(x, axis=axis).log()  # BUG: softmax underflows to 0 for gaps > ~745, log(0) = -inf


def cross_entropy_summed_not_averaged(logits, targets, **kwargs):
    return F.cross_entropy(logits, targets, reduction="sum", **kwargs)  # BUG: loss and gradients scale with batch size


def cross_entropy_without_ignore_index(logits, targets, ignore_index=-100):
    targets = np.where(targets == ignore_index, 0, targets)  # BUG: padding is trained on as class 0
    return F.cross_entropy(logits, targets)


# ------------------------------------------------------------------ gradients of ops
class _AddWithoutBroadcastReduction(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, g):
        # BUG: each operand gets the full broadcast gradient instead of the sum over the broadcast axes
        # (here cut down to the operand's shape by taking the first copy, so the shapes even look right).
        def first_copy(grad, shape):
            grad = grad[(0,) * (grad.ndim - len(shape))]
            return grad[tuple(slice(0, 1) if n == 1 else slice(None) for n in shape)]

        return first_copy(g, self.a_shape), first_copy(g, self.b_shape)


def add_without_broadcast_reduction(a, b):
    return _AddWithoutBroadcastReduction.apply(a, b)


class _MatMulBackwardWrongTranspose(MatMul):
    def backward(self, g):
        grad_a = g @ self.b  # BUG: dA = dC @ B^T; without the transpose it only runs at all when B is square
        grad_b = unbroadcast(np.swapaxes(self.a, -1, -2) @ g, self.b.shape)
        return grad_a.reshape(self.a_shape), grad_b.reshape(self.b_shape)


def matmul_backward_wrong_transpose(a, b):
    return _MatMulBackwardWrongTranspose.apply(a, b)


class _GELUWithReLUDerivative(GELU):
    def backward(self, g):
        return g * (self.a > 0)  # BUG: the derivative of ReLU, not of x * Phi(x)


def gelu_with_relu_derivative(x):
    return _GELUWithReLUDerivative.apply(x)


def accumulate_overwrites(grads, tensor, grad):
    grads[id(tensor)] = grad  # BUG: a tensor used twice keeps only the last use's gradient


# ------------------------------------------------------------------ normalisation and dropout
def layer_norm_with_unbiased_variance(x, normalized_shape, eps=1e-5):
    rows = x.data.reshape(-1, x.shape[-1])
    mean = rows.mean(axis=-1, keepdims=True)
    var = rows.var(axis=-1, keepdims=True, ddof=1)  # BUG: n - 1; layer norm uses the biased variance (divide by n)
    return Tensor(((rows - mean) / np.sqrt(var + eps)).reshape(x.shape))


def dropout_without_rescaling(x, p=0.5, training=True):
    if not training:
        return x
    keep = generator().random(x.shape) >= p
    return x * keep.astype(x.dtype)  # BUG: survivors not divided by (1 - p), so the expectation shrinks



# ------------------------------------------------------------------ optimizers
class AdamWithoutBiasCorrection(Adam):
    def update(self, param, grad, group, state):
        grad = self.apply_weight_decay(param, grad, group)
        beta1, beta2 = group["betas"]
        state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad
        state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
        # BUG: m and v start at 0 and are not divided by (1 - beta^t): the first steps have the wrong size.
        param.data -= group["lr"] * state["exp_avg"] / (np.sqrt(state["exp_avg_sq"]) + group["eps"])


class AdamWWithL2FoldedIntoGradient(AdamW):
    def apply_weight_decay(self, param, grad, group):
        return grad + group["weight_decay"] * param.data  # BUG: this is Adam + L2, rescaled by 1/sqrt(v)


class SGDMomentumBeforeWeightDecay(SGD):
    def update(self, param, grad, group, state):
        velocity = state.get("momentum_buffer")
        velocity = grad.copy() if velocity is None else group["momentum"] * velocity + grad
        state["momentum_buffer"] = velocity
        # BUG: weight decay added after the momentum buffer instead of joining the gradient before it.
        param.data -= group["lr"] * (velocity + group["weight_decay"] * param.data)


def clip_grad_norm_per_tensor(parameters, max_norm):
    for p in parameters:  # BUG: each tensor clipped on its own norm; the joint norm can stay above max_norm
        norm = np.linalg.norm(p.grad)
        if norm > max_norm:
            p.grad = p.grad * (max_norm / norm)
