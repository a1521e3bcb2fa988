"""Multimodal fusion (Q31, M51): the XOR data, the encoders and fusion models, and the experiment's claim that
only fusion with a nonlinearity after the modalities meet learns XOR. The checks also run against
tests/broken_multimodal.py and must catch every broken model."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_llm.autograd import topological_order
from tinygrad_llm.experiments.multimodal import IMAGE_SIZE, VOCAB_SIZE, accuracy, fusion_comparison, train_fusion_model
from tinygrad_llm.nn import functional as F
from tinygrad_llm.random import manual_seed
from tinygrad_llm.transfer.multimodal import (
    FUSION_MODELS, build_fusion_model, image_patches, interaction_contrast, make_multimodal_xor,
)

import broken_multimodal as broken

pytestmark = pytest.mark.pretraining

ADDITIVE = ["text_only", "image_only", "late_fusion", "linear_concat"]
NONLINEAR = ["concat_mlp", "cross_attention"]
MODALITIES = {"text_only": {"text"}, "image_only": {"image"}}  # every other model reads both

data_options = st.fixed_dictionaries({
    "n": st.integers(1, 50).map(lambda k: 4 * k),
    "seq_len": st.integers(1, 10),
    "vocab_size": st.integers(2, 20),
    "image_size": st.integers(2, 10),
    "noise": st.floats(0.0, 1.0),
    "distractor_rate": st.floats(0.0, 1.0),
    "rng": st.integers(0, 2**16),
})
sizes = st.fixed_dictionaries({
    "vocab_size": st.integers(2, 12), "image_size": st.sampled_from([2, 4, 6, 8]),
    "dim": st.sampled_from([4, 8, 12]), "hidden": st.integers(1, 8),
})


def small_batch(n=8, seed=0, **options):
    return make_multimodal_xor(n, vocab_size=VOCAB_SIZE, image_size=IMAGE_SIZE, rng=seed, **options)


def build(model_class, seed=0):
    manual_seed(seed)
    return model_class(VOCAB_SIZE, IMAGE_SIZE)


def build_in_float64(model_class, seed=0):
    """In float64 an additive model's contrast is ~1e-16, far below any real interaction."""
    return build(model_class, seed).double()


# ---------------------------------------------------------------------------- the data
@given(data_options, st.data())
def test_labels_are_the_xor_of_the_features_planted_in_the_raw_data(options, draw):
    target = draw.draw(st.integers(0, options["vocab_size"] - 1))
    data = make_multimodal_xor(target_token=target, **options)
    n, size = options["n"], options["image_size"]
    assert data.tokens.shape == (n, options["seq_len"]) and data.images.shape == (n, size, size)
    assert data.tokens.min() >= 0 and data.tokens.max() < options["vocab_size"]
    text_has_token = (data.tokens == target).any(axis=1)
    image_has_bar = (data.images == 1.0).all(axis=1).any(axis=1)  # some column entirely at full brightness
    np.testing.assert_array_equal(text_has_token, data.text_has_token)
    np.testing.assert_array_equal(image_has_bar, data.image_has_bar)
    np.testing.assert_array_equal(data.labels, text_has_token ^ image_has_bar)


@given(data_options)
def test_each_modality_alone_is_uninformative(options):
    data = make_multimodal_xor(**options)
    for feature in (data.text_has_token, data.image_has_bar):
        assert data.labels[feature].mean() == 0.5 and data.labels[~feature].mean() == 0.5
    for text in (False, True):
        for bar in (False, True):
            assert ((data.text_has_token == text) & (data.image_has_bar == bar)).sum() == options["n"] // 4


@given(data_options)
def test_the_same_seed_gives_the_same_data(options):
    first, second = make_multimodal_xor(**options), make_multimodal_xor(**options)
    for name in ("tokens", "images", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 100))
def test_patches_are_the_image_blocks_in_row_major_order(batch, grid, patch_size, seed):
    size = grid * patch_size
    images = np.random.default_rng(seed).normal(size=(batch, size, size))
    patches = image_patches(images, patch_size)
    assert patches.shape == (batch, grid * grid, patch_size * patch_size)
    for index in range(grid * grid):
        row, col = divmod(index, grid)
        block = images[:, row * patch_size:(row + 1) * patch_size, col * patch_size:(col + 1) * patch_size]
        np.testing.assert_array_equal(patches[:, index], block.reshape(batch, -1))


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="make_multimodal_xor: n must be a positive multiple of 4"):
        make_multimodal_xor(10)
    with pytest.raises(ValueError, match="target_token"):
        make_multimodal_xor(8, vocab_size=4, target_token=4)
    with pytest.raises(ValueError, match="image_patches: image 8x8 is not divisible into 3x3"):
        image_patches(np.zeros((1, 8, 8)), 3)
    with pytest.raises(ValueError, match="build_fusion_model: unknown model 'early'"):
        build_fusion_model("early", VOCAB_SIZE, IMAGE_SIZE)


# ---------------------------------------------------------------------------- the models
def expected_num_parameters(name, vocab_size, image_size, dim, hidden, patch_size=2):
    """The counts the module docstring states, from the sizes alone."""
    text = vocab_size * dim
    image = image_size ** 2 * hidden + hidden + hidden * dim + dim
    patches = patch_size ** 2 * dim + dim + dim * dim + dim + (image_size // patch_size) ** 2 * dim
    head = 2 * dim + 2
    return {
        "text_only": text + head, "image_only": image + head, "late_fusion": text + image + 2 * head,
        "linear_concat": text + image + 4 * dim + 2,
        "concat_mlp": text + image + 2 * dim * hidden + hidden + 2 * hidden + 2,
        "cross_attention": text + patches + 4 * (dim * dim + dim) + head,
    }[name]


@settings(max_examples=15)
@given(sizes)
def test_parameter_counts_equal_the_sum_over_the_submodules(size):
    for name in FUSION_MODELS:
        model = build_fusion_model(name, **size)
        assert model.num_parameters() == sum(child.num_parameters() for child in model.children())
        assert model.num_parameters() == expected_num_parameters(name, **size), name


def check_every_weight_is_registered(model, data):
    """Every trainable tensor the logits depend on is one of model.parameters(), and together they are all of
    num_parameters(): a layer hidden from Module would be used but never trained, saved or counted."""
    logits = model(data.tokens, data.images)
    used = [t for t in topological_order(logits) if t.is_leaf and t.requires_grad]
    registered = {id(p) for p in model.parameters()}
    unregistered = [t.shape for t in used if id(t) not in registered]
    assert not unregistered, f"{type(model).__name__} uses unregistered weights of shapes {unregistered}"
    assert sum(t.numel() for t in used) == model.num_parameters()


def check_counts_its_fusion_layers(model):
    assert model.num_parameters() == expected_num_parameters("concat_mlp", VOCAB_SIZE, IMAGE_SIZE, 16, 32)


@pytest.mark.parametrize("name", list(FUSION_MODELS))
def test_every_weight_the_model_uses_is_registered(name):
    check_every_weight_is_registered(build(FUSION_MODELS[name]), small_batch())


def test_an_unregistered_fusion_layer_is_caught():
    model = build(broken.ConcatMLPWithUnregisteredFusion)
    with pytest.raises(AssertionError, match="unregistered weights"):
        check_every_weight_is_registered(model, small_batch())
    with pytest.raises(AssertionError):
        check_counts_its_fusion_layers(model)
    check_counts_its_fusion_layers(build(FUSION_MODELS["concat_mlp"]))


def encoder_gradient_norms(model, data) -> dict:
    """{modality: total |gradient| over its encoder's parameters} after one backward pass of the loss."""
    model.zero_grad()
    F.cross_entropy(model(data.tokens, data.images), data.labels).backward()
    norms = {}
    for modality in ("text", "image"):
        encoder = getattr(model, f"{modality}_encoder", None)
        if encoder is not None:
            norms[modality] = sum(float(np.abs(p.grad).sum()) for p in encoder.parameters() if p.grad is not None)
    return norms


@pytest.mark.parametrize("name", list(FUSION_MODELS))
@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_each_encoder_the_model_reads_gets_a_gradient(name, seed):
    norms = encoder_gradient_norms(build(FUSION_MODELS[name], seed), small_batch(16, seed))
    assert set(norms) == MODALITIES.get(name, {"text", "image"})
    assert all(norm > 0 for norm in norms.values()), norms


@pytest.mark.parametrize("name", list(FUSION_MODELS))
@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_a_model_depends_exactly_on_the_modalities_it_reads(name, seed):
    model, first, second = build(FUSION_MODELS[name], seed), small_batch(8, seed), small_batch(8, seed + 1)
    reads = MODALITIES.get(name, {"text", "image"})
    logits = model(first.tokens, first.images).data
    text_changed = model(second.tokens, first.images).data
    image_changed = model(first.tokens, second.images).data
    assert np.array_equal(logits, text_changed) == ("text" not in reads)
    assert np.array_equal(logits, image_changed) == ("image" not in reads)


def check_fuses_nonlinearly(model, data, other):
    """XOR needs logits(t1, i1) - logits(t1, i0) - logits(t0, i1) + logits(t0, i0) away from zero; it is
    exactly zero for any model of the form f(text) + g(image), whatever its weights (the model in float64)."""
    contrast = interaction_contrast(model, (data.tokens, other.tokens), (data.images, other.images))
    assert np.abs(contrast).max() > 1e-9, f"{type(model).__name__} is additive in the modalities (M51)"


@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_additive_fusion_has_no_interaction_whatever_the_weights(seed):
    data, other = small_batch(8, seed), small_batch(8, seed + 1)
    for name in ADDITIVE:
        contrast = interaction_contrast(build_in_float64(FUSION_MODELS[name], seed), (data.tokens, other.tokens),
                                        (data.images, other.images))
        np.testing.assert_allclose(contrast, 0.0, atol=1e-12)
    for name in NONLINEAR:
        check_fuses_nonlinearly(build_in_float64(FUSION_MODELS[name], seed), data, other)


def test_fusion_without_a_nonlinearity_is_caught():
    data, other = small_batch(8, 0), small_batch(8, 1)
    with pytest.raises(AssertionError, match="additive in the modalities"):
        check_fuses_nonlinearly(build_in_float64(broken.ConcatFusionWithoutNonlinearity), data, other)
    model = build(broken.ConcatFusionWithoutNonlinearity)
    train_fusion_model(model, small_batch(2000, 0), steps=400)
    assert accuracy(model.eval(), small_batch(2000, 1000)) <= 0.65  # where the fusion MLP reaches ~100%


# ---------------------------------------------------------------------------- the experiment
@pytest.fixture(scope="module")
def comparison():
    return fusion_comparison(fast=True)


def test_the_experiment_reports_every_model(comparison):
    assert set(comparison["models"]) == set(FUSION_MODELS) and comparison["seeds"] == [0]
    for name, row in comparison["models"].items():
        assert row["num_parameters"] == expected_num_parameters(name, VOCAB_SIZE, IMAGE_SIZE, 16, 32)
        assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["train_accuracy"] <= 1 and row["final_loss"] >= 0


def test_only_nonlinear_fusion_learns_xor(comparison):
    accuracy_of = {name: row["test_accuracy"] for name, row in comparison["models"].items()}
    assert all(accuracy_of[name] <= 0.65 for name in ADDITIVE), accuracy_of
    assert all(accuracy_of[name] >= 0.9 for name in NONLINEAR), accuracy_of
    assert accuracy_of["concat_mlp"] - accuracy_of["linear_concat"] >= 0.3
