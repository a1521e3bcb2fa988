"""Learning checks for activation patching on the induction task (Q32).

- The task: every token of a row is distinct but for the repeated prefix, so the predictable positions are
  exactly the second copy after its first token, and the written-out induction rule is right on all of them;
  the corrupted twin differs only in the first copy and leaves nothing to copy.
- The attention-only model: its explicit attention is the library's fused MultiHeadAttention with the same
  weights; its patterns are causal rows summing to 1.
- Patching: a run patched with its own activations is bit-identical; patching the embeddings and every head
  (or the last residual stream) from the corrupted run IS the corrupted run; a patch at position p leaves
  the logits before p untouched; zero-ablating a head equals deleting its columns of out_proj.
- tests/broken_activation_patching.py: a duplicate-token score passed off as the induction score, a head
  patch that replaces the whole layer, and an accuracy read one position late; the checks catch each.
- The experiment: the model learns to copy the repeated half only, and patching its induction heads (all
  of them: they back each other up), or the one layer-0 head they read, breaks copying.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import broken_activation_patching as broken
import tinygrad_llm as tgl
from tinygrad_llm.experiments.induction_heads import experiment_config, induction_heads
from tinygrad_llm.interpretability.activation_patching import (
    ablate_each_head, ablation_source, attention_patterns, copying_accuracy, copying_log_probability, head_outputs,
    induction_scores, patch_each_head, patch_heads, patch_residual, previous_token_scores, residual_streams)
from tinygrad_llm.interpretability.activations import replace_activation
from tinygrad_llm.interpretability.attention_only_model import AttentionOnlyTransformer
from tinygrad_llm.interpretability.induction_task import induction_batch, induction_rule, previous_occurrence
from tinygrad_llm.nn.attention import MultiHeadAttention
from tinygrad_llm.tensor import Tensor

pytestmark = pytest.mark.interpretability


@st.composite
def tasks(draw):
    """An induction batch of drawn sizes, its prefix length and its vocabulary size."""
    prefix_length, filler_tokens = draw(st.integers(2, 6)), draw(st.integers(0, 4))
    vocab_size = 2 * prefix_length + filler_tokens + draw(st.integers(0, 5))
    batch = induction_batch(draw(st.integers(1, 4)), vocab_size, prefix_length, filler_tokens,
                            np.random.default_rng(draw(st.integers(0, 2**31 - 1))))
    return batch, prefix_length, vocab_size


@st.composite
def models_and_batches(draw):
    """A small float64 attention-only model with N(0, 0.5) added to every parameter (so every head matters),
    and an induction batch for it."""
    batch, _, vocab_size = draw(tasks())
    num_heads = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    tgl.manual_seed(seed)
    model = AttentionOnlyTransformer(vocab_size, batch.ids.shape[1],
                                     embed_dim=num_heads * draw(st.sampled_from([2, 4])), num_heads=num_heads,
                                     num_layers=draw(st.integers(1, 3))).double().eval()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += rng.normal(0, 0.5, p.shape)
    return model, batch


def logits_of(model, ids):
    with tgl.no_grad():
        return model(ids).numpy()


def all_heads(model):
    return [(layer, head) for layer in range(model.num_layers) for head in range(model.num_heads)]


# ---------------------------------------------------------------- the task
@given(tasks())
def test_the_predictable_tokens_are_the_second_copy_after_its_first_token(task):
    batch, prefix_length, _ = task
    earlier = previous_occurrence(batch.ids)
    for row, predictable, seen_before in zip(batch.ids, batch.predictable, earlier >= 0):
        assert len(set(row.tolist())) == len(row) - prefix_length  # only the prefix repeats
        second_copy = np.flatnonzero(seen_before)
        assert np.array_equal(second_copy, second_copy[0] + np.arange(prefix_length))  # contiguous, n tokens
        expected = np.zeros_like(predictable)
        expected[second_copy[1:]] = True
        assert np.array_equal(predictable, expected)


@given(tasks())
def test_the_induction_rule_is_right_on_every_predictable_token_and_the_corruption_leaves_nothing_to_copy(task):
    batch, prefix_length, _ = task
    predictions = induction_rule(batch.ids)
    assert np.array_equal(predictions[batch.predictable], batch.ids[batch.predictable])
    assert (induction_rule(batch.corrupted) == -1).all()
    changed = batch.corrupted != batch.ids
    assert (changed.sum(axis=1) == prefix_length).all()
    for row, clean, corrupted in zip(changed, batch.ids, batch.corrupted):
        assert not set(corrupted[row]) & set(clean)  # the replacement tokens are used nowhere else


def test_a_vocabulary_too_small_for_distinct_tokens_is_refused():
    with pytest.raises(ValueError, match="vocab_size >= 2 \\* prefix_length \\+ filler_tokens = 14"):
        induction_batch(2, 13, 5, 4, np.random.default_rng(0))


# ---------------------------------------------------------------- the model
@given(models_and_batches())
def test_attention_patterns_are_causal_rows_that_sum_to_one(model_and_batch):
    model, batch = model_and_batch
    patterns = attention_patterns(model, batch.ids)
    time = batch.ids.shape[1]
    assert patterns.shape == (model.num_layers, len(batch.ids), model.num_heads, time, time)
    np.testing.assert_allclose(patterns.sum(axis=-1), 1, atol=1e-12)
    assert (patterns[..., np.triu(np.ones((time, time), dtype=bool), k=1)] == 0).all()


@given(models_and_batches())
def test_the_inspectable_attention_is_the_fused_multi_head_attention(model_and_batch):
    model, batch = model_and_batch
    attention = model.blocks[0].attn
    fused = MultiHeadAttention(attention.embed_dim, attention.num_heads).double()
    fused.load_state_dict(attention.state_dict())
    x = Tensor(np.random.default_rng(0).normal(size=(2, batch.ids.shape[1], attention.embed_dim)))
    with tgl.no_grad():
        np.testing.assert_allclose(attention(x).numpy(), fused(x).numpy(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- patching
@given(models_and_batches())
def test_patching_a_run_with_its_own_activations_changes_nothing(model_and_batch):
    model, batch = model_and_batch
    clean = logits_of(model, batch.ids)
    assert np.array_equal(patch_heads(model, batch.ids, all_heads(model), head_outputs(model, batch.ids)), clean)
    streams = residual_streams(model, batch.ids)
    for index in range(model.num_layers + 1):
        assert np.array_equal(patch_residual(model, batch.ids, streams, index), clean)


@given(models_and_batches())
def test_patching_the_embeddings_and_every_head_from_the_corrupted_run_is_the_corrupted_run(model_and_batch):
    """The residual stream is the embeddings plus every head's (projected) output: replace all of them and
    nothing of the clean input is left. The last residual stream alone carries everything too."""
    model, batch = model_and_batch
    corrupted = logits_of(model, batch.corrupted)
    corrupted_streams = residual_streams(model, batch.corrupted)
    with replace_activation(model, "embeddings", corrupted_streams[0]):
        everything = patch_heads(model, batch.ids, all_heads(model), head_outputs(model, batch.corrupted))
    assert np.array_equal(everything, corrupted)
    assert np.array_equal(patch_residual(model, batch.ids, corrupted_streams, model.num_layers), corrupted)


@given(models_and_batches(), st.data())
def test_a_patch_at_one_position_leaves_every_earlier_position_untouched(model_and_batch, data):
    model, batch = model_and_batch
    time = batch.ids.shape[1]
    position = data.draw(st.integers(0, time - 1))
    clean = logits_of(model, batch.ids)
    corrupted_streams = residual_streams(model, batch.corrupted)
    index = data.draw(st.integers(0, model.num_layers))
    patched = patch_residual(model, batch.ids, corrupted_streams, index, positions=[position])
    assert np.array_equal(patched[:, :position], clean[:, :position])
    head = data.draw(st.sampled_from(all_heads(model)))
    patched = patch_heads(model, batch.ids, [head], head_outputs(model, batch.corrupted), positions=[position])
    assert np.array_equal(patched[:, :position], clean[:, :position])


@given(models_and_batches())
def test_head_tables_are_zero_when_the_source_is_the_run_itself(model_and_batch):
    """Patching each head from the same input, or mean-ablating it over a batch of one repeated row (the mean
    is the row itself), changes no head's output, so no entry of the tables moves the metric."""
    model, batch = model_and_batch
    table = patch_each_head(model, batch.ids, batch.ids, batch.predictable, metric=copying_log_probability)
    assert table.shape == (model.num_layers, model.num_heads) and (table == 0).all()
    repeated_ids, repeated_predictable = (np.repeat(array[:1], 3, axis=0) for array in (batch.ids, batch.predictable))
    np.testing.assert_allclose(ablate_each_head(model, repeated_ids, repeated_predictable, "mean",
                                                metric=copying_log_probability), 0, atol=1e-9)


def check_zero_ablation(patch, model, batch, layer, head):
    """A zero-ablated head contributes nothing: the same as deleting its columns of out_proj."""
    ablated = patch(model, batch.ids, [(layer, head)], ablation_source(model, batch.ids, "zero"))
    attention = model.blocks[layer].attn
    columns = slice(head * attention.head_dim, (head + 1) * attention.head_dim)
    saved = attention.out_proj.weight.data.copy()
    attention.out_proj.weight.data[:, columns] = 0
    try:
        np.testing.assert_allclose(ablated, logits_of(model, batch.ids), rtol=1e-9, atol=1e-9)
    finally:
        attention.out_proj.weight.data[...] = saved


@given(models_and_batches(), st.data())
def test_zero_ablating_a_head_is_deleting_its_columns_of_out_proj(model_and_batch, data):
    model, batch = model_and_batch
    check_zero_ablation(patch_heads, model, batch, *data.draw(st.sampled_from(all_heads(model))))


def fixed_model_and_batch():
    """One small noisy float64 model with two heads per layer and a batch for it, for the broken variants."""
    tgl.manual_seed(5)
    batch = induction_batch(3, 12, 3, 2, np.random.default_rng(5))
    model = AttentionOnlyTransformer(12, batch.ids.shape[1], embed_dim=8, num_heads=2).double().eval()
    rng = np.random.default_rng(5)
    for p in model.parameters():
        p.data += rng.normal(0, 0.5, p.shape)
    return model, batch


def test_bad_heads_methods_and_inputs_are_clear_errors():
    model = AttentionOnlyTransformer(10, 6, embed_dim=8, num_heads=2)
    ids = np.zeros((1, 6), dtype=np.int64)
    with pytest.raises(ValueError, match="head \\(2, 0\\) does not exist; the model has 2 layers of 2 heads"):
        patch_heads(model, ids, [(2, 0)], head_outputs(model, ids))
    with pytest.raises(ValueError, match="method must be one of"):
        ablation_source(model, ids, "random")
    with pytest.raises(ValueError, match="T <= context_size = 6, got shape \\(1, 7\\)"):
        model(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(ValueError, match="causal attention without padding only"):
        model.blocks[0].attn(Tensor(np.zeros((1, 6, 8))), causal=False)


# ---------------------------------------------------------------- scores and metrics
def check_induction_scores(scores, batch):
    """A pure previous-token head has previous-token score 1; a pure induction head (attending to the token
    after the previous occurrence of the current one, and to itself where there is none) has induction
    score 1."""
    rows, time = batch.ids.shape
    previous = np.zeros((rows, time, time))
    previous[:, 0, 0] = 1
    previous[:, np.arange(1, time), np.arange(time - 1)] = 1
    earlier = previous_occurrence(batch.ids)
    copying = np.zeros((rows, time, time))
    row, query = np.indices((rows, time))
    copying[row, query, np.where(earlier >= 0, earlier + 1, query)] = 1
    patterns = np.stack([previous, copying], axis=1)[None]  # (1 layer, B, 2 heads, T, T)
    np.testing.assert_allclose(previous_token_scores(patterns)[0, 0], 1)
    np.testing.assert_allclose(scores(patterns, batch.ids)[0, 1], 1)


@given(tasks())
def test_planted_heads_score_one_on_their_own_score(task):
    check_induction_scores(induction_scores, task[0])


def check_copying_metrics(accuracy, batch, vocab_size):
    """Logits that follow the induction rule score full accuracy and a log-probability near 0."""
    rule = induction_rule(batch.ids)
    logits = np.zeros(batch.ids.shape + (vocab_size,))
    row, position = np.nonzero(rule[:, 1:] >= 0)
    logits[row, position, rule[row, position + 1]] = 10.0  # logits at p - 1 predict token p
    assert accuracy(logits, batch.ids, batch.predictable) == 1
    assert -1e-3 < copying_log_probability(logits, batch.ids, batch.predictable) <= 0


@given(tasks())
def test_a_model_that_follows_the_induction_rule_scores_full_accuracy(task):
    batch, _, vocab_size = task
    check_copying_metrics(copying_accuracy, batch, vocab_size)


@pytest.mark.parametrize("check, broken_piece", [
    (check_induction_scores, broken.induction_scores_on_the_repeated_token),
    (check_zero_ablation, broken.patch_heads_that_patches_the_whole_layer),
    (check_copying_metrics, broken.copying_accuracy_without_the_shift),
])
def test_the_checks_catch_broken_patching_pieces(check, broken_piece):
    model, batch = fixed_model_and_batch()
    arguments = {check_induction_scores: (batch,), check_zero_ablation: (model, batch, 1, 0),
                 check_copying_metrics: (batch, model.vocab_size)}[check]
    with pytest.raises(AssertionError):
        check(broken_piece, *arguments)


# ---------------------------------------------------------------- the experiment
def test_the_model_learns_to_copy_and_patching_its_induction_circuit_breaks_copying():
    # one test, so that the model is trained once even when xdist spreads a module's tests over workers
    experiment = induction_heads(fast=True, seed=0, eval_rows=128)
    # it learns to copy the repeated half only
    assert experiment["final_loss"] < experiment["first_loss"]
    assert experiment["repeated_half_accuracy"] > 0.9
    assert experiment["unpredictable_accuracy"] < 0.15
    assert experiment["corrupted_accuracy"] < 0.15
    # patching the induction heads, or the layer-0 head they read, breaks copying
    clean = experiment["repeated_half_accuracy"]
    layer, head = experiment["induction_head"]
    assert layer == 1 and experiment["induction_scores"][1][head] > 0.5
    assert experiment["induction_heads_patched_accuracy"] < clean - 0.5
    drops = np.array(experiment["patch_accuracy_drop"])
    assert drops.shape == (2, experiment["config"]["num_heads"])
    assert drops[experiment["layer_0_head_patching_matters_most"]] == drops[0].max() > 0.4


def test_the_experiment_settings_can_be_overridden_and_unknown_ones_are_refused():
    assert experiment_config(fast=True, steps=40, batch_size=8) == {**experiment_config(fast=True), "steps": 40,
                                                                    "batch_size": 8}
    with pytest.raises(TypeError, match="unknown settings"):
        experiment_config(fast=True, step=40)
