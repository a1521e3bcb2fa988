"""Deliberately broken gradient accumulation (M44), each named after its bug.

Each has the signature of tinygrad_llm.training.gradient_accumulation.accumulate_gradients;
test_activation_checkpointing.py proves that the accumulation check catches every one.
"""
import numpy as np

from tinygrad_llm.nn import functional as F


def _micro_batches(inputs, targets, micro_batch_size):
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    for start in range(0, len(inputs), micro_batch_size):
        yield inputs[start:start + micro_batch_size], targets[start:start + micro_batch_size]


def accumulate_gradients_not_divided(model, inputs, targets, micro_batch_size, ignore_index=-100):
    total = 0.0
    for micro_inputs, micro_targets in _micro_batches(inputs, targets, micro_batch_size):
        loss = F.cross_entropy(model(micro_inputs), micro_targets, ignore_index=ignore_index)
        loss.backward()  # BUG: k micro-batch means added up: the gradient is k times the full batch's
        total += loss.item()
    return total


def accumulate_gradients_divided_by_micro_batch_count(model, inputs, targets, micro_batch_size, ignore_index=-100):
    count = -(-len(inputs) // micro_batch_size)
    total = 0.0
    for micro_inputs, micro_targets in _micro_batches(inputs, targets, micro_batch_size):
        # BUG: 1/k is each micro-batch's share only when all count the same tokens; a shorter last micro-batch
        # or padding (ignore_index) gives its tokens more weight than the others'.
        loss = F.cross_entropy(model(micro_inputs), micro_targets, ignore_index=ignore_index) / count
        loss.backward()
        total += loss.item()
    return total


def accumulate_gradients_divided_by_one_micro_batch_tokens(model, inputs, targets, micro_batch_size,
                                                           ignore_index=-100):
    first_targets = np.asarray(targets)[:micro_batch_size]
    tokens = max(int(np.count_nonzero(first_targets != ignore_index)), 1)
    total = 0.0
    for micro_inputs, micro_targets in _micro_batches(inputs, targets, micro_batch_size):
        # BUG: the summed loss of every micro-batch divided by the first micro-batch's token count, not by the
        # tokens of the whole batch: the gradient is (all tokens / first micro-batch's tokens) times too big.
        loss = F.cross_entropy(model(micro_inputs), micro_targets, ignore_index=ignore_index, reduction="sum") / tokens
        loss.backward()
        total += loss.item()
    return total


def accumulate_gradients_holding_the_last_loss(model, inputs, targets, micro_batch_size, ignore_index=-100):
    total_tokens = int(np.count_nonzero(np.asarray(targets) != ignore_index))
    total = 0.0
    for micro_inputs, micro_targets in _micro_batches(inputs, targets, micro_batch_size):
        share = np.count_nonzero(micro_targets != ignore_index) / total_tokens
        # BUG (memory, not values): `loss` still holds the previous micro-batch's graph, every activation of it,
        # while the next micro-batch's forward runs: the peak is two micro-batches', not one.
        loss = F.cross_entropy(model(micro_inputs), micro_targets, ignore_index=ignore_index) * share
        loss.backward()
        total += loss.item()
    return total
