"""Learning checks for post-training quantization (Q20): each weight is within half a step of its float value,
int4 packing round-trips, quantizing is idempotent, finer slices never have a coarser step, QuantizedLinear is
F.linear with the dequantized weight, a quantized network's output stays within the bound its scales give,
checkpoints round-trip exactly, the coverage report's bytes add up, and a trained GPT keeps its perplexity.
The first checks also run with pieces from tests/broken_quantization.py swapped in, and must catch each one."""
import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tinygrad_llm as tgl
from tinygrad_llm import kernels
from tinygrad_llm.checkpoint import CheckpointError
from tinygrad_llm.compression import (QuantizedLinear, decomposed_matmul, dequantize, load_model, load_quantized,
                                      quantization, quantize, quantize_tensor, save_quantized, w8a8_matmul)
from tinygrad_llm.experiments.quantization import planted_outliers, scheme_sweep
from tinygrad_llm.experiments.pruning import trained_gpt
from tinygrad_llm.kernels.reference.int4_packing import pack_int4, unpack_int4
from tinygrad_llm.nn import GPT, Linear, MLPLanguageModel, ReLU, Sequential
from tinygrad_llm.nn import functional as F

import broken_quantization as broken

pytestmark = pytest.mark.compression


# The checks report a failing example as drawn: every example of a broken piece fails, and shrinking one cost
# seconds per run. The weights are small enough to read unshrunk.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)


# ------------------------------------------------------------------ strategies
@st.composite
def weights(draw, max_rows=6, max_half_columns=16):
    """A float32 (N, K) weight, K even (int4 packs pairs), values spread over several orders of magnitude."""
    n, k = draw(st.integers(1, max_rows)), 2 * draw(st.integers(1, max_half_columns))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    return draw(arrays(np.float32, (n, k), elements=st.floats(-1, 1, width=32))) * np.float32(magnitude)


@st.composite
def schemes(draw, k):
    """Keyword arguments of quantize_tensor valid for K columns."""
    bits, granularity = draw(st.sampled_from([8, 4])), draw(st.sampled_from(["tensor", "channel", "group"]))
    group_size = draw(st.sampled_from(group_sizes(k, bits))) if granularity == "group" else None
    return dict(bits=bits, symmetric=draw(st.booleans()), granularity=granularity, group_size=group_size)


def group_sizes(k: int, bits: int) -> list:
    """The divisors of K, even ones for int4 (a group fills whole bytes)."""
    return [g for g in range(1, k + 1) if k % g == 0 and (bits == 8 or g % 2 == 0)]


def step_of_each_weight(qt) -> np.ndarray:
    """(N, K): the scale that applies to each weight."""
    return np.broadcast_to(np.repeat(qt.scales, qt.group_size, axis=1), qt.shape)


def in_an_all_zero_slice(qt, w) -> np.ndarray:
    """(N, K): True where the weight's slice is all zeros (stored exactly, under the placeholder scale 1)."""
    slices = quantization.weight_slices(w, qt.granularity, qt.group_size)
    return np.broadcast_to((slices == 0).all(axis=-1, keepdims=True), slices.shape).reshape(w.shape)


# ------------------------------------------------------------------ the checks (also run against the broken pieces)
def check_error_within_half_a_step():
    """|dequant(quant(w)) - w| <= scale / 2 for every weight, symmetric AND affine: the scale is fitted so that
    nothing is clipped (symmetric: max |w| lands on qmax; affine: [min(w, 0), max(w, 0)] spans every code),
    and rounding to nearest is off by at most half a step. The slack is float32 rounding: of scale * q, and of
    an affine scale (rounded down, so the far end of the range may sit up to 2^bits * 2^-24 steps past it)."""
    @given(st.data())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def within_half_a_step(data):
        w = data.draw(weights())
        qt = quantize_tensor(w, **data.draw(schemes(w.shape[1])))
        error = np.abs(dequantize(qt).astype(np.float64) - w)
        bound = step_of_each_weight(qt) * (0.5 + 2.0**-15) + np.abs(w) * 2.0**-22
        worst = (error / step_of_each_weight(qt)).max()
        assert (error <= bound).all(), f"{qt.describe()}: the worst error is {worst:.3f} steps"

    within_half_a_step()


def check_quantizing_is_idempotent():
    """quantize(dequantize(quantize(w))) == quantize(w): the integers and zero points are identical, the scales
    equal up to float32 rounding (the dequantized maximum is scale * qmax, which gives the scale back)."""
    @given(st.data())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def idempotent(data):
        w = data.draw(weights())
        scheme = data.draw(schemes(w.shape[1]))
        first = quantize_tensor(w, **scheme)
        second = quantize_tensor(dequantize(first), **scheme)
        np.testing.assert_array_equal(second.values, first.values)
        np.testing.assert_array_equal(second.zero_points, first.zero_points)
        np.testing.assert_allclose(second.scales, first.scales, rtol=1e-6)

    idempotent()


def check_finer_slices_have_finer_steps():
    """Per-channel error <= per-tensor error, in the norm that holds for every matrix: the worst-case error of
    each weight is half its step, and a row's step is at most the tensor's (a row's largest |w| is at most the
    matrix's); a group's at most its row's. Single weights can still land nearer a coarser grid by luck, so
    the elementwise error itself is NOT ordered; its bound is, and with it each row's max |error| <= s_tensor / 2.
    (An all-zero slice is exact whatever its step: it gets the placeholder scale 1.)"""
    @given(weights(), st.sampled_from([8, 4]), st.booleans(), st.data())
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def nested_steps(w, bits, symmetric, data):
        group_size = data.draw(st.sampled_from(group_sizes(w.shape[1], bits)))
        tensor, channel, group = (quantize_tensor(w, bits, symmetric, granularity, size) for granularity, size in
                                  (("tensor", None), ("channel", None), ("group", group_size)))
        slack = 1 + 1e-6
        for finer, coarser in ((channel, tensor), (group, channel)):
            nested = step_of_each_weight(finer) <= step_of_each_weight(coarser) * slack
            assert (nested | in_an_all_zero_slice(finer, w)).all()
        row_error = np.abs(dequantize(channel) - w).max(axis=1)
        assert (row_error <= tensor.scales[0, 0] / 2 * slack + np.abs(w).max() * 2.0**-22).all()

    nested_steps()


CHECKS = [check_error_within_half_a_step, check_quantizing_is_idempotent, check_finer_slices_have_finer_steps]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_check_passes(check):
    check()


@pytest.mark.broken
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("piece", sorted(broken.BROKEN_PIECES))
def test_half_a_step_check_catches_broken_piece(piece, monkeypatch):
    monkeypatch.setattr(quantization, piece, broken.BROKEN_PIECES[piece])
    with pytest.raises(AssertionError):
        check_error_within_half_a_step()


@pytest.mark.broken
def test_nesting_check_catches_scales_from_the_mean(monkeypatch):
    monkeypatch.setattr(quantization, "symmetric_scales", broken.scales_from_the_mean)
    with pytest.raises(AssertionError):
        check_finer_slices_have_finer_steps()


# ------------------------------------------------------------------ int4 packing
@given(st.integers(1, 4), st.integers(1, 8), st.data())
def test_int4_packing_round_trips_and_puts_element_2j_in_the_low_nibble(rows, pairs, data):
    values = data.draw(arrays(np.int8, (rows, 2 * pairs), elements=st.integers(-8, 7)))
    packed = pack_int4(values)
    assert packed.dtype == np.uint8 and packed.shape == (rows, pairs)
    np.testing.assert_array_equal(unpack_int4(packed), values)
    np.testing.assert_array_equal(packed & 0x0F, values[:, 0::2].astype(np.uint8) & 0x0F)


@pytest.mark.broken
def test_int4_layout_check_catches_swapped_nibbles():
    values = np.array([[3, -2, 7, -8]], dtype=np.int8)
    assert not np.array_equal(unpack_int4(broken.pack_int4_nibbles_swapped(values)), values)


def test_int4_halves_the_bytes_of_int8():
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    assert quantize_tensor(w, 4).values.nbytes * 2 == quantize_tensor(w, 8).values.nbytes == w.nbytes // 4


def test_an_all_zero_slice_gets_scale_one():
    w = np.zeros((3, 4), np.float32)
    w[1] = [1.0, -2.0, 0.5, 0.25]
    for symmetric in (True, False):
        qt = quantize_tensor(w, 8, symmetric)
        assert qt.scales[0, 0] == qt.scales[2, 0] == 1.0
        np.testing.assert_array_equal(dequantize(qt)[[0, 2]], 0.0)


# ------------------------------------------------------------------ errors that teach
@pytest.mark.parametrize("w, options, message", [
    (np.ones((4, 5), np.float32), dict(bits=4), "K \\(in_features\\) must be even"),
    (np.ones((4, 6), np.float32), dict(granularity="group", group_size=4), "group_size that divides K = 6"),
    (np.ones((4, 6), np.float32), dict(bits=4, granularity="group", group_size=3), "even \\(an int4 group"),
    (np.ones((4, 6), np.float32), dict(bits=3), "bits must be 8 or 4"),
    (np.ones((4, 6), np.float32), dict(granularity="row"), "granularity must be one of"),
    (np.ones((4, 6), np.float32), dict(granularity="channel", group_size=2), "only applies to granularity='group'"),
    (np.ones(6, np.float32), {}, "expected a 2-D float array"),
    (np.array([[1.0, np.nan]], np.float32), {}, "inf/NaN"),
])
def test_bad_arguments_get_errors_that_name_the_fix(w, options, message):
    with pytest.raises(ValueError, match=message):
        quantize_tensor(w, **options)


def test_model_level_errors_name_the_layer_and_the_scheme():
    model = Sequential(Linear(5, 4))
    with pytest.raises(ValueError, match="layer '0'.*must be even"):
        quantize(model, bits=4)
    with pytest.raises(ValueError, match="needs a group_size"):
        quantize(Sequential(Linear(4, 4)), granularity="group")


# ------------------------------------------------------------------ QuantizedLinear
@pytest.fixture(params=["reference", "numba"])
def kernel_set(request):
    previous = kernels.get_kernels()
    kernels.set_kernels(request.param)
    yield request.param
    kernels.set_kernels(previous)


def activation_rounding_bound(x, weight):
    """How far int16 activations can move x @ W.T: half a step (max|x row| / 32767) per activation, times
    each output's sum of |W| (tests/test_kernels_quantized.py checks the kernels against it tightly)."""
    half_step = np.abs(x).max(axis=-1, keepdims=True).astype(np.float64) / 32767 * 0.51
    return half_step * np.abs(weight).sum(axis=1)


@pytest.mark.parametrize("activations", ["float32", "int16"])
def test_quantized_linear_is_linear_with_the_dequantized_weight(kernel_set, activations):
    @given(st.data(), st.booleans(), st.lists(st.integers(1, 3), min_size=0, max_size=2))
    def same_as_float_linear(data, bias, leading):
        w = data.draw(weights(max_rows=8, max_half_columns=32))
        linear = Linear(w.shape[1], w.shape[0], bias=bias)
        linear.weight.data[...] = w
        layer = QuantizedLinear.from_linear(linear, **data.draw(schemes(w.shape[1])), activations=activations)
        x = np.random.default_rng(len(leading)).standard_normal((*leading, w.shape[1])).astype(np.float32)
        with tgl.no_grad():
            got = layer(tgl.tensor(x)).data
            want = F.linear(tgl.tensor(x), tgl.tensor(dequantize(layer.weight)), linear.bias).data
        assert got.shape == (*leading, w.shape[0])
        # Kernels add in other orders than BLAS, and may factor out the zero point (s * (x.q - zp * sum(x))):
        # float32 rounding, relative to the sum of the |terms| of either form.
        qt = layer.weight
        zero_points = 0 if qt.symmetric else np.abs(np.repeat(qt.zero_points.astype(np.int64), qt.group_size, axis=1))
        terms = np.abs(dequantize(qt)) + 2 * step_of_each_weight(qt) * zero_points
        size = np.abs(x) @ terms.T + (0 if not bias else np.abs(linear.bias.data))
        rounding = activation_rounding_bound(x, dequantize(qt)) if activations == "int16" else 0
        assert (np.abs(got - want) <= 1e-5 * size + rounding + 1e-30).all()

    same_as_float_linear()


def test_quantize_sets_how_every_layer_multiplies():
    model = Sequential(Linear(8, 8), ReLU(), Linear(8, 4))
    x = tgl.tensor(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    fast, exact = copy.deepcopy(model), copy.deepcopy(model)
    quantize(fast)
    quantize(exact, activations="float32")
    assert [m.activations for m in fast.modules() if isinstance(m, QuantizedLinear)] == ["int16", "int16"]
    assert [m.activations for m in exact.modules() if isinstance(m, QuantizedLinear)] == ["float32", "float32"]
    with tgl.no_grad():
        assert not np.array_equal(fast(x).data, exact(x).data)  # the int16 rounding is there ...
        np.testing.assert_allclose(fast(x).data, exact(x).data, rtol=1e-3, atol=1e-4)  # ... and small
    with pytest.raises(ValueError, match="activations must be one of .*'int16'.*'float32'"):
        quantize(copy.deepcopy(model), activations="int8")


def test_quantized_linear_is_for_inference_only():
    layer = QuantizedLinear.from_linear(Linear(4, 3))
    assert layer.parameters() == []
    x = tgl.tensor(np.ones((2, 4), np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="inference only.*no_grad"):
        layer(x)
    with tgl.no_grad():
        assert layer(x).shape == (2, 3)
    with pytest.raises(ValueError, match="expected float32 input \\(..., 4\\)"):
        layer(np.ones((2, 5), np.float32))


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4), st.data())
def test_a_quantized_network_stays_within_the_bound_its_scales_give(batch, half_in, hidden, out, data):
    """For Linear -> ReLU -> Linear: the first layer's output moves by at most e1 = |x| @ (s1 / 2).T per unit
    (|dW| <= s / 2 elementwise); ReLU moves nothing further apart (1-Lipschitz); the second layer adds its own
    weight error on top of the moved input: |dy| <= |W2q| @ e1 + (s2 / 2) @ |relu(h)|. Each layer's int16
    rounding of its input adds half an activation step times its |W| row sums."""
    scheme = data.draw(schemes(2 * half_in))
    first, second = Linear(2 * half_in, 2 * hidden), Linear(2 * hidden, out)
    model = Sequential(first, ReLU(), second)
    x = np.random.default_rng(batch).standard_normal((batch, 2 * half_in)).astype(np.float32)
    with tgl.no_grad():
        exact = model(tgl.tensor(x)).data.astype(np.float64)
        hidden_float = np.maximum(first(tgl.tensor(x)).data, 0).astype(np.float64)
    scheme["group_size"] = None if scheme["granularity"] != "group" else 2  # divides both layers' in_features
    quantize(model, **scheme)
    q_first, q_second = model.layers[0], model.layers[2]
    with tgl.no_grad():
        approximate = model(tgl.tensor(x)).data
    # int16 activations (the default) add each layer's rounding of its input on top of the weight errors.
    first_error = np.abs(x) @ (step_of_each_weight(q_first.weight) / 2).T + activation_rounding_bound(
        x, dequantize(q_first.weight))
    hidden_reach = hidden_float + first_error  # the quantized network's hidden layer is at most this large
    bound = (np.abs(dequantize(q_second.weight)) @ first_error.T).T + hidden_float @ (
        step_of_each_weight(q_second.weight) / 2).T + activation_rounding_bound(hidden_reach, dequantize(q_second.weight))
    size = np.abs(exact) + np.abs(x) @ np.abs(first.weight.data.T) @ np.abs(second.weight.data.T)
    assert (np.abs(approximate - exact) <= bound * (1 + 1e-5) + 1e-5 * size).all()


# ------------------------------------------------------------------ whole models: coverage and checkpoints
def tiny_gpt(tie_weights: bool = True, seed: int = 0) -> GPT:
    tgl.manual_seed(seed)
    return GPT(vocab_size=11, context_size=8, embed_dim=16, num_heads=2, num_layers=2, tie_weights=tie_weights)


def stored_bytes(model) -> int:
    """Bytes a model holds: its float parameters (a tied one once) plus every QuantizedLinear's arrays."""
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    return (sum(p.data.nbytes for p in model.parameters()) + sum(m.weight.nbytes for m in quantized) +
            sum(m.bias.nbytes for m in quantized if m.bias is not None))


@pytest.mark.parametrize("model_factory", [lambda: tiny_gpt(True), lambda: tiny_gpt(False),
                                           lambda: MLPLanguageModel(11, 3, 4, 8)],
                         ids=["gpt tied", "gpt untied", "mlp lm"])
@pytest.mark.parametrize("preset", [dict(bits=8), dict(bits=4, symmetric=False, granularity="group", group_size=4)],
                         ids=["int8", "int4 group"])
def test_the_coverage_report_adds_up_and_says_what_stayed_float(model_factory, preset):
    model = model_factory()
    before, linears = stored_bytes(model), [name for name, m in model.named_modules() if isinstance(m, Linear)]
    report = quantize(model, **preset)
    assert report.bytes_before == before and report.bytes_after == stored_bytes(model)
    assert report.bytes_after < report.bytes_before
    rows = {row.name: row for row in report.rows}
    assert len(rows) == len(report.rows)  # one row per stored array
    tied = getattr(model, "lm_head", None) is not None and isinstance(model.lm_head, Linear)
    assert sorted(report.quantized_layers) == sorted(name for name in linears if not (tied and name == "lm_head"))
    for name, row in rows.items():
        assert row.stored_as.startswith("int") == (name.rsplit(".", 1)[0] in report.quantized_layers and
                                                   name.endswith("weight"))
        assert row.reason
    if tied:
        assert "tied" in rows["lm_head.weight"].reason and rows["lm_head.weight"].bytes_after == 0
    assert "lookup" in rows["token_embedding.weight"].reason
    assert all(row.stored_as == "float32" for name, row in rows.items() if name.endswith("bias"))
    assert "total:" in report.table()


@given(st.sampled_from([dict(bits=8), dict(bits=8, symmetric=False, granularity="tensor"),
                        dict(bits=4, granularity="group", group_size=8), dict(bits=4, symmetric=False)]),
       st.booleans(), st.integers(0, 3))
@settings(max_examples=8)
def test_a_quantized_checkpoint_round_trips_exactly(preset, tie_weights, seed):
    model = tiny_gpt(tie_weights, seed)
    quantize(model, **preset)
    ids = np.random.default_rng(seed).integers(0, 11, (2, 8))
    with tempfile.TemporaryDirectory() as folder:
        path = save_quantized(model, Path(folder) / "quantized.npz", metadata={"note": "test"})
        loaded, tokenizer, metadata = load_quantized(path)
        assert load_model(path)[0].__class__ is GPT
    assert tokenizer is None and metadata["note"] == "test"
    for (name, a), (other, b) in zip(model.named_modules(), loaded.named_modules()):
        assert name == other and type(a) is type(b)
        if isinstance(a, QuantizedLinear):
            for part in ("values", "scales", "zero_points", "bias"):
                np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    with tgl.no_grad():
        np.testing.assert_array_equal(loaded(ids).data, model(ids).data)


def test_loading_the_wrong_kind_of_file_is_a_clear_error(tmp_path):
    from tinygrad_llm.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "other.npz", {"a": np.zeros(2)}, {"format": "something else"})
    with pytest.raises(CheckpointError, match="not a quantized checkpoint"):
        load_quantized(path)
    with pytest.raises(ValueError, match="call quantize\\(model\\) first"):
        save_quantized(tiny_gpt(), tmp_path / "float.npz")


# ------------------------------------------------------------------ outliers: W8A8 and decomposition
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**16))
def test_w8a8_error_is_bounded_by_both_steps(rows, k, n, seed):
    """x ~ qx * sx and w ~ qw * sw, each off by at most half a step: per output,
    |x.w - x^.w^| <= sum_k |x| sw/2 + |w| sx/2 + sx sw / 4 (the product of two approximations)."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((rows, k)).astype(np.float32), rng.standard_normal((n, k)).astype(np.float32)
    sx = quantize_tensor(x, 8).scales  # (rows, 1)
    sw = quantize_tensor(w, 8).scales.T  # (1, n)
    bound = np.abs(x).sum(1, keepdims=True) * sw / 2 + np.abs(w).sum(1)[None] * sx / 2 + k * sx * sw / 4
    error = np.abs(w8a8_matmul(x, w) - x.astype(np.float64) @ w.T)
    assert (error <= bound * (1 + 1e-5) + 1e-6).all()


def test_decomposition_between_all_int8_and_all_float():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 16)).astype(np.float32), rng.standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(decomposed_matmul(x, w, threshold=np.inf), w8a8_matmul(x, w))
    np.testing.assert_allclose(decomposed_matmul(x, w, threshold=-1.0), x @ w.T, rtol=1e-6)


def test_keeping_outlier_columns_in_float_fixes_what_breaks_per_tensor_int8():
    results = planted_outliers(fast=True)["results"]
    plain, *with_outliers = results
    assert plain["float_columns"] == 0 and plain["outliers_in_float"] == plain["per_row"]
    for row in with_outliers:
        assert row["float_columns"] == 4
        assert row["outliers_in_float"] < row["per_row"] / 5 and row["outliers_in_float"] < row["per_tensor"] / 5
        assert row["ordinary_zeroed_per_tensor"] > 0.1  # the ordinary features lose their information


# ------------------------------------------------------------------ quality on a trained GPT
@pytest.fixture(scope="module")
def trained():
    return trained_gpt(fast=True)


def test_int8_per_channel_keeps_the_perplexity_of_a_trained_gpt(trained):
    """int8 per channel within 2% of float32, and per channel never worse than per tensor. On a model this small
    both int8 perplexity changes are a few hundredths of a percent either way, where the sign is rounding luck,
    so 'worse' is measured by the KL divergence from the float model's predictions, which has no sign."""
    schemes_ = [dict(bits=8, symmetric=True, granularity=g, group_size=None) for g in ("tensor", "channel")]
    sweep = scheme_sweep(trained["model"], trained["val_ids"][:4000], trained["config"].context_size, schemes_,
                         kl_windows=32)
    per_tensor, per_channel = sweep["rows"]
    assert abs(per_channel["perplexity_change"]) <= 0.02
    assert 0 <= per_channel["kl_from_float"] <= per_tensor["kl_from_float"]
    assert per_channel["linear_ratio"] > 3.5 and per_channel["model_ratio"] < per_channel["linear_ratio"]
    assert not any(isinstance(m, QuantizedLinear) for m in trained["model"].modules())


# ------------------------------------------------------------------ the command line
def test_quantize_command_writes_a_checkpoint_that_samples_like_quantizing_on_load(tmp_path, capsys):
    from tinygrad_llm.__main__ import main
    from tinygrad_llm.training import TrainConfig, train_language_model

    config = TrainConfig(max_chars=8000, steps=20, warmup_steps=2, eval_every=10, eval_batches=2, context_size=32,
                         embed_dim=32, num_layers=1, num_heads=2)
    train_language_model(config, out_dir=tmp_path, progress=False)
    source, quantized = tmp_path / "checkpoint.npz", tmp_path / "int4.npz"
    assert main(["quantize", "--checkpoint", str(source), "--out", str(quantized), "--bits", "4"]) == 0
    printed = capsys.readouterr().out
    # width 32: a group of 64 would not divide the attention layers' 32 inputs, so they get one group per row
    assert "int4 symmetric, per group of 64" in printed and "int4 symmetric, per output channel" in printed
    assert "total:" in printed and "On disk:" in printed
    greedy = ["--prompt", "The ", "--max-new-tokens", "20", "--temperature", "0"]
    assert main(["sample", "--checkpoint", str(quantized), *greedy]) == 0
    from_file = capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(source), "--quantize", "int4", *greedy]) == 0
    assert capsys.readouterr().out == from_file
    assert main(["sample", "--checkpoint", str(quantized), "--quantize", "int8", *greedy]) == 2
    assert "already quantized" in capsys.readouterr().err
