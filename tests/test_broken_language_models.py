"""Proof that the Q08 learning checks bite: each passes on the library and fails on the broken variant it is meant
to catch (tests/broken_language_models.py, named after the bug)."""
import numpy as np
import pytest

from tinygrad_llm import nn
from tinygrad_llm.data import random_windows
from tinygrad_llm.random import manual_seed
from tinygrad_llm.training import MODEL_KINDS
from tinygrad_llm.training.loop import language_model_loss

import broken_language_models as broken
from test_experiments_language_models import (check_a_sample_depends_only_on_itself,
                                              check_loss_is_mean_cross_entropy_against_the_next_token, scrambled_model)

pytestmark = pytest.mark.broken

SEEDS = range(3)


def recurrent_model(model_class, cell: str, seed: int):
    manual_seed(seed)
    return model_class(17, cell=cell, embed_dim=8, hidden_dim=8, num_layers=2)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_independence_check_passes_on_the_library_and_catches_swapped_batch_and_time(cell):
    for seed in SEEDS:
        ids = np.random.default_rng(seed).integers(0, 17, size=(3, 6))
        check_a_sample_depends_only_on_itself(recurrent_model(nn.RecurrentLanguageModel, cell, seed), ids, sample=0)
        # Sample 0: with the axes swapped the batch is run as time, so the first sample reaches all the others.
        with pytest.raises(AssertionError, match="batch and time are mixed up"):
            check_a_sample_depends_only_on_itself(
                recurrent_model(broken.RecurrentLanguageModelWithBatchAndTimeSwapped, cell, seed), ids, sample=0)


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("make_windows, loss_fn", [
    (broken.random_windows_with_unshifted_targets, language_model_loss),
    (random_windows, broken.language_model_loss_against_the_inputs),
], ids=["unshifted-windows", "loss-against-the-inputs"])
def test_the_next_token_check_passes_on_the_library_and_catches_unshifted_targets(kind, make_windows, loss_fn):
    for seed in SEEDS:
        model = scrambled_model(kind, 24, seed)
        check_loss_is_mean_cross_entropy_against_the_next_token(model, random_windows, language_model_loss, 6, 3, seed)
        with pytest.raises(AssertionError, match="shifted by one"):
            check_loss_is_mean_cross_entropy_against_the_next_token(model, make_windows, loss_fn, 6, 3, seed)


def test_every_broken_variant_is_exercised():
    kept = {name for name in vars(broken) if not name.startswith("_") and callable(getattr(broken, name))
            and getattr(broken, name).__module__ == broken.__name__}
    assert kept == {"RecurrentLanguageModelWithBatchAndTimeSwapped", "random_windows_with_unshifted_targets",
                    "language_model_loss_against_the_inputs"}
