"""Learning checks for pruning: magnitude masks keep exactly ceil((1 - s) n) weights and those are the largest;
s = 0 changes nothing; global pruning of equal layers is per-layer pruning; the skipped matrices stay whole;
pruned weights stay exactly 0 through AdamW fine-tuning; a structurally pruned GPT computes what the dense
one computes with those neurons and heads zeroed, runs with the KV cache, and has the FLOPs its shapes say.
tests/broken_compression.py keeps the broken variants these checks must catch."""
import copy
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_llm as tgl
from tinygrad_llm.autograd import no_grad
from tinygrad_llm.compression.pruning import (PruningMasks, kept_count, magnitude_mask, masked_training_step,
                                              prune_magnitude, prunable_weights)
from tinygrad_llm.compression.structured_pruning import (choose_structures, head_features, head_importance,
                                                         matmul_flops_per_token, neuron_importance, prune_structured,
                                                         shrink)
from tinygrad_llm.experiments.pruning import sparsity_sweep, trained_gpt
from tinygrad_llm.generation import generate
from tinygrad_llm.nn import GPT, Linear, Sequential
from tinygrad_llm.optim import AdamW
from tinygrad_llm.training import TrainConfig, train_language_model
from tinygrad_llm.training.loop import language_model_loss

import broken_compression as broken

pytestmark = pytest.mark.compression

UNSHRUNK = settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))  # a broken variant fails at once

percent = st.integers(0, 100)
weights = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                     elements=st.integers(-6, 6).map(float))  # few distinct values: ties everywhere


def logits_of(model, ids):
    with no_grad():
        return model(ids).data


def small_gpt(seed, vocab=13, context=8, width=16, heads=2, layers=2, positions="learned", tie=True, bias=True):
    tgl.manual_seed(seed)
    return GPT(vocab, context_size=context, embed_dim=width, num_heads=heads, num_layers=layers, positions=positions,
               tie_weights=tie, bias=bias).eval()


gpt_cases = st.fixed_dictionaries(dict(
    seed=st.integers(0, 1000), heads=st.sampled_from([1, 2, 4]), head_dim=st.sampled_from([2, 4]),
    layers=st.integers(1, 2), positions=st.sampled_from(["learned", "sinusoidal", "rope"]), tie=st.booleans(),
    bias=st.booleans()))


def gpt_from(case):
    return small_gpt(case["seed"], width=case["heads"] * case["head_dim"], heads=case["heads"], layers=case["layers"],
                     positions=case["positions"], tie=case["tie"], bias=case["bias"])


def token_ids(seed, shape=(2, 8), vocab=13):
    return np.random.default_rng(seed).integers(0, vocab, shape)


# ------------------------------------------------------------------ the magnitude mask
def check_magnitude_mask(mask_fn):
    """The mask keeps exactly ceil((1 - s) n) entries (counted in exact fractions), every kept |w| is >= every
    pruned |w|, and among equal magnitudes at the threshold the earlier positions are the kept ones."""
    @given(weights, percent)
    @UNSHRUNK
    def mask_property(weight, percent_pruned):
        mask = mask_fn(weight, percent_pruned / 100)
        assert mask.dtype == bool and mask.shape == weight.shape
        expected = math.ceil((1 - Fraction(percent_pruned, 100)) * weight.size)
        assert mask.sum() == expected, f"kept {mask.sum()} of {weight.size} at s={percent_pruned}%, expected {expected}"
        magnitudes, keep = np.abs(weight).ravel(), mask.ravel()
        if keep.any() and not keep.all():
            threshold = magnitudes[keep].min()
            assert threshold >= magnitudes[~keep].max(), "a pruned weight is larger than a kept one"
            tied_kept = np.flatnonzero(keep & (magnitudes == threshold))
            tied_pruned = np.flatnonzero(~keep & (magnitudes == threshold))
            assert not tied_pruned.size or tied_kept.max() < tied_pruned.min(), "ties must keep the earlier positions"

    mask_property()


def test_the_mask_keeps_exactly_ceil_of_the_largest_weights():
    check_magnitude_mask(magnitude_mask)


@pytest.mark.broken
@pytest.mark.parametrize("bug", [broken.magnitude_mask_pruning_the_largest, broken.magnitude_mask_keeping_floor])
def test_the_mask_check_catches(bug):
    with pytest.raises(AssertionError):
        check_magnitude_mask(bug)


@given(st.integers(1, 10_000), percent)
def test_kept_count_is_exact_despite_floating_point(size, percent_pruned):
    """0.7 * 10 is 7.000000000000001 in floating point; a plain ceil would keep 8."""
    assert kept_count(size, percent_pruned / 100) == math.ceil((1 - Fraction(percent_pruned, 100)) * size)


# ------------------------------------------------------------------ pruning a model
@given(gpt_cases, st.sampled_from(["layer", "global"]))
def test_sparsity_zero_leaves_the_model_bit_identical(case, scope):
    model = gpt_from(case)
    before, ids = model.state_dict(), token_ids(case["seed"])
    expected = logits_of(model, ids)
    masks = prune_magnitude(model, 0.0, scope)
    assert all(mask.all() for mask in masks.masks.values())
    assert all(np.array_equal(before[name], value) for name, value in model.state_dict().items())
    np.testing.assert_array_equal(logits_of(model, ids), expected)


@given(gpt_cases, percent, st.sampled_from(["layer", "global"]))
def test_pruning_touches_only_the_linear_matrices_and_reports_them(case, percent_pruned, scope):
    """Embeddings, a tied LM head, biases and LayerNorms are untouched; an untied LM head is pruned like any
    Linear; the report's counts match the masks and the weights; the overall sparsity is the one asked for."""
    model = gpt_from(case)
    before = model.state_dict()
    masks = prune_magnitude(model, percent_pruned / 100, scope)
    pruned_names = set(masks.masks)
    assert ("lm_head.weight" in pruned_names) == (not case["tie"])
    assert ("lm_head.weight" in masks.skipped) == case["tie"]
    assert "token_embedding.weight" in masks.skipped and not any("embedding" in name for name in pruned_names)
    for name, value in model.state_dict().items():
        if name not in pruned_names:
            np.testing.assert_array_equal(value, before[name], err_msg=f"{name} is not prunable but changed")
    total = sum(mask.size for mask in masks.masks.values())
    if scope == "global":
        assert total - round(masks.overall_sparsity() * total) == math.ceil((1 - Fraction(percent_pruned, 100)) * total)
    for row in masks.report():
        assert row["kept"] == masks.masks[row["layer"]].sum()
        assert row["zero_fraction"] >= row["mask_sparsity"]


@given(st.integers(0, 1000), st.integers(1, 4), st.data())
def test_global_pruning_of_equal_layers_is_per_layer_pruning(seed, layers, data):
    """Layers holding the same values (each in its own order) lose the same weights under one global
    threshold as under a threshold per layer, at every sparsity that keeps a whole number per layer."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(np.arange(1, 4 * 6 + 1)).astype(np.float32) * rng.choice([-1, 1], 4 * 6)
    model = Sequential(*[Linear(6, 4) for _ in range(layers)])
    for layer in model.layers:
        layer.weight.data[...] = rng.permutation(values).reshape(4, 6)
    kept = data.draw(st.integers(0, values.size))
    sparsity = 1 - kept / values.size
    by_layer = prune_magnitude(copy.deepcopy(model), sparsity, "layer").masks
    by_global = prune_magnitude(copy.deepcopy(model), sparsity, "global").masks
    assert by_layer.keys() == by_global.keys()
    for name in by_layer:
        np.testing.assert_array_equal(by_global[name], by_layer[name], err_msg=name)


@given(gpt_cases, percent)
def test_a_global_threshold_ranks_all_layers_together(case, percent_pruned):
    model = gpt_from(case)
    masks = prune_magnitude(model, percent_pruned / 100, "global")
    parameters, _ = prunable_weights(model)
    original = {name: p.data for name, p in prunable_weights(gpt_from(case))[0].items()}
    kept = np.concatenate([np.abs(original[n])[masks.masks[n]] for n in parameters])
    pruned = np.concatenate([np.abs(original[n])[~masks.masks[n]] for n in parameters])
    assert not kept.size or not pruned.size or kept.min() >= pruned.max()


def check_fine_tuning_keeps_pruned_weights_at_zero(training_step):
    """Dense AdamW steps first (so the optimizer carries momentum), then pruning, then masked steps with the
    same optimizer: every pruned weight is exactly 0 after each step, and the kept weights do train."""
    @given(st.integers(0, 1000), st.sampled_from([0.3, 0.5, 0.9]), st.sampled_from(["layer", "global"]))
    @settings(UNSHRUNK, max_examples=6)
    def stays_zero(seed, sparsity, scope):
        model = small_gpt(seed).train()
        ids = token_ids(seed, (2, 8))
        optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        loss = lambda: language_model_loss(model, ids[:, :-1], ids[:, 1:])
        for _ in range(3):
            optimizer.zero_grad()
            loss().backward()
            optimizer.step()
        masks = prune_magnitude(model, sparsity, scope)
        kept_before = {name: p.data[masks.masks[name]].copy() for name, p in masks.parameters.items()}
        for _ in range(3):
            training_step(loss, optimizer, masks, 1.0)
            for name, parameter in masks.parameters.items():
                assert not parameter.data[~masks.masks[name]].any(), f"a pruned weight of {name} came back to life"
        assert any(not np.array_equal(p.data[masks.masks[n]], kept_before[n]) for n, p in masks.parameters.items())

    stays_zero()


def test_pruned_weights_stay_exactly_zero_through_adamw_fine_tuning():
    check_fine_tuning_keeps_pruned_weights_at_zero(masked_training_step)


@pytest.mark.broken
def test_the_fine_tuning_check_catches_masking_only_the_gradients():
    with pytest.raises(AssertionError, match="came back to life"):
        check_fine_tuning_keeps_pruned_weights_at_zero(broken.masked_step_that_only_masks_gradients)


def test_bad_pruning_arguments_get_errors_that_name_the_fix():
    model = small_gpt(0)
    with pytest.raises(ValueError, match=r"prune_magnitude: sparsity .* \[0, 1\]"):
        prune_magnitude(model, 1.5)
    with pytest.raises(ValueError, match="prune_magnitude: scope must be one of"):
        prune_magnitude(model, 0.5, scope="row")
    with pytest.raises(ValueError, match="magnitude_mask: sparsity"):
        magnitude_mask(np.ones(3), -0.1)
    with pytest.raises(ValueError, match="no prunable Linear weight"):
        prune_magnitude(tgl.nn.LayerNorm(4), 0.5)
    assert isinstance(prune_magnitude(model, 0.5), PruningMasks)


# ------------------------------------------------------------------ structured pruning
def zeroed_copy(model, plan):
    """The dense model with the plan's removed neurons and heads switched off by zeros: a removed neuron's
    incoming row and bias (its pre-activation is then 0, and GELU(0) = 0), a removed head's value rows and
    biases (its output is then 0 whatever it attends to)."""
    zeroed = copy.deepcopy(model)
    for block, neurons, heads in zip(zeroed.blocks, plan.neurons, plan.heads):
        removed = np.setdiff1d(np.arange(block.mlp_up.out_features), neurons)
        block.mlp_up.weight.data[removed] = 0
        removed_features = np.setdiff1d(np.arange(block.attn.embed_dim), head_features(heads, block.attn.head_dim))
        block.attn.v_proj.weight.data[removed_features] = 0
        for layer, rows in ((block.mlp_up, removed), (block.attn.v_proj, removed_features)):
            if layer.bias is not None:
                layer.bias.data[rows] = 0
    return zeroed


fractions = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])


@given(gpt_cases, fractions, fractions)
def test_removing_neurons_and_heads_computes_what_zeroing_them_computes(case, neuron_sparsity, head_sparsity):
    model = gpt_from(case)
    before = model.state_dict()
    smaller, plan = prune_structured(model, neuron_sparsity, head_sparsity)
    ids = token_ids(case["seed"], (2, 8))
    np.testing.assert_allclose(logits_of(smaller, ids), logits_of(zeroed_copy(model, plan), ids), rtol=1e-5, atol=1e-5)
    for block, neurons, heads in zip(smaller.blocks, plan.neurons, plan.heads):
        assert block.mlp_up.weight.shape == (len(neurons), block.attn.embed_dim)
        assert block.mlp_down.weight.shape == (block.attn.embed_dim, len(neurons))
        assert block.attn.num_heads == len(heads) and block.attn.q_proj.weight.shape[0] == len(heads) * block.attn.head_dim
        assert block.attn.out_proj.weight.shape[1] == len(heads) * block.attn.head_dim
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items()), "the dense model changed"


@given(gpt_cases, fractions, fractions)
def test_the_pruned_gpt_decodes_with_the_kv_cache(case, neuron_sparsity, head_sparsity):
    """Token by token through the cache gives the logits of one pass over the whole window, and greedy
    generation with and without the cache agrees."""
    smaller, _ = prune_structured(gpt_from(case), neuron_sparsity, head_sparsity)
    ids = token_ids(case["seed"], (2, 8))
    cache = smaller.new_cache(2)
    with no_grad():
        stepped = np.concatenate([smaller(ids[:, t:t + 1], cache=cache).data for t in range(ids.shape[1])], axis=1)
    np.testing.assert_allclose(stepped, logits_of(smaller, ids), rtol=1e-5, atol=1e-5)
    prompt = ids[0, :3]
    np.testing.assert_array_equal(generate(smaller, prompt, 6, temperature=0.0, use_cache=True),
                                  generate(smaller, prompt, 6, temperature=0.0, use_cache=False))


@given(gpt_cases, fractions, fractions)
def test_the_least_important_structures_go_and_every_block_keeps_one(case, neuron_sparsity, head_sparsity):
    model = gpt_from(case)
    plan = choose_structures(model, neuron_sparsity, head_sparsity)
    for block, neurons, heads in zip(model.blocks, plan.neurons, plan.heads):
        for scores, kept, fraction in ((neuron_importance(block), neurons, neuron_sparsity),
                                       (head_importance(block.attn), heads, head_sparsity)):
            assert len(kept) == max(1, kept_count(scores.size, fraction))
            removed = np.setdiff1d(np.arange(scores.size), kept)
            assert not removed.size or scores[kept].min() >= scores[removed].max()


@given(gpt_cases, fractions)
def test_flops_follow_the_shapes(case, fraction):
    """The dense GPT's count equals GPT.flops_per_token; a pruned one loses 2 FLOPs per removed weight and
    4 T per removed head feature."""
    model = gpt_from(case)
    config = model.config
    assert matmul_flops_per_token(model, config["context_size"]) == GPT.flops_per_token(**config)
    smaller, _ = prune_structured(model, fraction, fraction)
    removed_weights = model.num_parameters() - smaller.num_parameters()
    removed_biases = sum(b1.mlp_up.out_features - b2.mlp_up.out_features +
                         3 * (b1.attn.num_heads - b2.attn.num_heads) * b1.attn.head_dim
                         for b1, b2 in zip(model.blocks, smaller.blocks)) if case["bias"] else 0
    removed_head_features = sum((b1.attn.num_heads - b2.attn.num_heads) * b1.attn.head_dim
                                for b1, b2 in zip(model.blocks, smaller.blocks))
    assert (matmul_flops_per_token(model, 8) - matmul_flops_per_token(smaller, 8)
            == 2 * (removed_weights - removed_biases) + 4 * 8 * removed_head_features)


def test_a_plan_that_does_not_fit_is_refused():
    model = small_gpt(0)
    plan = choose_structures(model, 0.5, 0.5)
    with pytest.raises(ValueError, match="shrink: the plan covers"):
        shrink(small_gpt(0, layers=1), plan)
    plan.heads[0] = np.array([], dtype=int)
    with pytest.raises(ValueError, match="shrink: block 0 keeps heads"):
        shrink(model, plan)
    with pytest.raises(TypeError, match="choose_structures: expected a GPT"):
        choose_structures(Linear(3, 4))


# ------------------------------------------------------------------ the experiment, on a small trained GPT
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = TrainConfig(model="gpt", max_chars=8000, context_size=16, batch_size=8, embed_dim=16, num_layers=1,
                         num_heads=2, steps=80, warmup_steps=5, eval_every=80, eval_batches=2, lr=3e-3)
    run = train_language_model(config, out_dir=tmp_path_factory.mktemp("gpt"), progress=False)
    return {"model": run.model.eval(), "config": config, "train_ids": run.train_ids, "val_ids": run.val_ids[:1500],
            "checkpoint": run.checkpoint}


def test_the_experiment_reads_a_checkpoint_with_its_own_data_split(trained):
    loaded = trained_gpt(checkpoint=trained["checkpoint"])
    np.testing.assert_array_equal(loaded["val_ids"][:1500], trained["val_ids"])
    ids = trained["val_ids"][:32].reshape(2, 16)
    np.testing.assert_array_equal(logits_of(loaded["model"], ids), logits_of(trained["model"], ids))


def test_the_sparsity_sweep_starts_at_the_dense_model_and_keeps_its_masks(trained):
    result = sparsity_sweep(fast=True, trained=trained, fine_tune_steps=3)
    for scope in ("layer", "global"):
        assert result["perplexity"][scope][0] == result["dense_perplexity"]
        assert result["perplexity"][scope][-1] > result["dense_perplexity"]  # 95% of the matrices gone
        for sparsity, zeros in zip(result["sparsities"], result["zero_fraction_after_fine_tune"][scope]):
            assert zeros >= sparsity - 0.01  # ceil keeps at most one extra weight per layer
    assert "lm_head.weight" in result["skipped"]
