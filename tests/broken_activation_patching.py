"""Deliberately broken pieces of activation patching, each named after its bug; test_activation_patching.py
proves that its checks of the real ones catch every one."""
import numpy as np

from tinygrad_llm.interpretability.activation_patching import head_outputs_name, run_patched
from tinygrad_llm.interpretability.induction_task import previous_occurrence


def induction_scores_on_the_repeated_token(patterns, ids):
    """Scores attention to the previous occurrence itself instead of the token after it: that measures a
    duplicate-token head, which finds the earlier copy but would copy the current token again."""
    source = previous_occurrence(ids)
    rows, queries = np.nonzero(source >= 0)
    return patterns[:, rows, :, queries, source[rows, queries]].mean(axis=0)


def patch_heads_that_patches_the_whole_layer(model, ids, heads, source, positions=None):
    """Replaces every head of each named layer: the layer's effect, blamed on the one head that was asked for."""
    return run_patched(model, ids, {head_outputs_name(layer): np.broadcast_to(source[layer], (len(ids),) +
                                                                             source[layer].shape[1:])
                                    for layer, _ in heads})


def copying_accuracy_without_the_shift(logits, ids, predictable):
    """Compares the logits AT the predictable position with its token, but those logits predict the next one."""
    return float(np.mean(logits.argmax(axis=-1)[predictable] == np.asarray(ids)[predictable]))
