"""Exact per-example gradients for a whole batch in one backward pass.

DP-SGD must clip each example's gradient separately, but backward() on a batch loss only returns the SUM over
examples. The simple way is a Python loop, one backward per example (`per_example_gradients_by_loop`, kept
here as the reference). The batched way uses what the layers already know: a Linear layer's weight gradient
is a sum over examples of (output gradient) outer (input), so keeping the outer products apart instead of
summing them gives every example's gradient at once:

    dL/dW = sum_n g_n^T x_n        ->   per example:  G[n] = g_n^T x_n   (an einsum over the batch axis)

A learned position table is the odd one out: its forward takes a length, not the batch, and its (T, D) output
is added to every example, so the gradient reaching it is already summed over examples. The hook hands the
model a copy per example instead (the output broadcast to (B, T, D): the same values), whose gradient row n
is example n's own; the table's rule is then the embedding's, with the positions read as the ids looked up.

A forward hook records each layer's input and asks the output to retain its gradient; one backward of the
summed per-example losses fills those in (the loss of example n depends only on example n, so the output
gradient at row n is example n's own). Layers that mix examples (batch norm) would break that, and are not
supported.
"""
from __future__ import annotations

import numpy as np

from ..nn.layers import Embedding, LayerNorm, Linear
from ..nn.parameter import Parameter
from ..nn.positional import LearnedPositionalEmbedding
from ..tensor import Tensor


def _linear_gradients(layer, x, grad_out):
    """Weight (B, out, in) and bias (B, out): sum over every axis between batch and features (tokens)."""
    batch = x.shape[0]
    x, grad_out = x.reshape(batch, -1, x.shape[-1]), grad_out.reshape(batch, -1, grad_out.shape[-1])
    gradients = {"weight": np.einsum("bto,bti->boi", grad_out, x)}
    if layer.bias is not None:
        gradients["bias"] = grad_out.sum(axis=1)
    return gradients


def _embedding_gradients(layer, ids, grad_out):
    """Each example scatter-adds its output gradients into the rows of the ids it looked up: (B, V, D)."""
    batch = ids.shape[0]
    ids, grad_out = ids.reshape(batch, -1), grad_out.reshape(batch, -1, grad_out.shape[-1])
    gradient = np.zeros((batch,) + layer.weight.shape, dtype=grad_out.dtype)
    np.add.at(gradient, (np.arange(batch)[:, None], ids), grad_out)
    return {"weight": gradient}


def _layer_norm_gradients(layer, x, grad_out):
    """Scale and shift act elementwise on the normalised input x_hat: per example, sum g * x_hat and g."""
    feature_axes = tuple(range(x.ndim - len(layer.normalized_shape), x.ndim))
    centred = x - x.mean(axis=feature_axes, keepdims=True)
    x_hat = centred / np.sqrt((centred**2).mean(axis=feature_axes, keepdims=True) + layer.eps)
    token_axes = tuple(range(1, x.ndim - len(layer.normalized_shape)))
    return {"weight": (grad_out * x_hat).sum(axis=token_axes), "bias": grad_out.sum(axis=token_axes)}


PER_EXAMPLE_RULES = {Linear: _linear_gradients, Embedding: _embedding_gradients, LayerNorm: _layer_norm_gradients,
                     LearnedPositionalEmbedding: _embedding_gradients}  # the positions read are its ids (below)


def _positions_per_example(batch: int, output, length: int, offset=0):
    """(the positions read, (B, T) ids; the output broadcast to (B, T, D)): a shared (T, D) output would collect
    the whole batch's gradient in one sum, a copy per example keeps each example's apart."""
    positions = np.broadcast_to(np.asarray(offset)[..., None] + np.arange(length), (batch, length))
    return positions, output.expand(batch, length, output.shape[-1])


def _layers_with_parameters(model) -> list:
    """The modules that own parameters; a clear error if one has no batched rule."""
    owners = []
    for name, module in model.named_modules():
        if not any(isinstance(value, Parameter) for value in vars(module).values()):
            continue
        if type(module) not in PER_EXAMPLE_RULES:
            raise TypeError(
                f"per_example_gradients: module {name or 'the model itself'!r} ({type(module).__name__}) owns "
                f"parameters but has no batched per-example rule (supported: "
                f"{', '.join(t.__name__ for t in PER_EXAMPLE_RULES)}); use per_example_gradients_by_loop for it")
        owners.append(module)
    return owners


def per_example_gradients(model, per_example_loss, *inputs) -> dict[str, np.ndarray]:
    """{parameter name: array (B, *parameter shape)}: the gradient of each example's loss alone.

    per_example_loss(model, *inputs) must return a (B,) tensor, one loss per example (use reduction="none").
    Leaves the parameters' .grad as they were."""
    calls = []  # (module, input array, output tensor): one per call, since a layer may run twice
    batch = len(inputs[0])

    def record(module, args, output):
        if isinstance(module, LearnedPositionalEmbedding):
            layer_input, output = _positions_per_example(batch, output, *args)
        else:
            layer_input = args[0].data if isinstance(args[0], Tensor) else np.asarray(args[0])
        calls.append((module, layer_input, output.retain_grad()))
        return output

    parameter_names = {id(p): name for name, p in model.named_parameters()}  # tied weights get one name
    saved_grads = {name: p.grad for name, p in model.named_parameters()}
    handles = [module.register_forward_hook(record) for module in _layers_with_parameters(model)]
    try:
        losses = per_example_loss(model, *inputs)
        if losses.ndim != 1:
            raise ValueError(f"per_example_gradients: per_example_loss returned shape {losses.shape}; it must return "
                             "one loss per example, shape (B,) (use reduction='none' and sum over tokens)")
        losses.sum().backward()
    finally:
        for handle in handles:
            handle.remove()
        for name, p in model.named_parameters():
            p.grad = saved_grads[name]
    gradients = {name: np.zeros((losses.shape[0],) + p.shape, dtype=p.dtype) for name, p in model.named_parameters()}
    for module, layer_input, output in calls:
        if output.grad is None:
            continue  # this call did not reach the loss
        for key, gradient in PER_EXAMPLE_RULES[type(module)](module, layer_input, output.grad).items():
            gradients[parameter_names[id(getattr(module, key))]] += gradient
    return gradients


def per_example_gradients_by_loop(model, per_example_loss, *inputs) -> dict[str, np.ndarray]:
    """The reference: one forward and backward per example. Slow (B backward passes), obviously right, and
    works for any layer."""
    saved_grads = {name: p.grad for name, p in model.named_parameters()}
    batch = len(inputs[0])
    gradients = {name: np.zeros((batch,) + p.shape, dtype=p.dtype) for name, p in model.named_parameters()}
    try:
        for n in range(batch):
            model.zero_grad()
            per_example_loss(model, *(x[n:n + 1] for x in inputs)).sum().backward()
            for name, p in model.named_parameters():
                if p.grad is not None:
                    gradients[name][n] = p.grad
    finally:
        for name, p in model.named_parameters():
            p.grad = saved_grads[name]
    return gradients
