"""Learning checks for LoRA (Q27): B = 0 leaves the pretrained model bit-identical, the update is (alpha / rank) B A,
only B learns on the first step, merged == adapter, unmerge is bit-exact, the base stays frozen under AdamW, the
gradients match finite differences, trainable counts are rank (in + out) per layer, adapters save and load on their
own, and optimizer state shrinks with the trainable count. The layer checks also run against the broken layers in
tests/broken_lora.py and must catch each one."""
import copy

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tinygrad_llm.autograd import no_grad
from tinygrad_llm.nn import GPT, Linear, ReLU, Sequential
from tinygrad_llm.nn import functional as F
from tinygrad_llm.optim import AdamW
from tinygrad_llm.random import manual_seed
from tinygrad_llm.tensor import Tensor
from tinygrad_llm.testing import gradcheck
from tinygrad_llm.transfer.lora import (LoRALinear, adamw_state_bytes, apply_lora, load_adapters, lora_layers,
                                        lora_state_dict, merge_lora, optimizer_state_bytes, parameter_counts,
                                        save_adapters, trainable_parameters, unmerge_lora)

import broken_lora as broken

pytestmark = pytest.mark.pretraining

# A failing example is reported as drawn: every example already fails on a broken layer, and shrinking cost seconds.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)


@st.composite
def layer_settings(draw):
    """(in, out, rank, alpha, batch, bias, seed) of a small Linear and its adapter; alpha never equals rank, so the
    scale alpha / rank is never 1 and a missing scale shows."""
    in_features, out_features = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rank = draw(st.integers(1, min(in_features, out_features)))
    alpha = draw(st.sampled_from([0.5, 2.0, 3.0, 16.0]).filter(lambda a: a != rank))
    return in_features, out_features, rank, alpha, draw(st.integers(1, 5)), draw(st.booleans()), draw(st.integers(0, 2**16))


def make_layer(layer_class, settings_, dtype=np.float32):
    """A random Linear wrapped by `layer_class`, and an input batch for it."""
    in_features, out_features, rank, alpha, batch, bias, seed = settings_
    manual_seed(seed)
    base = Linear(in_features, out_features, bias=bias)
    if dtype == np.float64:
        base.double()
    layer = layer_class(base, rank, alpha)
    x = np.random.default_rng(seed).standard_normal((batch, in_features)).astype(dtype)
    return layer, x


def randomise_adapter(layer, seed):
    """Nonzero A and B, as after some training (B is zero at initialisation)."""
    rng = np.random.default_rng([seed, 1])
    for parameter in (layer.lora_A, layer.lora_B):
        parameter.data[...] = rng.standard_normal(parameter.shape).astype(parameter.dtype)


# ------------------------------------------------------------------ the checks (each takes a layer class)
def check_zero_B_leaves_the_layer_unchanged(layer_class):
    @given(layer_settings())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def unchanged(settings_):
        layer, x = make_layer(layer_class, settings_)
        with no_grad():
            np.testing.assert_array_equal(layer(Tensor(x)).data, layer.base(Tensor(x)).data)

    unchanged()


def check_first_step_moves_B_only(layer_class):
    """At initialisation dL/dB = scale (dy)^T (x A^T) is nonzero (A is random) and dL/dA = scale B^T (dy)^T x is zero
    (B is zero): learning starts in B, and the model still starts where the pretrained one is."""
    @given(layer_settings())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def first_gradients(settings_):
        layer, x = make_layer(layer_class, settings_)
        layer(Tensor(x)).sum().backward()
        assert np.all(layer.lora_A.grad == 0), "A got a gradient at initialisation, so B was not zero"
        assert np.any(layer.lora_B.grad != 0), "B got no gradient at initialisation: is A zero?"

    first_gradients()


def check_update_is_alpha_over_rank_B_A(layer_class):
    @given(layer_settings())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def scaled_update(settings_):
        layer, x = make_layer(layer_class, settings_)
        randomise_adapter(layer, settings_[-1])
        in_features, out_features, rank, alpha = settings_[:4]
        expected = (alpha / rank) * (x @ layer.lora_A.data.T) @ layer.lora_B.data.T
        with no_grad():
            update = layer(Tensor(x)).data - layer.base(Tensor(x)).data
        np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-4)

    scaled_update()


def check_merged_equals_adapter_and_unmerge_is_exact(layer_class):
    @given(layer_settings())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def merge_round_trip(settings_):
        layer, x = make_layer(layer_class, settings_)
        randomise_adapter(layer, settings_[-1])
        original = layer.base.weight.data.copy()
        with no_grad():
            adapter_output = layer(Tensor(x)).data
            layer.merge()
            merged_output = layer(Tensor(x)).data
        np.testing.assert_allclose(merged_output, adapter_output, rtol=1e-4, atol=1e-4)
        layer.unmerge()
        np.testing.assert_array_equal(layer.base.weight.data, original)

    merge_round_trip()


def check_base_stays_frozen_under_adamw(layer_class):
    @given(layer_settings())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING, max_examples=10)
    def frozen(settings_):
        layer, x = make_layer(layer_class, settings_)
        before = {name: p.data.copy() for name, p in layer.named_parameters()}
        optimizer = AdamW(trainable_parameters(layer), lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            (layer(Tensor(x)) ** 2).mean().backward()
            optimizer.step()
        for name, p in layer.named_parameters():
            if name.startswith("base."):
                np.testing.assert_array_equal(p.data, before[name], err_msg=f"{name} changed")
        assert not np.array_equal(layer.lora_B.data, before["lora_B"]), "the adapter did not learn"

    frozen()


LAYER_CHECKS = {
    "zero B leaves the layer unchanged": check_zero_B_leaves_the_layer_unchanged,
    "first step moves B only": check_first_step_moves_B_only,
    "update is alpha/rank B A": check_update_is_alpha_over_rank_B_A,
    "merge == adapter, unmerge exact": check_merged_equals_adapter_and_unmerge_is_exact,
    "base frozen under AdamW": check_base_stays_frozen_under_adamw,
}
CAUGHT_BY = {
    broken.LoRALinearWithoutScaling: "update is alpha/rank B A",
    broken.LoRALinearWithSwappedInit: "first step moves B only",
    broken.LoRALinearWithRandomB: "zero B leaves the layer unchanged",
    broken.LoRALinearThatUnmergesBySubtraction: "merge == adapter, unmerge exact",
    broken.LoRALinearWithTrainableBase: "base frozen under AdamW",
}


@pytest.mark.parametrize("check", LAYER_CHECKS.values(), ids=LAYER_CHECKS.keys())
def test_lora_linear_passes(check):
    check(LoRALinear)


@pytest.mark.parametrize("broken_class", CAUGHT_BY, ids=lambda c: c.__name__)
def test_broken_lora_is_caught(broken_class):
    with pytest.raises(AssertionError):
        LAYER_CHECKS[CAUGHT_BY[broken_class]](broken_class)


@given(layer_settings())
@settings(max_examples=10)
def test_gradients_match_finite_differences(settings_):
    layer, x = make_layer(LoRALinear, settings_, dtype=np.float64)
    randomise_adapter(layer, settings_[-1])  # nonzero B, so A's gradient is not trivially zero
    inputs = Tensor(x, requires_grad=True)
    assert gradcheck(lambda x_, a, b: layer(x_), inputs, layer.lora_A, layer.lora_B)
    assert layer.base.weight.grad is None  # frozen: backward leaves it alone


# ------------------------------------------------------------------ whole models
def tiny_gpt(seed=0, tie_weights=True):
    manual_seed(seed)
    return GPT(vocab_size=23, context_size=8, embed_dim=16, num_heads=2, num_layers=2, tie_weights=tie_weights)


def token_batch(seed=0):
    return np.random.default_rng(seed).integers(0, 23, (3, 8))


TARGET_CHOICES = [("q_proj", "v_proj"), ("attn.",), ("mlp_up", "mlp_down"), ("proj", "mlp_")]


@given(st.sampled_from(TARGET_CHOICES), st.integers(1, 16), st.sampled_from([1.0, 4.0, 32.0]), st.integers(0, 100))
@settings(max_examples=10)
def test_gpt_with_adapters_matches_the_pretrained_gpt_until_trained(targets, rank, alpha, seed):
    model, ids = tiny_gpt(seed), token_batch(seed)
    with no_grad():
        pretrained_logits = model(ids).data
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    counts_before = model.num_parameters()
    adapted = apply_lora(model, rank, alpha, targets)
    assert adapted and all(any(t in name for t in targets) for name in adapted)
    with no_grad():
        np.testing.assert_array_equal(model(ids).data, pretrained_logits)
    layers = lora_layers(model)
    counts = parameter_counts(model)
    assert counts["trainable"] == sum(rank * (l.base.in_features + l.base.out_features) for l in layers.values())
    assert counts["total"] == counts_before + counts["trainable"]

    optimizer = AdamW(trainable_parameters(model), lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
        optimizer.step()
    for name, p in model.named_parameters():  # every pretrained array, adapted or not, is bit-identical
        original_name = name.replace(".base.", ".")
        if original_name in before:
            np.testing.assert_array_equal(p.data, before[original_name], err_msg=name)
    assert optimizer_state_bytes(optimizer) == adamw_state_bytes(trainable_parameters(model))

    with no_grad():
        adapter_logits = model(ids).data
        merge_lora(model)
        merged_logits = model(ids).data
    assert not np.array_equal(adapter_logits, pretrained_logits)
    np.testing.assert_allclose(merged_logits, adapter_logits, rtol=1e-4, atol=1e-5)
    unmerge_lora(model)
    for name, layer in layers.items():
        np.testing.assert_array_equal(layer.base.weight.data, before[f"{name}.weight"])


def test_any_model_and_the_tied_head():
    manual_seed(0)
    mlp = Sequential(Linear(4, 8), ReLU(), Linear(8, 3))
    assert apply_lora(mlp, 2, 4.0, targets=lambda name, module: module.out_features == 8) == ["0"]
    assert isinstance(mlp.layers[0], LoRALinear) and isinstance(mlp.layers[2], Linear)
    assert not any(p.requires_grad for p in mlp.layers[2].parameters())  # the rest of the model is frozen too

    with pytest.warns(UserWarning, match="lm_head.*token_embedding.weight.*tied"):
        adapted = apply_lora(tiny_gpt(), 2, 4.0, targets=("proj", "lm_head"))
    assert "lm_head" not in adapted and len(adapted) == 8
    assert apply_lora(tiny_gpt(tie_weights=False), 2, 4.0, targets=("lm_head",)) == ["lm_head"]


def test_optimizer_state_is_two_arrays_per_trainable_parameter():
    """Full fine-tuning keeps AdamW state for every weight; LoRA for the adapters only."""
    def state_after_one_step(model):
        optimizer = AdamW(trainable_parameters(model), lr=1e-3)
        ids = token_batch()
        F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
        optimizer.step()
        return optimizer_state_bytes(optimizer)

    full = tiny_gpt()
    assert state_after_one_step(full) == adamw_state_bytes(full.parameters()) == 2 * 4 * full.num_parameters()
    adapted = tiny_gpt()
    apply_lora(adapted, rank=2, alpha=4.0)
    lora_bytes = state_after_one_step(adapted)
    assert lora_bytes == 2 * 4 * parameter_counts(adapted)["trainable"] < state_after_one_step(tiny_gpt()) / 10


@given(st.sampled_from(TARGET_CHOICES), st.integers(1, 8), st.integers(0, 100))
@settings(max_examples=5)
def test_adapters_save_and_load_on_their_own(tmp_path_factory, targets, rank, seed):
    base = tiny_gpt(seed)
    tuned = copy.deepcopy(base)
    apply_lora(tuned, rank, 2.0 * rank, targets)
    for layer in lora_layers(tuned).values():
        randomise_adapter(layer, seed)
    path = save_adapters(tuned, tmp_path_factory.mktemp("adapters") / "task.npz")
    assert set(np.load(path).files) == set(lora_state_dict(tuned)) | {"__metadata__"}  # no base weights in it

    assert load_adapters(base, path) == list(lora_layers(tuned))  # a fresh base model gets the adapters
    ids = token_batch(seed)
    with no_grad():
        np.testing.assert_array_equal(base(ids).data, tuned(ids).data)
    assert parameter_counts(base) == parameter_counts(tuned)


def test_adapters_refuse_another_model(tmp_path):
    tuned = tiny_gpt()
    apply_lora(tuned, 4, 8.0)
    path = save_adapters(tuned, tmp_path / "task.npz")
    manual_seed(0)
    wider = GPT(vocab_size=23, context_size=8, embed_dim=32, num_heads=2, num_layers=2)
    with pytest.raises(ValueError, match=r"load_adapters: .*lora_A: file \(4, 16\) vs model \(4, 32\)"):
        load_adapters(wider, path)
    assert not lora_layers(wider)  # left as it was
    other_rank = tiny_gpt()
    apply_lora(other_rank, 2, 8.0)
    with pytest.raises(ValueError, match="file rank 4, alpha 8 vs model rank 2, alpha 8"):
        load_adapters(other_rank, path)
    merge_lora(tuned)
    with pytest.raises(ValueError, match="merged; unmerge_lora"):
        load_adapters(tuned, path)


def test_misuse_is_a_clear_error():
    layer = LoRALinear(Linear(4, 6), rank=2, alpha=4.0)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    with pytest.raises(ValueError, match=r"rank must be an integer in 1\.\.4"):
        LoRALinear(Linear(4, 6), rank=5, alpha=1.0)
    with pytest.raises(ValueError, match="alpha must be a positive number"):
        LoRALinear(Linear(4, 6), rank=2, alpha=0)
    with pytest.raises(ValueError, match="no Linear layer matches targets"):
        apply_lora(tiny_gpt(), 2, 4.0, targets=("nothing",))
    model = tiny_gpt()
    apply_lora(model, 2, 4.0)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_lora(model, 2, 4.0)
    with pytest.raises(ValueError, match="given a parameter .* that does not require grad"):
        AdamW(model.parameters())  # the frozen base: the fix in the message is trainable_parameters


# ------------------------------------------------------------------ the experiment
def test_lora_experiment_fast_mode():
    from tinygrad_llm.experiments.lora import RANKS, full_vs_lora

    report = full_vs_lora(fast=True)
    results = report["results"]
    pretrained, full = results["pretrained (no fine-tuning)"], results["full fine-tuning"]
    lora = [results[f"LoRA r={rank}"] for rank in RANKS]
    assert full["trainable_parameters"] == full["total_parameters"] == pretrained["total_parameters"]
    per_rank = lora[0]["trainable_parameters"]  # sum of (in + out) over the adapted layers
    assert [row["trainable_parameters"] for row in lora] == [rank * per_rank for rank in RANKS]
    for row in [full, *lora]:
        assert row["optimizer_state_bytes"] == 2 * 4 * row["trainable_parameters"]  # two float32 moments each
        assert row["task_loss"] < pretrained["task_loss"]  # every method learns the dialect
        assert np.isfinite(row["original_loss"]) and 0 <= row["task_accuracy"] <= 1
    assert all(row["optimizer_state_bytes"] < full["optimizer_state_bytes"] for row in lora)
