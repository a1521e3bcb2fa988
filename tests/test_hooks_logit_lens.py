"""Learning checks for looking inside the GPT (Q32): forward hooks, capturing and replacing activations, the
logit lens and linear probes.

- A hook that returns nothing (or its input) leaves every output unchanged, bit for bit; removing a hook
  restores the model exactly; a replaced activation changes what comes after it exactly as running the rest
  of the model by hand on the replacement does.
- The logit lens, layer by layer, is the residual stream run by hand through the final norm and the head,
  and at the last layer it IS the model's logits (tests/broken_logit_lens.py: two lenses these checks catch).
- A linear probe finds a feature that is linearly present in hidden states, and fails on shuffled labels.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import broken_logit_lens as broken
import tinygrad_llm as tgl
from tinygrad_llm import nn
from tinygrad_llm.interpretability.activations import capture_activations, find_module, replace_activation
from tinygrad_llm.interpretability.logit_lens import (logit_lens, residual_stream, target_probabilities,
                                                      top_tokens)
from tinygrad_llm.interpretability.probes import (balanced_accuracy, previous_token_labels, probe_layer,
                                                  probe_with_controls, train_linear_probe)
from tinygrad_llm.tensor import Tensor

pytestmark = pytest.mark.interpretability


@st.composite
def gpts(draw, vocab_sizes=st.integers(2, 13), head_widths=st.sampled_from([2, 4, 6]), noise: float = 0.3):
    """A random small float64 GPT, with N(0, noise) added to every parameter so that every layer matters (at
    GPT-2's N(0, 0.02) the blocks barely move the stream), and a batch of ids for it."""
    num_heads = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    tgl.manual_seed(seed)
    model = nn.GPT(draw(vocab_sizes), context_size=8, embed_dim=num_heads * draw(head_widths),
                   num_heads=num_heads, num_layers=draw(st.integers(1, 3)),
                   positions=draw(st.sampled_from(["learned", "sinusoidal", "rope"])),
                   tie_weights=draw(st.booleans())).double().eval()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += rng.normal(0, noise, p.shape)
    ids = rng.integers(0, model.vocab_size, (draw(st.integers(1, 3)), draw(st.integers(1, 8))))
    return model, ids


def fixed_gpt_and_ids():
    """One small noisy float64 GPT and ids for it, for the example-based tests."""
    tgl.manual_seed(3)
    model = nn.GPT(7, context_size=6, embed_dim=6, num_heads=2, num_layers=2).double().eval()
    rng = np.random.default_rng(3)
    for p in model.parameters():
        p.data += rng.normal(0, 0.3, p.shape)
    return model, rng.integers(0, 7, (2, 6))


def logits_of(model, ids) -> np.ndarray:
    with tgl.no_grad():
        return model(ids).numpy()


def run_blocks_by_hand(model, stream: np.ndarray, first_block: int) -> list:
    """The residual stream after each block from `first_block` on, starting from `stream`, with no hooks:
    the blocks called exactly as GPT.forward calls them (no cache, no padding)."""
    streams, x = [], Tensor(stream)
    with tgl.no_grad():
        for index in range(first_block, model.num_layers):
            x = model.blocks[index](x, causal=True, layer_index=index, rotary=model.rotary, positions_offset=0)
            streams.append(x.numpy())
    return streams


def unembed(model, stream: np.ndarray) -> np.ndarray:
    with tgl.no_grad():
        return model.lm_head(model.final_norm(Tensor(stream))).numpy()


def logit_lens_by_hand(model, ids) -> np.ndarray:
    """The reference lens: embeddings and blocks run by hand, each stream through the final norm and head."""
    with tgl.no_grad():
        x = model.token_embedding(ids)
        if model.position_embedding is not None:
            x = x + model.position_embedding(ids.shape[1], 0)
    streams = [x.numpy()] + run_blocks_by_hand(model, x.numpy(), 0)
    return np.stack([unembed(model, stream) for stream in streams])


# ============================================================================ hooks
@given(gpts())
def test_hooks_that_change_nothing_leave_the_outputs_unchanged_bit_for_bit(model_and_ids):
    model, ids = model_and_ids
    expected = logits_of(model, ids)
    calls = []
    handles = []
    for _, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda module, args: None))
        handles.append(module.register_forward_pre_hook(lambda module, args: args))
        handles.append(module.register_forward_hook(lambda module, args, output: calls.append(module)))
        handles.append(module.register_forward_hook(lambda module, args, output: output))
    np.testing.assert_array_equal(logits_of(model, ids), expected)
    assert {id(module) for module in calls} == {id(module) for module in model.modules()}  # every layer, hooked
    for handle in handles:
        handle.remove()
    calls.clear()
    np.testing.assert_array_equal(logits_of(model, ids), expected)
    assert calls == []


@given(gpts(), st.data())
def test_removing_a_replacing_hook_restores_the_model_exactly(model_and_ids, data):
    model, ids = model_and_ids
    expected = logits_of(model, ids)
    name = data.draw(st.sampled_from([f"blocks.{i}" for i in range(model.num_layers)] + ["token_embedding"]))
    with replace_activation(model, name, lambda output: output * 2.0 + 1.0):
        assert not np.array_equal(logits_of(model, ids), expected)
    np.testing.assert_array_equal(logits_of(model, ids), expected)
    handle = find_module(model, name).register_forward_hook(lambda module, args, output: output * 0.0)
    assert not np.array_equal(logits_of(model, ids), expected)
    handle.remove()
    np.testing.assert_array_equal(logits_of(model, ids), expected)


@given(gpts(), st.data())
def test_a_replaced_block_output_changes_the_logits_exactly_as_running_the_rest_by_hand(model_and_ids, data):
    model, ids = model_and_ids
    layer = data.draw(st.integers(0, model.num_layers - 1))
    replacement = np.random.default_rng(layer).normal(size=(*ids.shape, model.config["embed_dim"]))
    with replace_activation(model, f"blocks.{layer}", replacement):
        patched = logits_of(model, ids)
    last_stream = ([replacement] + run_blocks_by_hand(model, replacement, layer + 1))[-1]
    np.testing.assert_array_equal(patched, unembed(model, last_stream))


def test_a_pre_hook_replaces_the_input_and_a_handle_works_as_a_context_manager():
    tgl.manual_seed(0)
    layer = nn.Linear(3, 2)
    x = Tensor(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
    with tgl.no_grad():
        with layer.register_forward_pre_hook(lambda module, args: args[0] * 2.0):
            doubled = layer(x).numpy()
        np.testing.assert_array_equal(doubled, layer(x * 2.0).numpy())
        assert not np.array_equal(layer(x).numpy(), doubled)


@given(gpts())
def test_capture_records_every_layer_with_the_right_shape(model_and_ids):
    model, ids = model_and_ids
    (batch, time), d, vocab = ids.shape, model.config["embed_dim"], model.vocab_size
    names = [name for name, _ in model.named_modules() if name]
    with capture_activations(model, names) as acts:
        logits = logits_of(model, ids)
    expected_shapes = {"token_embedding": (batch, time, d), "final_norm": (batch, time, d),
                       "lm_head": (batch, time, vocab)}
    for index in range(model.num_layers):
        expected_shapes.update({f"blocks.{index}": (batch, time, d), f"blocks.{index}.attn": (batch, time, d),
                                f"blocks.{index}.mlp_up": (batch, time, 4 * d),
                                f"blocks.{index}.mlp_down": (batch, time, d)})
    for name, shape in expected_shapes.items():
        assert acts[name].shape == shape, name
    np.testing.assert_array_equal(acts["lm_head"].numpy(), logits)
    with tgl.no_grad():  # the hooks are gone after the block: nothing more is recorded
        model(ids[:, :1])
    assert acts["lm_head"].shape == (batch, time, vocab)


def test_bad_names_shapes_and_hooks_are_clear_errors():
    model = nn.GPT(5, context_size=4, embed_dim=4, num_heads=1, num_layers=1)
    ids = np.zeros((1, 3), dtype=np.int64)
    with pytest.raises(KeyError, match="no module 'block.0'.*blocks.0"):
        find_module(model, "block.0")
    with pytest.raises(TypeError, match=r"\['blocks.0'\]"):
        with capture_activations(model, "blocks.0"):
            pass
    with pytest.raises(ValueError, match=r"shape \(1, 3, 5\).*\(1, 3, 4\)"):
        with replace_activation(model, "blocks.0", np.zeros((1, 3, 5))):
            model(ids)
    with pytest.raises(TypeError, match="hook must be a function"):
        model.register_forward_hook("not a function")


# ============================================================================ the logit lens
def check_logit_lens(lens, model, ids):
    """Each layer's readout is that layer's stream, computed by hand, through the final norm and the head;
    the last one is the model's own logits, bit for bit."""
    readouts = lens(model, ids)
    assert readouts.shape == (model.num_layers + 1, *ids.shape, model.vocab_size)
    np.testing.assert_array_equal(readouts[-1], logits_of(model, ids))
    np.testing.assert_allclose(readouts, logit_lens_by_hand(model, ids), rtol=1e-10, atol=1e-12)


@given(gpts())
def test_the_logit_lens_reads_every_layer_and_its_last_layer_is_the_models_logits(model_and_ids):
    check_logit_lens(logit_lens, *model_and_ids)


@pytest.mark.parametrize("broken_lens", [broken.logit_lens_without_the_final_norm,
                                         broken.logit_lens_that_skips_the_embeddings])
def test_the_logit_lens_checks_catch_broken_lenses(broken_lens):
    model, ids = fixed_gpt_and_ids()
    with pytest.raises(AssertionError):
        check_logit_lens(broken_lens, model, ids)



@given(gpts(), st.integers(1, 4))
def test_top_tokens_and_target_probabilities_agree_with_a_softmax_of_the_readout(model_and_ids, k):
    model, ids = model_and_ids
    readouts = logit_lens(model, ids)
    k = min(k, model.vocab_size)
    top = top_tokens(readouts, k)
    assert top.shape == (*readouts.shape[:-1], k)
    best = target_probabilities(readouts, ids)  # any (B, T) ids will do as targets
    exp = np.exp(readouts - readouts.max(axis=-1, keepdims=True))
    probabilities = exp / exp.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(best, np.take_along_axis(probabilities, ids[None, ..., None], -1)[..., 0],
                               rtol=1e-9)
    top_probability = target_probabilities(readouts, top[0, ..., 0])[0]
    np.testing.assert_allclose(top_probability, probabilities[0].max(axis=-1), rtol=1e-9)
    assert np.all(np.diff(np.take_along_axis(readouts, top, -1), axis=-1) <= 0)


# ============================================================================ linear probes
@given(st.integers(2, 24), st.floats(2.0, 3.0), st.integers(0, 2**31 - 1))
def test_a_probe_finds_a_planted_direction_and_not_shuffled_labels(width, margin, seed):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=width)
    direction /= np.linalg.norm(direction)
    labels = rng.random(800) < 0.5
    features = rng.normal(size=(800, width)) + np.where(labels, margin, -margin)[:, None] * direction
    probe = train_linear_probe(features[:600], labels[:600], features[600:], labels[600:])
    # Each class sits margin >= 2 noise standard deviations from the boundary: the best accuracy is >= Phi(2) = 0.977.
    assert probe.test_accuracy > 0.9 and probe.predict(features[600:]).shape == (200,)
    shuffled = rng.permutation(labels)
    control = train_linear_probe(features[:600], shuffled[:600], features[600:], shuffled[600:])
    assert control.test_accuracy < 0.65


@given(gpts(vocab_sizes=st.integers(2, 6), head_widths=st.sampled_from([16, 24]), noise=0.0), st.data())
def test_a_probe_reads_which_token_is_here_from_every_layer_of_an_untrained_gpt(model_and_ids, data):
    """A token's own identity rides the residual stream from the embeddings up (the blocks of a freshly
    initialised GPT add little to it), so "is this token in a chosen set?" is linearly readable at every layer
    of a model that learned nothing (width 16+ holds up to 6 tokens and 8 positions in general position): why
    a probe needs the untrained control. Shuffled labels are not readable: a linear probe cannot memorise them."""
    model, _ = model_and_ids
    rng = np.random.default_rng(model.vocab_size)
    ids = rng.integers(0, model.vocab_size, (96, 8))
    chosen = data.draw(st.lists(st.integers(0, model.vocab_size - 1), min_size=1, unique=True))
    labels = np.isin(ids, chosen)
    assume(not labels.all())
    layer = data.draw(st.integers(0, model.num_layers))
    assert probe_layer(model, ids, labels, layer).test_accuracy > 0.95
    shuffled = rng.permutation(labels.reshape(-1)).reshape(labels.shape)
    assert probe_layer(model, ids, shuffled, layer).test_accuracy < 0.65  # balanced accuracy: chance is 0.5


@given(st.lists(st.booleans(), min_size=2), st.booleans())
def test_balanced_accuracy_gives_any_constant_answer_one_half(labels, answer):
    labels = np.array(labels)
    assume(labels.any() and not labels.all())
    assert balanced_accuracy(np.full(labels.shape, answer), labels) == 0.5
    assert balanced_accuracy(labels, labels) == 1.0


def test_previous_token_labels_and_probe_errors():
    ids = np.array([[5, 1, 5, 5], [1, 1, 2, 5]])
    np.testing.assert_array_equal(previous_token_labels(ids, 5), [[0, 1, 0, 1], [0, 0, 0, 0]])
    model, ids = fixed_gpt_and_ids()
    with pytest.raises(ValueError, match="layer must be in"):
        probe_layer(model, ids, np.zeros(ids.shape), layer=5)
    with pytest.raises(ValueError, match="all one class"):
        train_linear_probe(np.ones((4, 2)), np.zeros(4), np.ones((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="0/1"):
        train_linear_probe(np.ones((4, 2)), np.arange(4), np.ones((2, 2)), np.zeros(2))
    assert residual_stream(model, ids).shape == (3, 2, 6, 6)
    accuracies = probe_with_controls(model, model, np.tile(ids, (4, 1)), np.tile(ids, (4, 1)) < 3, layer=1)
    assert set(accuracies) == {"model", "untrained_model", "shuffled_labels"}
    assert all(0 <= value <= 1 for value in accuracies.values())
