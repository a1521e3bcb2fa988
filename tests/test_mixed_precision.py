"""Learning checks for mixed precision: half-precision forward and backward match float32 within the dtype's
precision and stay half precision throughout; float32 master weights keep the small updates that half
precision rounds away; loss scaling flushes fewer gradients to zero; fp16 resumes bit-exactly; fp32 is the
plain float32 loop to the bit; and the same option runs CuPy-style float16 on the (fake) GPU."""
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.__main__ import build_parser
from tinygrad_llm.checkpoint import load_checkpoint
from tinygrad_llm.autograd import topological_order
from tinygrad_llm.dtypes import BFLOAT16
from tinygrad_llm.experiments.mixed_precision import flushed_gradients, gradients, precision_variants
from tinygrad_llm.nn import GPT, Linear
from tinygrad_llm.optim import SGD, clip_grad_norm_
from tinygrad_llm.training import TrainConfig, build_model, build_optimizer, load_trained_model, train_language_model
from tinygrad_llm.training.loop import language_model_loss, optimizer_step
from tinygrad_llm.training.mixed_precision import MasterWeights, cast_model_, mixed_precision_for

import broken_mixed_precision as broken
import fake_gpu

pytestmark = pytest.mark.scaling

HALF = [np.dtype(np.float16), BFLOAT16]
half_dtypes = st.sampled_from(HALF)
MODEL_KINDS = ("bigram", "mlp", "rnn", "lstm", "gru", "gpt")


def small_gpt(seed, vocab, context, width, layers, positions):
    tgl.manual_seed(seed)
    return GPT(vocab, context_size=context, embed_dim=width, num_heads=2, num_layers=layers, positions=positions)


gpt_cases = st.fixed_dictionaries(dict(
    seed=st.integers(0, 1000), vocab=st.integers(5, 40), context=st.integers(2, 10), width=st.sampled_from([8, 16, 32]),
    layers=st.integers(1, 2), positions=st.sampled_from(["learned", "sinusoidal", "rope"]), batch=st.integers(1, 3)))


def batch_for(case):
    rng = np.random.default_rng(case["seed"])
    shape = (case["batch"], case["context"])
    return rng.integers(0, case["vocab"], shape), rng.integers(0, case["vocab"], shape)


def tiny(**overrides) -> TrainConfig:
    settings = dict(model="gpt", max_chars=6000, context_size=16, batch_size=4, embed_dim=16, num_layers=1,
                    num_heads=2, steps=12, warmup_steps=2, eval_every=4, eval_batches=2, lr=3e-3)
    settings.update(overrides)
    return TrainConfig(**settings)


# ------------------------------------------------------------------ half-precision forward and backward
@given(gpt_cases, half_dtypes)
def test_a_half_precision_gpt_matches_float32_within_its_precision(case, dtype):
    """Same weights (rounded), same batch: the loss within one unit of the dtype's precision (eps) relative,
    all gradients together within 10 eps (float16 eps ~1e-3, bfloat16 ~8e-3); loss scaling changes nothing
    but the gradients' range."""
    model, (inputs, targets) = small_gpt(**{k: v for k, v in case.items() if k != "batch"}), batch_for(case)
    eps = float(np.finfo(dtype).eps)
    twin = small_gpt(**{k: v for k, v in case.items() if k != "batch"})
    cast_model_(twin, dtype)
    loss32, loss_half = language_model_loss(model, inputs, targets), language_model_loss(twin, inputs, targets)
    assert loss_half.dtype == np.float32
    assert abs(loss_half.item() - loss32.item()) <= eps * loss32.item()
    reference = gradients(model, inputs, targets, np.float32)
    half = gradients(model, inputs, targets, dtype, loss_scale=1024.0 if dtype == np.float16 else 1.0)
    difference = sum(float(np.sum((a - b) ** 2)) for a, b in zip(reference, half))
    assert np.sqrt(difference / sum(float(np.sum(a**2)) for a in reference)) <= 10 * eps


@given(gpt_cases, half_dtypes)
def test_every_activation_and_gradient_of_the_gpt_stays_half_precision(case, dtype):
    """Every tensor from the embeddings to the logits, and its gradient, is `dtype`; only the loss, which
    cross-entropy accumulates in float32, is float32 (the kernels' float32 is internal)."""
    model, (inputs, targets) = small_gpt(**{k: v for k, v in case.items() if k != "batch"}), batch_for(case)
    cast_model_(model, dtype)
    logits = model(inputs)
    graph = topological_order(logits)
    for node in graph:
        node.retain_grad()
    loss = tgl.nn.functional.cross_entropy(logits, targets)
    assert loss.dtype == np.float32
    loss.backward()
    assert {node.dtype for node in graph} == {dtype}
    assert {node.grad.dtype for node in graph if node.grad is not None} == {dtype}


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_every_language_model_trains_forward_and_backward_in_half_precision(kind, dtype):
    config = TrainConfig(model=kind, embed_dim=16, hidden_dim=16, num_layers=1, num_heads=2, context_size=8,
                         mlp_window=3, dropout=0.1)
    model = build_model(config, 20)
    cast_model_(model, dtype)
    ids = np.random.default_rng(0).integers(0, 20, (3, 8))
    logits = model(ids)
    tgl.nn.functional.cross_entropy(logits, ids).backward()
    assert logits.dtype == dtype and {p.grad.dtype for p in model.parameters()} == {dtype}


# ------------------------------------------------------------------ master weights
def check_master_weights_keep_small_updates(make_master_weights):
    """Steps of u = a fraction of half an ulp at 1.0: each alone rounds away in half precision (1 + u == 1),
    but the float32 master weights add them up, and the model follows once their sum is an ulp or more."""
    @given(half_dtypes, st.floats(0.2, 0.9), st.integers(3, 12))
    @settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))  # unshrunk: the broken variant fails at once
    def small_updates(dtype, fraction, steps):
        update = float(np.array(fraction * float(np.finfo(dtype).eps) / 2, dtype=dtype))  # representable in dtype
        model = Linear(2, 3, bias=False)
        model.weight.data[...] = 1.0
        master_weights = make_master_weights(model, dtype)
        optimizer = SGD(master_weights.parameters(), lr=1.0)
        for _ in range(steps):
            master_weights.zero_grad()
            model.weight.grad = np.full(model.weight.shape, -update, dtype=dtype)
            master_weights.copy_grads_to_master()
            optimizer.step()
            master_weights.copy_master_to_model()
        expected = np.float32(1.0)
        for _ in range(steps):
            expected += np.float32(update)
        np.testing.assert_allclose(master_weights.parameters()[0].data.astype(np.float32), expected, rtol=1e-6)
        np.testing.assert_array_equal(model.weight.data, np.full(model.weight.shape, expected).astype(dtype))

    small_updates()


def test_float32_master_weights_keep_the_updates_half_precision_rounds_away():
    check_master_weights_keep_small_updates(MasterWeights)


@pytest.mark.broken
def test_the_check_catches_training_without_a_float32_master_copy():
    with pytest.raises(Exception):
        check_master_weights_keep_small_updates(broken.master_weights_without_a_float32_copy)


def test_in_float32_the_model_is_its_own_master():
    model = build_model(tiny(), 20)
    master_weights, scaler = mixed_precision_for(model, "fp32")
    assert [p for _, p in master_weights.named_parameters()] == model.parameters()
    assert not scaler.is_enabled()
    half_model = build_model(tiny(), 20)
    master_weights, scaler = mixed_precision_for(half_model, "fp16")
    assert scaler.is_enabled() and {p.dtype for p in master_weights.parameters()} == {np.dtype(np.float32)}
    assert {p.dtype for p in half_model.parameters()} == {np.dtype(np.float16)}


# ------------------------------------------------------------------ loss scaling
@given(gpt_cases)
def test_loss_scaling_flushes_fewer_gradient_entries_to_zero(case):
    """Counted against the float32 gradient at the same weights: scaling by 2^16 never flushes more entries
    than no scaling, and with the weights shrunk (small gradients, as late in training) it flushes fewer."""
    model, (inputs, targets) = small_gpt(**{k: v for k, v in case.items() if k != "batch"}), batch_for(case)
    for p in model.parameters():
        p.data *= 0.05
    flushed = flushed_gradients(model, inputs, targets)
    assert not flushed["overflowed"]
    assert flushed["scaled"] < flushed["unscaled"], flushed


# ------------------------------------------------------------------ the training loop
@given(st.integers(0, 100), st.integers(1, 2), st.sampled_from(["mlp", "gpt"]))
def test_precision_fp32_is_the_plain_float32_step_to_the_bit(seed, accumulation, kind):
    """optimizer_step with fp32's master weights and scaler == zero_grad, backward, clip, step, schedule."""
    config = tiny(model=kind, grad_accum_steps=accumulation, seed=seed)
    train_ids = np.random.default_rng(seed).integers(0, 20, size=400)
    tgl.manual_seed(seed)
    model = build_model(config, 20)
    master_weights, scaler = mixed_precision_for(model, "fp32")
    optimizer, scheduler = build_optimizer(master_weights, config)
    tgl.manual_seed(seed)
    plain_model = build_model(config, 20)
    plain_optimizer, plain_scheduler = build_optimizer(plain_model, config)
    rng, plain_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    for _ in range(3):
        optimizer_step(model, master_weights, scaler, optimizer, scheduler, train_ids, config, rng)
        plain_optimizer.zero_grad()
        for _ in range(accumulation):
            inputs, targets = tgl.data.random_windows(train_ids, config.context_size, config.batch_size, plain_rng)
            (language_model_loss(plain_model, inputs, targets) / accumulation).backward()
        clip_grad_norm_(plain_model.parameters(), config.clip_norm)
        plain_optimizer.step()
        plain_scheduler.step()
    for (name, value), plain in zip(model.state_dict().items(), plain_model.state_dict().values()):
        np.testing.assert_array_equal(value, plain, err_msg=name)


def test_fp16_resuming_equals_one_uninterrupted_run_to_the_bit(tmp_path):
    """Train 8 steps, save, resume, train 4 more == 12 in one go, in fp16: the checkpoint holds the float32
    master weights and the loss scaler's state, and the half model is their rounding."""
    config = tiny(precision="fp16", dropout=0.1, num_layers=2)
    whole = train_language_model(config, out_dir=tmp_path / "whole", progress=False)
    train_language_model(config, out_dir=tmp_path / "parts", stop_after_step=8, progress=False)
    resumed = train_language_model(config, out_dir=tmp_path / "parts", resume_from=tmp_path / "parts/checkpoint.npz",
                                   progress=False)
    for name, value in whole.model.state_dict().items():
        assert value.dtype == np.float16
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value, err_msg=name)
    assert resumed.history == [{**r, **{k: resumed.history[i][k] for k in ("tokens_per_s", "train_seconds")}}
                               for i, r in enumerate(whole.history)]
    (whole_arrays, whole_metadata), (parts_arrays, parts_metadata) = (
        load_checkpoint(tmp_path / run / "checkpoint.npz") for run in ("whole", "parts"))
    for name, value in whole_arrays.items():
        assert value.dtype == np.float32 or name.endswith(".step")
        np.testing.assert_array_equal(parts_arrays[name], value, err_msg=name)
    assert parts_metadata["grad_scaler"] == whole_metadata["grad_scaler"]
    assert whole.history[-1]["loss_scale"] == 2.0**16 and "skipped_steps" in whole.history[-1]


def test_an_fp16_checkpoint_holds_the_float32_master_weights_that_sample_loads(tmp_path):
    run = train_language_model(tiny(precision="fp16", steps=4, eval_every=4), out_dir=tmp_path, progress=False)
    model, _, _ = load_trained_model(run.checkpoint)
    for (name, master), half in zip(model.state_dict().items(), run.model.state_dict().values()):
        assert master.dtype == np.float32
        np.testing.assert_array_equal(master.astype(np.float16), half, err_msg=name)


def test_precision_is_a_checked_training_option():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="bf16.*CuPy has no bfloat16"):
        TrainConfig(precision="bf16", device="cuda")
    args = build_parser().parse_args(["train", "--precision", "bf16"])
    assert args.precision == "bf16"


def test_fp16_training_runs_on_the_gpu_as_on_the_cpu(monkeypatch, tmp_path):
    """On the (fake) GPU: the model is float16 device arrays, the master weights float32 device arrays, and the
    run (with a checkpoint and a resume) gives the CPU's numbers (both use the reference kernels)."""
    fake_gpu.install(monkeypatch)
    previous = tgl.get_kernels()
    tgl.set_kernels("reference")
    try:
        runs = {}
        for device in ("cpu", "cuda"):
            config = tiny(precision="fp16", device=device, steps=6, eval_every=3, dropout=0.0)
            train_language_model(config, out_dir=tmp_path / device, stop_after_step=3, progress=False)
            runs[device] = train_language_model(config, out_dir=tmp_path / device, progress=False,
                                                resume_from=tmp_path / device / "checkpoint.npz")
    finally:
        tgl.set_kernels(previous)
    model = runs["cuda"].model
    assert model.device == "cuda" and {p.dtype for p in model.parameters()} == {np.dtype(np.float16)}
    assert isinstance(model.parameters()[0].data, fake_gpu.FakeDeviceArray)
    np.testing.assert_allclose([r["val_loss"] for r in runs["cuda"].history],
                               [r["val_loss"] for r in runs["cpu"].history], rtol=1e-3)


# ------------------------------------------------------------------ the measurement (fast mode)
def test_the_precision_study_scaled_fp16_is_within_5_percent_of_fp32_and_pure_fp16_is_not():
    study = precision_variants(fast=True, variants=("fp32", "fp16 pure", "fp16 master+scaling"))
    assert abs(study["val_loss_vs_fp32"]["fp16 master+scaling"]) < 0.05
    pure = study["variants"]["fp16 pure"]
    assert pure["diverged_at_step"] is not None or study["val_loss_vs_fp32"]["fp16 pure"] > 0.05
    for weights in ("initial_weights", "trained_weights"):
        assert study["flushed"][weights]["scaled"] <= study["flushed"][weights]["unscaled"]
