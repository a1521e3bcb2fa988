"""Proof that the encoder-decoder learning checks bite: each passes on the library's TransformerEncoderDecoder and
fails on every broken variant it is meant to catch (tests/broken_seq2seq.py, named after the bug).

The checks are the properties of tests/test_seq2seq_models.py, written as functions of the model class, on the same
random float64 models and batches (its helpers are reused).
"""
import numpy as np
import pytest

import tinygrad_llm as tgl
from tinygrad_llm import nn

import broken_seq2seq as broken
from test_seq2seq_models import VOCAB, check_reordered_cache_continues_the_selected_rows, logits, make_model, random_batch

pytestmark = [pytest.mark.seq2seq, pytest.mark.broken]
SEEDS = (0, 1, 2)


def build(model_class, seed: int):
    """test_seq2seq_models.make_model's Transformer, of any TransformerEncoderDecoder subclass."""
    return make_model("transformer", seed, transformer_class=model_class)


def check_decoder_is_future_independent(model_class):
    """Changing decoder inputs from position 3 on leaves every earlier output unchanged."""
    for seed in SEEDS:
        model = build(model_class, seed)
        source, padding, decoder_input = random_batch(seed)
        changed = decoder_input.copy()
        changed[:, 3:] = np.random.default_rng(seed + 1).integers(3, VOCAB, changed[:, 3:].shape)
        np.testing.assert_allclose(logits(model, source, changed, padding)[:, :3],
                                   logits(model, source, decoder_input, padding)[:, :3], atol=1e-10)


def check_padding_is_invisible(model_class):
    """The ids under the source padding never reach a real output."""
    for seed in SEEDS:
        model = build(model_class, seed)
        source, padding, decoder_input = random_batch(seed)
        scrambled = np.where(padding, np.random.default_rng(seed).integers(3, VOCAB, source.shape), source)
        np.testing.assert_allclose(logits(model, scrambled, decoder_input, padding),
                                   logits(model, source, decoder_input, padding), atol=1e-10)


def check_first_output_reads_the_whole_source(model_class):
    """Cross-attention has no causal part: in every decoder layer, the FIRST query already reads the LAST source state.

    (Checked on the layers: through the whole model the encoder's self-attention would carry the last token
    to every encoder state anyway and hide the bug.)"""
    rng = np.random.default_rng(0)
    model = build(model_class, 0)
    x, memory = tgl.tensor(rng.normal(size=(2, 3, 8))), rng.normal(size=(2, 7, 8))
    changed = memory.copy()
    changed[:, -1] += rng.normal(size=(2, 8))
    for index, block in enumerate(model.decoder_blocks):
        with tgl.no_grad():
            before = block.cross_attn(x, *block.cross_attn.project_memory(tgl.tensor(memory))).data
            after = block.cross_attn(x, *block.cross_attn.project_memory(tgl.tensor(changed))).data
        assert np.abs(after[:, 0] - before[:, 0]).max() > 1e-6, f"layer {index}: query 0 ignores the last source state"


def check_reordered_cache(model_class):
    """After cache.reorder(rows), row i continues what row rows[i] decoded: beam search relies on it."""
    check_reordered_cache_continues_the_selected_rows(build(model_class, 5), rows=(2, 0, 1))


# (check, [broken classes it must catch])
CASES = [
    (check_decoder_is_future_independent, [broken.TransformerDecoderWithoutCausalMask]),
    (check_padding_is_invisible, [broken.TransformerCrossAttentionIgnoringPadding]),
    (check_first_output_reads_the_whole_source, [broken.TransformerCrossAttentionWithCausalMask]),
    (check_reordered_cache, [broken.TransformerWithStaleMemoryCache]),
]


@pytest.mark.parametrize("check", [check for check, _ in CASES], ids=lambda check: check.__name__)
def test_check_passes_on_the_library(check):
    check(nn.TransformerEncoderDecoder)


@pytest.mark.parametrize("check, broken_class", [(check, bug) for check, bugs in CASES for bug in bugs],
                         ids=lambda value: getattr(value, "__name__", str(value)))
def test_check_catches_the_broken_variant(check, broken_class):
    with pytest.raises(AssertionError):
        check(broken_class)


def test_every_broken_model_is_caught_by_some_check():
    kept = {value for name, value in vars(broken).items()
            if isinstance(value, type) and issubclass(value, nn.TransformerEncoderDecoder)
            and value is not nn.TransformerEncoderDecoder}
    assert kept == {bug for _, bugs in CASES for bug in bugs}
