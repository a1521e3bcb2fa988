"""Deliberately broken language-model pieces, each named after its bug (M22, M10).

Each is small enough to read next to the correct code: tinygrad_llm/nn/recurrent_language_model.py,
tinygrad_llm/data/windows.py (random_windows) and tinygrad_llm/training/loop.py (language_model_loss).
tests/test_broken_language_models.py proves that the Q08 learning checks of test_experiments_language_models.py
pass on the library and reject every one of them. None raises an error: they run, train and report a loss.
"""
from tinygrad_llm import nn
from tinygrad_llm.data import random_windows
from tinygrad_llm.nn import functional as F


class RecurrentLanguageModelWithBatchAndTimeSwapped(nn.RecurrentLanguageModel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # BUG (M22): the layer now reads its input as (time, batch, features), PyTorch's default, while the model
        # feeds (batch, time, features). The feature size still fits, so nothing complains: the batch axis is
        # run through the recurrence and every sample sees the samples before it in the batch.
        self.recurrent.batch_first = False


def random_windows_with_unshifted_targets(ids, block_size, batch_size, rng):
    inputs, _ = random_windows(ids, block_size, batch_size, rng)
    return inputs, inputs  # BUG (M10): targets = the inputs, so position t "predicts" the token it already reads


def language_model_loss_against_the_inputs(model, inputs, targets):
    return F.cross_entropy(model(inputs), inputs)  # BUG (M10): the same mistake made in the loss instead
