"""Learning checks for base models, heads and from_pretrained (Q27, M49): a base model returns hidden states and
asking it for logits is a clear error; each head has its shape and ignores padding; save_pretrained and
from_pretrained round-trip a model exactly; loading into a new head is refused with strict=True (listing the
missing and unexpected keys) and accepted with strict=False, the base weights bit-identical. The base-model
check also runs against tests/broken_masked_lm.py."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.autograd import no_grad
from tinygrad_llm.checkpoint import CheckpointError, save_checkpoint
from tinygrad_llm.data import CharTokenizer
from tinygrad_llm.nn import TransformerEncoder
from tinygrad_llm.nn.transformer_encoder import MissingHeadError
from tinygrad_llm.transfer.heads import (MaskedLMHead, ModelWithHead, SequenceClassificationHead,
                                         TokenClassificationHead, build_head)
from tinygrad_llm.transfer.masked_accuracy import masked_accuracy
from tinygrad_llm.transfer.masking import masked_lm_loss
from tinygrad_llm.transfer.pretrained import from_pretrained, save_pretrained

import broken_masked_lm as broken

pytestmark = pytest.mark.pretraining

VOCAB = 23


def tiny_encoder(seed=0, cls=TransformerEncoder, embed_dim=16):
    tgl.manual_seed(seed)
    return cls(VOCAB, context_size=12, embed_dim=embed_dim, num_heads=2, num_layers=1)


def draw_ids(seed, batch, time):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(batch, time))


# ------------------------------------------------------------------ base models return hidden states (M49)
def check_base_returns_hidden_states(encoder_class):
    @given(st.integers(0, 2**16), st.integers(1, 4), st.integers(1, 12), st.sampled_from([8, 16, 32]))
    def hidden_states(seed, batch, time, embed_dim):
        base = tiny_encoder(seed, encoder_class, embed_dim)
        with no_grad():
            assert base(draw_ids(seed, batch, time)).shape == (batch, time, base.hidden_size)

    hidden_states()


def test_a_base_model_returns_hidden_states():
    check_base_returns_hidden_states(TransformerEncoder)


@pytest.mark.broken
def test_the_check_catches_a_base_model_that_returns_logits():
    with pytest.raises(AssertionError):
        check_base_returns_hidden_states(broken.EncoderThatReturnsLogits)


def test_asking_a_base_model_for_logits_is_the_m49_error():
    base = tiny_encoder()
    ids = draw_ids(0, 2, 8)
    for attempt in (lambda: base.logits(ids), lambda: masked_lm_loss(base, np.zeros((2, 8), np.int64)),
                    lambda: masked_accuracy(base, ids, ids)):
        with pytest.raises(MissingHeadError, match="M49.*head"):
            attempt()


def test_masked_accuracy_needs_a_masked_lm_head():
    base = tiny_encoder()
    classifier = ModelWithHead(base, SequenceClassificationHead.for_base(base))
    with pytest.raises(TypeError, match="MaskedLMHead"):
        masked_accuracy(classifier, draw_ids(0, 2, 8), draw_ids(1, 2, 8))


# ------------------------------------------------------------------ heads
@given(st.integers(0, 2**16), st.integers(1, 4), st.integers(1, 12), st.integers(2, 5))
def test_every_head_gives_its_output_shape(seed, batch, time, classes):
    base = tiny_encoder(seed)
    ids = draw_ids(seed, batch, time)
    expected = {"masked_lm": ((batch, time, VOCAB), {}),
                "sequence_classification": ((batch, classes), {"num_classes": classes}),
                "token_classification": ((batch, time, classes), {"num_labels": classes})}
    with no_grad():
        for name, (shape, options) in expected.items():
            assert ModelWithHead(base, build_head(name, base, **options))(ids).shape == shape


def test_the_masked_lm_head_is_tied_to_the_token_embedding():
    base = tiny_encoder()
    tied = ModelWithHead(base, MaskedLMHead.for_base(base))
    untied = ModelWithHead(base, MaskedLMHead.for_base(base, tie_weights=False))
    assert tied.head.decoder.weight is base.token_embedding.weight
    names = [name for name, _ in tied.named_parameters()]
    assert "head.decoder.weight" not in names and "base.token_embedding.weight" in names
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * base.hidden_size


@given(st.integers(0, 2**16), st.lists(st.integers(1, 10), min_size=1, max_size=4))
def test_mean_pooling_averages_the_real_tokens_only(seed, lengths):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((len(lengths), 10, 6))
    padding = np.arange(10)[None, :] >= np.array(lengths)[:, None]
    head = SequenceClassificationHead(6, 3, pooling="mean").double()
    scrambled = np.where(padding[:, :, None], rng.standard_normal(hidden.shape) * 100, hidden)
    pooled = head.pool(tgl.tensor(scrambled), padding).data
    expected = np.stack([hidden[row, :length].mean(axis=0) for row, length in enumerate(lengths)])
    np.testing.assert_allclose(pooled, expected, atol=1e-12)
    first = SequenceClassificationHead(6, 3, pooling="first").double()
    np.testing.assert_array_equal(first.pool(tgl.tensor(scrambled), padding).data, hidden[:, 0])


def test_pooling_errors_name_the_rows():
    hidden = tgl.tensor(np.zeros((2, 3, 6)))
    left_padded = np.array([[False, False, False], [True, False, False]])
    with pytest.raises(ValueError, match=r"padding in rows \[1\].*pad on the right"):
        SequenceClassificationHead(6, 2, pooling="first")(hidden, left_padded)
    with pytest.raises(ValueError, match=r"rows \[0\] are all padding"):
        SequenceClassificationHead(6, 2, pooling="mean")(hidden, np.array([[True] * 3, [False] * 3]))


def test_heads_check_their_input():
    with pytest.raises(ValueError, match="hidden states"):
        TokenClassificationHead(8, 2)(tgl.tensor(np.zeros((2, 3, 5))))
    with pytest.raises(ValueError, match="for_base"):
        ModelWithHead(tiny_encoder(), TokenClassificationHead(8, 2))
    with pytest.raises(ValueError, match="unknown head"):
        build_head("regression", tiny_encoder())


# ------------------------------------------------------------------ save_pretrained and from_pretrained
@pytest.fixture
def masked_lm(tmp_path):
    base = tiny_encoder(3)
    model = ModelWithHead(base, MaskedLMHead.for_base(base))
    tokenizer = CharTokenizer.train("abcdefghijklmnopqr")  # 5 specials + 18 characters = VOCAB ids
    path = save_pretrained(model, tmp_path / "mlm.npz", tokenizer)
    return model, tokenizer, path


def test_from_pretrained_with_the_saved_head_computes_the_same_function(masked_lm):
    model, tokenizer, path = masked_lm
    loaded, report = from_pretrained(path, head="masked_lm")
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert report.tokenizer.to_dict() == tokenizer.to_dict()
    ids = draw_ids(0, 3, 12)
    with no_grad():
        np.testing.assert_array_equal(loaded(ids).data, model(ids).data)
    assert loaded.head.decoder.weight is loaded.base.token_embedding.weight  # still tied after loading


def test_a_new_head_is_refused_when_strict_and_listed_when_not(masked_lm):
    model, _, path = masked_lm
    with pytest.raises(KeyError, match=r"missing keys \['head.classifier.weight', 'head.classifier.bias'\].*strict=False"):
        from_pretrained(path, head="sequence_classification", num_classes=3)
    loaded, report = from_pretrained(path, head="sequence_classification", strict=False, num_classes=3)
    assert report.missing_keys == ["head.classifier.weight", "head.classifier.bias"]
    assert set(report.unexpected_keys) == {"head.dense.weight", "head.dense.bias", "head.norm.weight",
                                           "head.norm.bias", "head.decoder.bias"}
    for (name, saved), (loaded_name, value) in zip(model.base.state_dict().items(), loaded.base.state_dict().items()):
        assert name == loaded_name
        np.testing.assert_array_equal(value, saved)  # the base is bit-identical
    assert loaded(draw_ids(0, 2, 5)).shape == (2, 3)


def test_the_base_alone_drops_the_head_and_a_bare_base_round_trips(masked_lm, tmp_path):
    model, _, path = masked_lm
    with pytest.raises(KeyError, match="unexpected keys"):
        from_pretrained(path)
    base, report = from_pretrained(path, strict=False)
    assert isinstance(base, TransformerEncoder) and report.missing_keys == []
    ids = draw_ids(1, 2, 12)
    with no_grad():
        np.testing.assert_array_equal(base(ids).data, model.base(ids).data)
    again, report = from_pretrained(save_pretrained(base, tmp_path / "base.npz"))
    assert report.missing_keys == report.unexpected_keys == [] and report.tokenizer is None
    with no_grad():
        np.testing.assert_array_equal(again(ids).data, base(ids).data)


def test_a_saved_heads_options_are_the_defaults_when_loading_it(tmp_path):
    base = tiny_encoder()
    classifier = ModelWithHead(base, SequenceClassificationHead.for_base(base, num_classes=4, pooling="mean"))
    loaded, _ = from_pretrained(save_pretrained(classifier, tmp_path / "classifier.npz"), head="sequence_classification")
    assert loaded.head.config == {"num_classes": 4, "pooling": "mean"}


def test_from_pretrained_errors_are_clear(masked_lm, tmp_path):
    _, _, path = masked_lm
    with pytest.raises(ValueError, match="without a head"):
        from_pretrained(path, num_classes=2)
    other = save_checkpoint(tmp_path / "other.npz", {"w": np.zeros(2)}, {"format": "something else"})
    with pytest.raises(CheckpointError, match="save_pretrained"):
        from_pretrained(other)
    with pytest.raises(TypeError, match="base model must be"):
        save_pretrained(tgl.nn.GPT(VOCAB, context_size=8, embed_dim=8, num_heads=2, num_layers=1), tmp_path / "g.npz")
