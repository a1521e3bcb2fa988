"""Devices: 'cpu' everywhere, 'cuda' through CuPy; clear errors where CUDA is missing; the GPU plumbing
checked on the CPU with a strict stand-in for CuPy (tests/fake_gpu.py)."""
import numpy as np
import pytest

import tinygrad_llm as tgl
from tinygrad_llm import device as devices
from tinygrad_llm import nn
from tinygrad_llm.training import TrainConfig, build_model, build_optimizer
from tinygrad_llm.training.loop import optimizer_step
from tinygrad_llm.training.mixed_precision import mixed_precision_for

import fake_gpu

pytestmark = pytest.mark.kernels

needs_no_cuda = pytest.mark.skipif(devices.cuda_is_available(), reason="this machine has a working GPU")


# ------------------------------------------------------------------ names and errors, on this machine
def test_device_names_are_checked():
    assert devices.check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'.*'cpu' or 'cuda'"):
        devices.check_device("tpu")
    with pytest.raises(TypeError, match="device must be a string"):
        devices.check_device(0)


def test_cpu_tensors_and_models_report_cpu_and_to_cpu_is_a_no_op():
    x = tgl.randn(3, 4)
    assert x.device == "cpu" and x.to("cpu") is x and x.cpu() is x
    model = nn.Linear(4, 2)
    weight = model.weight.data
    assert model.device == "cpu" and model.to("cpu") is model and model.weight.data is weight


@needs_no_cuda
@pytest.mark.parametrize("ask", [lambda: tgl.randn(2).to("cuda"), lambda: tgl.randn(2).cuda(),
                                 lambda: nn.Linear(2, 2).to("cuda"), lambda: devices.check_device("cuda")])
def test_asking_for_cuda_without_it_says_why(ask):
    with pytest.raises(devices.DeviceUnavailableError, match="device 'cuda' is not available: ") as error:
        ask()
    message = str(error.value)
    assert any(reason in message for reason in ("CuPy is not installed", "CUDA did not start", "no GPU is visible"))


def test_each_missing_requirement_has_its_own_message(monkeypatch):
    import sys
    import types

    devices._cuda_status.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    assert "pip install -e \".[gpu]\"" in devices._cuda_status()[1]

    def runtime(count=None, error=None):
        def get_device_count():
            if error:
                raise error
            return count
        module = types.ModuleType("cupy")
        module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
        return module

    for module, expected in [(runtime(error=RuntimeError("cudaErrorInsufficientDriver")), "nvidia-smi"),
                             (runtime(count=0), "CUDA_VISIBLE_DEVICES")]:
        devices._cuda_status.cache_clear()
        monkeypatch.setitem(sys.modules, "cupy", module)
        cupy, reason = devices._cuda_status()
        assert cupy is None and expected in reason
    devices._cuda_status.cache_clear()


# ------------------------------------------------------------------ the plumbing, on the strict fake GPU
@pytest.fixture
def fake_cuda(monkeypatch):
    return fake_gpu.install(monkeypatch)


def test_the_fake_gpu_is_as_strict_as_cupy(fake_cuda):
    on_device = fake_cuda.asarray(np.ones(3, np.float32))
    assert isinstance(np.exp(on_device), fake_gpu.FakeDeviceArray)
    with pytest.raises(TypeError, match="mixes device and host"):
        on_device + np.zeros(3, np.float32)


def test_tensor_to_cuda_and_back_keeps_values_and_gradients_flow_to_the_host(fake_cuda):
    x = tgl.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    on_gpu = x.to("cuda")
    assert on_gpu.device == "cuda" and isinstance(on_gpu.data, fake_gpu.FakeDeviceArray)
    y = ((on_gpu * on_gpu).sum(axis=1) + on_gpu.exp().mean()).sum()
    assert y.device == "cuda"
    y.backward()
    assert x.grad is not None and not isinstance(x.grad, fake_gpu.FakeDeviceArray)
    expected = 2 * x.data + 2 * np.exp(x.data) / x.data.size  # the mean is added to each of the 2 row sums
    np.testing.assert_allclose(x.grad, expected, rtol=1e-6)
    np.testing.assert_array_equal(on_gpu.cpu().data, x.data)


@pytest.mark.parametrize("model_name", ["gpt", "mlp", "bigram", "rnn", "lstm", "gru"])
def test_a_training_step_on_the_gpu_equals_the_same_step_on_the_cpu(fake_cuda, model_name):
    """Every parameter, gradient and optimizer state stays on the device through forward, backward,
    clipping and AdamW, and the numbers equal the CPU run (both use the reference kernels)."""
    config = TrainConfig(model=model_name, embed_dim=16, hidden_dim=32, num_heads=2, num_layers=2, context_size=8,
                         batch_size=4, mlp_window=3, steps=10, warmup_steps=2)
    train_ids = np.random.default_rng(0).integers(0, 20, size=500)
    results = {}
    previous = tgl.get_kernels()
    tgl.set_kernels("reference")
    try:
        for device in ("cpu", "cuda"):
            tgl.manual_seed(0)
            model = build_model(config, vocab_size=20).to(device)
            master_weights, scaler = mixed_precision_for(model, config.precision)
            optimizer, scheduler = build_optimizer(master_weights, config)
            parameters = model.parameters()
            rng = np.random.default_rng(1)
            losses = [optimizer_step(model, master_weights, scaler, optimizer, scheduler, train_ids, config, rng)[0]
                      for _ in range(3)]
            for p in parameters:
                assert p.device == device and (p.grad is None or devices.device_of(p.grad) == device)
            results[device] = (losses, [devices.to_device(p.data, "cpu") for p in parameters])
    finally:
        tgl.set_kernels(previous)
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-5)
    for on_gpu, on_cpu in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-6)


def test_train_with_device_cuda_runs_the_whole_loop_on_the_gpu(fake_cuda, tmp_path):
    """`train --device cuda`: dropout, evaluation, clipping, checkpoints and sampling all work with the model on
    the device, the checkpoint holds host arrays, and a resumed run loads them back onto the device."""
    from tinygrad_llm.generation import generate
    from tinygrad_llm.training import train_language_model

    config = TrainConfig(model="gpt", device="cuda", embed_dim=16, num_heads=2, num_layers=1, context_size=8,
                         batch_size=4, dropout=0.1, steps=6, eval_every=3, eval_batches=2, warmup_steps=1,
                         max_chars=3000)
    run = train_language_model(config, out_dir=tmp_path, progress=False, stop_after_step=3)
    assert run.model.device == "cuda" and np.isfinite(run.final["val_loss"])
    saved = np.load(run.checkpoint)
    assert all(type(saved[name]) is np.ndarray for name in saved.files)
    resumed = train_language_model(config, out_dir=tmp_path, resume_from=run.checkpoint, progress=False)
    assert resumed.model.device == "cuda" and resumed.history[-1]["step"] == 6
    tokens = generate(run.model, run.val_ids[:4], 5, seed=0)
    assert len(tokens) == 4 + 5


def test_device_is_a_checked_training_option():
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(device="tpu")


def test_the_reference_kernels_run_on_device_arrays_as_the_naive_gpu_baseline(fake_cuda):
    """Every reference kernel, given device arrays (and host masks or ids, as callers pass them), returns
    device arrays equal to its CPU result: on a real GPU this is the naive composition the CUDA kernels are
    benchmarked against."""
    from tinygrad_llm.kernels import reference

    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((2, 2, 5, 4)) for _ in range(4))
    pad = rng.random((2, 5)) < 0.3
    logits, targets = rng.standard_normal((6, 7)), np.array([0, 3, -100, 6, 2, 2])
    weight = rng.random(7) + 0.5
    x, w, b = rng.standard_normal((6, 7)), rng.random(7), rng.random(7)
    on = fake_cuda.asarray
    out, lse = reference.attention_forward(q, k, v, causal=True, padding_mask=pad)
    host_ce = reference.cross_entropy_forward(logits, targets, weight, label_smoothing=0.1)
    calls = [
        (lambda: reference.attention_forward(on(q), on(k), on(v), causal=True, padding_mask=pad), (out, lse)),
        (lambda: reference.attention_backward(on(q), on(k), on(v), on(out), on(lse), on(g), causal=True, padding_mask=pad),
         reference.attention_backward(q, k, v, out, lse, g, causal=True, padding_mask=pad)),
        (lambda: reference.cross_entropy_forward(on(logits), on(targets), on(weight), label_smoothing=0.1), host_ce),
        (lambda: reference.cross_entropy_backward(on(logits), on(host_ce[1]), on(targets), on(weight), on(x[:, 0]),
                                                  label_smoothing=0.1),
         reference.cross_entropy_backward(logits, host_ce[1], targets, weight, x[:, 0], label_smoothing=0.1)),
        (lambda: reference.layer_norm_forward(on(x), on(w), on(b)), reference.layer_norm_forward(x, w, b)),
        (lambda: reference.softmax_forward(on(x)), reference.softmax_forward(x)),
        (lambda: reference.gelu_forward(on(x), "tanh"), reference.gelu_forward(x, "tanh")),
        (lambda: reference.embedding_backward(targets[targets >= 0], on(x[:5]), 7),
         reference.embedding_backward(targets[targets >= 0], x[:5], 7)),
    ]
    for call, expected in calls:
        got = call()
        got, expected = (got, expected) if isinstance(got, tuple) else ((got,), (expected,))
        for a, e in zip(got, expected):
            assert isinstance(a, fake_gpu.FakeDeviceArray)
            np.testing.assert_allclose(a.get(), e, rtol=1e-12, atol=1e-12)


def test_bench_kernels_on_the_gpu_times_the_gpu_set_against_the_reference_on_the_device(fake_cuda, tmp_path):
    import json

    from tinygrad_llm.benchmarks.kernels import run_kernel_benchmark

    out = tmp_path / "gpu.json"
    report = run_kernel_benchmark("tiny", use_torch=False, out=out, plot=tmp_path / "none.png", device="cuda",
                                  only=["softmax", "attention", "cross"], verbose=False)
    assert report["meta"]["device"] == "cuda" and set(report["kernel_sets"]) == {"reference", "cupy"}
    assert report["roof"] is None and report["plot"] is None and not (tmp_path / "none.png").exists()
    assert report["cases"] and json.loads(out.read_text())["meta"]["device"] == "cuda"
    for case in report["cases"]:
        assert {"reference", "cupy"} <= set(case["results"]) and "reference" in case["results"]["cupy"]["speedup"]


@needs_no_cuda
def test_bench_kernels_on_cuda_without_it_says_why(tmp_path):
    from tinygrad_llm.benchmarks.kernels import run_kernel_benchmark

    with pytest.raises(devices.DeviceUnavailableError, match="device 'cuda' is not available"):
        run_kernel_benchmark("tiny", out=None, plot=None, device="cuda", verbose=False)


def test_bench_quality_trains_the_library_side_on_the_gpu(fake_cuda, tmp_path):
    from tinygrad_llm.benchmarks.quality import run_quality_benchmark

    report = run_quality_benchmark("embedded", steps=2, eval_every=2, eval_batches=1, final_eval_batches=1,
                                   use_torch=False, out=tmp_path / "q.json", max_chars=4000, device="cuda", verbose=False)
    assert report["meta"]["device"] == "cuda" and report["config"]["device"] == "cuda"
    assert np.isfinite(report["library"]["val_loss"]) and report["library"]["tokens_per_s"] > 0


@needs_no_cuda
def test_the_command_line_says_why_cuda_is_unavailable(capsys, tmp_path):
    from tinygrad_llm.__main__ import main

    assert main(["train", "--device", "cuda", "--steps", "2", "--warmup-steps", "1", "--max-chars", "2000", "--out-dir", str(tmp_path),
                 "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "device 'cuda' is not available" in error and "pip install" in error



@pytest.mark.parametrize("model_name", ["gpt", "mlp", "bigram", "lstm"])
def test_generation_with_the_cache_on_the_gpu_equals_the_cpu(fake_cuda, model_name):
    from tinygrad_llm.generation import generate

    config = TrainConfig(model=model_name, embed_dim=16, hidden_dim=16, num_heads=2, num_layers=1, context_size=8,
                         mlp_window=3)
    tgl.manual_seed(0)
    model = build_model(config, vocab_size=20).eval()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    on_cpu = generate(model, prompt, 6, seed=0, temperature=0.9, top_k=5)
    on_gpu = generate(model.to("cuda"), prompt, 6, seed=0, temperature=0.9, top_k=5)
    np.testing.assert_array_equal(on_gpu, on_cpu)


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_seq2seq_training_step_and_beam_search_on_the_gpu_equal_the_cpu(fake_cuda, kind):
    """Encoder-decoders too: a teacher-forced loss and its gradients, greedy decoding and beam search (which
    reorders the cross-attention cache) give the CPU's numbers with the model on the device."""
    from tinygrad_llm.generation import beam_search, greedy_decode

    rng = np.random.default_rng(0)
    source = rng.integers(3, 9, (3, 5))
    padding = np.arange(5)[None, :] >= np.array([[5], [3], [4]])
    source = np.where(padding, 0, source)
    decoder_input, target = rng.integers(3, 9, (3, 4)), rng.integers(3, 9, (3, 4))
    tokens = dict(bos_id=1, eos_id=2, max_length=6)
    results = {}
    for where in ("cpu", "cuda"):
        tgl.manual_seed(0)
        model = (nn.TransformerEncoderDecoder(9, 6, 8, embed_dim=8, num_heads=2, num_encoder_layers=1,
                                              num_decoder_layers=1, mlp_ratio=2) if kind == "transformer"
                 else nn.RecurrentEncoderDecoder(9, "gru", embed_dim=6, hidden_dim=8)).to(where)
        loss = nn.functional.cross_entropy(model(source, decoder_input, padding), target)
        loss.backward()
        grads = [devices.to_device(p.grad, "cpu") for p in model.parameters()]
        model.eval()
        greedy = greedy_decode(model, source, padding, **tokens)
        beams = beam_search(model, source, padding, beam_width=3, **tokens)
        results[where] = (loss.item(), grads, greedy.tokens, beams.tokens, beams.scores)
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-5)
    for on_gpu, on_cpu in zip(results["cuda"][1], results["cpu"][1]):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-6)
    assert results["cuda"][2] == results["cpu"][2] and results["cuda"][3] == results["cpu"][3]
    np.testing.assert_allclose(results["cuda"][4], results["cpu"][4], rtol=1e-5)
