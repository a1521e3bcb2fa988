"""Activation checkpointing and gradient accumulation (Q23, M44) held to the plain computation they replace.

- checkpoint(fn, *inputs) gives gradients BIT-IDENTICAL to fn(*inputs) (inputs and parameters, dropout on),
  and leaves the library's generator where the plain run leaves it; for GPT(checkpoint_blocks=True) too.
- It frees memory: the peak of a training step, measured with tracemalloc, is lower.
- Accumulating k micro-batches gives the full batch's gradient (float64), uneven micro-batches and padding
  included, and peak memory falls with the micro-batch size (it does not when the loop holds on to the
  previous micro-batch's loss, and with it that micro-batch's whole graph).
The broken variants (tests/broken_activation_checkpointing.py, tests/broken_gradient_accumulation.py) prove the
checks bite.
"""
from functools import partial

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
import tinygrad_llm.activation_checkpointing as activation_checkpointing
from tinygrad_llm import nn
from tinygrad_llm.experiments import activation_checkpointing as experiment
from tinygrad_llm.nn import functional as F
from tinygrad_llm.training import TrainConfig, build_model
from tinygrad_llm.training.gradient_accumulation import accumulate_gradients
from tinygrad_llm.training.model_factory import rebuild_model

import broken_activation_checkpointing as broken_checkpointing
import broken_gradient_accumulation as broken_accumulation

pytestmark = pytest.mark.scaling

SEEDS = st.integers(0, 2**16)
DROPOUTS = st.sampled_from([0.0, 0.2, 0.5])


def gradients(module) -> dict:
    return {name: p.grad for name, p in module.named_parameters()}


def assert_bit_identical(plain: dict, checkpointed: dict, what: str):
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        if plain[name] is None:
            assert checkpointed[name] is None, f"{what}: {name} got a gradient only with checkpointing"
            continue
        assert np.array_equal(plain[name], checkpointed[name]), (
            f"{what}: the gradient of {name} differs with checkpointing, max |difference| "
            f"{np.abs(plain[name] - checkpointed[name]).max():.3g}")


# ------------------------------------------------------------------ the checks (run on the library and on bugs)
def check_checkpointed_gpt_is_exact():
    """GPT(checkpoint_blocks=True): the same loss, bit-identical gradients, and the generator left where the
    plain model leaves it (the next draw is the same), for drawn sizes, positions and dropout."""
    @given(num_layers=st.integers(1, 4), num_heads=st.integers(1, 2), head_dim=st.integers(1, 4),
           batch=st.integers(1, 3), time=st.integers(1, 6), dropout=DROPOUTS,
           positions=st.sampled_from(nn.gpt.POSITION_KINDS), seed=SEEDS)
    def run(num_layers, num_heads, head_dim, batch, time, dropout, positions, seed):
        ids = np.random.default_rng(seed).integers(0, 7, (batch, time + 1))
        results = {}
        for checkpoint_blocks in (False, True):
            tgl.manual_seed(seed)
            model = nn.GPT(7, context_size=6, embed_dim=2 * num_heads * head_dim, num_heads=num_heads,
                           num_layers=num_layers, dropout=dropout, positions=positions,
                           checkpoint_blocks=checkpoint_blocks).train()
            loss = F.cross_entropy(model(ids[:, :-1]), ids[:, 1:])
            loss.backward()
            results[checkpoint_blocks] = (loss.item(), gradients(model), tgl.random.generator().random())
        (plain_loss, plain_grads, plain_next), (loss, grads, next_draw) = results[False], results[True]
        assert loss == plain_loss
        assert_bit_identical(plain_grads, grads, "GPT(checkpoint_blocks=True)")
        assert next_draw == plain_next, "checkpointing moved the library's generator: later random draws change"

    run()


def check_checkpoint_with_several_inputs():
    """fn of two inputs (one used twice inside, one not needing a gradient) with dropout and parameters."""
    @given(rows=st.integers(1, 4), width=st.integers(1, 5), p=DROPOUTS, b_requires_grad=st.booleans(), seed=SEEDS)
    def run(rows, width, p, b_requires_grad, seed):
        rng = np.random.default_rng(seed)
        linear = nn.Linear(width, width).double()
        a_data, b_data = rng.standard_normal((rows, width)), rng.standard_normal((rows, width))

        def fn(a, b):
            return F.dropout(linear(a) * b.tanh() + a, p) * a

        results = []
        for wrap in (lambda f, *xs: f(*xs), activation_checkpointing.checkpoint):
            linear.zero_grad()
            a, b = tgl.tensor(a_data, requires_grad=True), tgl.tensor(b_data, requires_grad=b_requires_grad)
            tgl.manual_seed(seed)
            wrap(fn, a, b).sum().backward()
            results.append({"a": a.grad, "b": b.grad, **gradients(linear)})
        assert_bit_identical(*results, "checkpoint(fn, a, b)")

    run()


# ------------------------------------------------------------------ the library passes them
def test_checkpointed_gpt_gradients_are_bit_identical():
    check_checkpointed_gpt_is_exact()


def test_checkpoint_of_several_inputs_is_bit_identical():
    check_checkpoint_with_several_inputs()


@given(num_blocks=st.integers(2, 4), time=st.integers(1, 5), dropout=DROPOUTS, seed=SEEDS)
def test_nested_checkpoints_are_bit_identical(num_blocks, time, dropout, seed):
    """A checkpointed function that itself checkpoints some of its blocks (recomputation inside recomputation)."""
    tgl.manual_seed(seed)
    blocks = [nn.TransformerBlock(4, 2, dropout=dropout) for _ in range(num_blocks)]
    x_data = np.random.default_rng(seed).standard_normal((2, time, 4)).astype(np.float32)

    def stack(x, checkpoint_inner):
        for block in blocks:
            x = activation_checkpointing.checkpoint(block, x) if checkpoint_inner else block(x)
        return x

    results = []
    for nested in (False, True):
        for block in blocks:
            block.zero_grad()
        x = tgl.tensor(x_data, requires_grad=True)
        tgl.manual_seed(seed + 1)
        if nested:
            out = activation_checkpointing.checkpoint(partial(stack, checkpoint_inner=True), x)
        else:
            out = stack(x, checkpoint_inner=False)
        (out * out).sum().backward()
        results.append({"x": x.grad, **{f"{i}.{k}": g for i, b in enumerate(blocks) for k, g in gradients(b).items()}})
    assert_bit_identical(*results, "nested checkpoints")


def test_parameters_get_gradients_when_no_input_needs_one():
    """The output needs a gradient because of the parameters inside fn, which checkpoint cannot see from outside."""
    linear = nn.Linear(3, 2)
    x = tgl.randn(4, 3)
    linear(x).sum().backward()
    expected = gradients(linear)
    linear.zero_grad()
    activation_checkpointing.checkpoint(linear, x).sum().backward()
    assert_bit_identical(expected, gradients(linear), "checkpoint(linear, x) with x constant")


def test_under_no_grad_it_is_a_plain_call():
    linear = nn.Linear(3, 2)
    x = tgl.randn(4, 3, requires_grad=True)
    with tgl.no_grad():
        out = activation_checkpointing.checkpoint(linear, x)
    assert not out.requires_grad and np.array_equal(out.data, linear(x).data)


def test_bad_inputs_and_outputs_are_explained():
    with pytest.raises(TypeError, match="checkpoint: input 1 is a ndarray.*functools.partial"):
        activation_checkpointing.checkpoint(lambda a, b: a, tgl.randn(2), np.ones(2))
    with pytest.raises(TypeError, match="checkpoint: fn must return one floating-point Tensor"):
        activation_checkpointing.checkpoint(lambda a: (a, a), tgl.randn(2, requires_grad=True))


def test_cached_decoding_skips_checkpointing():
    """With a KV cache (generation) the blocks run plainly: a recomputation would append the keys twice."""
    ids = np.random.default_rng(0).integers(0, 7, (2, 5))
    logits = []
    for checkpoint_blocks in (False, True):
        tgl.manual_seed(0)
        model = nn.GPT(7, context_size=8, embed_dim=8, num_heads=2, num_layers=2, checkpoint_blocks=checkpoint_blocks)
        cache = model.new_cache(2)
        logits.append(np.concatenate([model(ids[:, :3], cache=cache).data, model(ids[:, 3:], cache=cache).data], 1))
    assert np.array_equal(*logits)


def test_checkpoint_blocks_is_a_config_field_that_rebuilds_the_model():
    config = TrainConfig(checkpoint_blocks=True, embed_dim=8, num_heads=2, num_layers=2, context_size=4)
    model = build_model(config, vocab_size=7)
    assert model.checkpoint_blocks and model.config["checkpoint_blocks"]
    assert rebuild_model("GPT", model.config).checkpoint_blocks
    assert nn.GPT.parameter_count(**model.config) == model.num_parameters() == nn.GPT(7, 4, 8, 2, 2).num_parameters()
    assert nn.GPT.flops_per_token(**model.config) == nn.GPT.flops_per_token(7, 4, 8, 2, 2)


@given(num_layers=st.integers(3, 5), batch=st.integers(2, 4))
def test_checkpointing_lowers_the_peak_memory_of_a_training_step(num_layers, batch):
    inputs, targets = experiment._windows(experiment.FAST_SHAPE, batch, seed=0)
    peaks = [experiment.peak_memory(experiment._training_step(
        experiment._model(experiment.FAST_SHAPE, num_layers, checkpoint_blocks, seed=0), inputs, targets))
        for checkpoint_blocks in (False, True)]
    assert peaks[1] < peaks[0], f"peak with checkpointing {peaks[1]} B is not below the plain {peaks[0]} B"


# ------------------------------------------------------------------ gradient accumulation
def check_gradient_accumulation(accumulate):
    """Micro-batches of any size (the last one shorter) with padding anywhere give the full batch's gradient."""
    @given(batch=st.integers(2, 6), micro_batch_size=st.integers(1, 6), time=st.integers(1, 4),
           padding=st.floats(0, 0.6), seed=SEEDS)
    def run(batch, micro_batch_size, time, padding, seed):
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, 7, (batch, time + 1))
        inputs, targets = ids[:, :-1], ids[:, 1:].copy()
        targets[rng.random(targets.shape) < padding] = -100
        targets[0, 0] = ids[0, 1]  # at least one counted token
        tgl.manual_seed(seed)
        model = nn.GPT(7, context_size=4, embed_dim=4, num_heads=2, num_layers=1).double()
        F.cross_entropy(model(inputs), targets, ignore_index=-100).backward()
        full_batch = gradients(model)
        model.zero_grad()
        accumulate(model, inputs, targets, micro_batch_size, ignore_index=-100)
        for name, grad in gradients(model).items():
            np.testing.assert_allclose(grad, full_batch[name], rtol=1e-9, atol=1e-12,
                                       err_msg=f"accumulated gradient of {name} != the full batch's")

    run()


# Activations dominate this GPT's memory (context 32 against width 32), so they show in the peak.
ACTIVATION_HEAVY = dict(vocab_size=65, context_size=32, embed_dim=32, num_heads=4)


def check_accumulation_memory_follows_the_micro_batch(accumulate):
    """Halving the micro-batch halves the activations alive at once: the peak falls by well over a quarter
    (measured: to about 0.6 of it; holding the previous micro-batch's graph keeps it near 0.96)."""
    model = experiment._model(ACTIVATION_HEAVY, num_layers=4, checkpoint_blocks=False, seed=0)
    inputs, targets = experiment._windows(ACTIVATION_HEAVY, batch_size=8, seed=0)

    def step(micro_batch_size):
        model.zero_grad()
        accumulate(model, inputs, targets, micro_batch_size)

    peaks = [experiment.peak_memory(partial(step, size)) for size in (8, 4, 2)]
    for larger, smaller in zip(peaks, peaks[1:]):
        assert smaller < 0.75 * larger, f"peak memory for micro-batches of 8, 4, 2 windows: {peaks} bytes"


def test_accumulated_gradients_equal_the_full_batch_gradient():
    check_gradient_accumulation(accumulate_gradients)


def test_accumulation_peak_memory_follows_the_micro_batch():
    check_accumulation_memory_follows_the_micro_batch(accumulate_gradients)


def test_accumulation_of_padding_only_is_explained():
    model = nn.GPT(7, context_size=4, embed_dim=4, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="accumulate_gradients: every target equals ignore_index"):
        accumulate_gradients(model, np.zeros((2, 3), int), np.full((2, 3), -100), 1)


def test_fast_sweeps_show_the_trade():
    """The experiments in fast mode: identical gradients and less memory with checkpointing; accumulated
    gradients equal up to rounding, and each smaller micro-batch a lower peak (which holding on to the previous
    micro-batch's loss tensor, and so its graph, would break)."""
    rows = experiment.checkpointing_sweep(fast=True)["rows"]
    assert all(row["gradients_identical"] for row in rows)
    assert all(row["memory_ratio"] < 1 for row in rows if row["num_layers"] >= 4)
    accumulation = experiment.accumulation_sweep(fast=True)["rows"]
    assert [row["micro_batch_size"] * row["micro_batches"] for row in accumulation] == [8] * len(accumulation)
    assert all(row["relative_difference"] < 1e-12 for row in accumulation)
    peaks = [row["peak_bytes"] for row in accumulation]  # micro-batch sizes 8, 4, 2, 1
    assert all(smaller < larger for larger, smaller in zip(peaks, peaks[1:])), f"peaks {peaks} do not fall"


# ------------------------------------------------------------------ the broken variants are caught
@pytest.fixture
def without_shrinking():
    """A broken variant fails on nearly every example. Shrinking the failure to a minimal one costs minutes of
    GPT passes (and can report several failures at once), and the proof needs only that it fails."""
    previous = settings.get_current_profile_name()
    settings.register_profile("scaling-no-shrink", parent=settings.get_profile(previous),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("scaling-no-shrink")
    yield
    settings.load_profile(previous)


@pytest.mark.broken
@pytest.mark.usefixtures("without_shrinking")
@pytest.mark.parametrize("replay", [broken_checkpointing.random_state_not_replayed,
                                    broken_checkpointing.random_state_replayed_but_not_restored])
def test_bit_identity_check_catches_broken_random_state(monkeypatch, replay):
    monkeypatch.setattr(activation_checkpointing, "replayed_random_state", replay)
    with pytest.raises(AssertionError):
        check_checkpointed_gpt_is_exact()


@pytest.mark.broken
@pytest.mark.usefixtures("without_shrinking")
@pytest.mark.parametrize("accumulate", [broken_accumulation.accumulate_gradients_not_divided,
                                        broken_accumulation.accumulate_gradients_divided_by_micro_batch_count,
                                        broken_accumulation.accumulate_gradients_divided_by_one_micro_batch_tokens])
def test_accumulation_check_catches_wrong_divisors(accumulate):
    with pytest.raises(AssertionError):
        check_gradient_accumulation(accumulate)


@pytest.mark.broken
def test_memory_check_catches_a_loop_that_holds_the_last_loss():
    with pytest.raises(AssertionError):
        check_accumulation_memory_follows_the_micro_batch(
            broken_accumulation.accumulate_gradients_holding_the_last_loss)
