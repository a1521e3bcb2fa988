"""Learning checks for the dynamic loss scaler (PyTorch's GradScaler semantics): an overflowed step is skipped
and halves the scale, growth_interval clean steps double it, a clean step equals the unscaled step, the state
round-trips, and misuse (unscaling twice, scaling an inference loss) raises a clear error. Each check also
runs against the broken scalers in tests/broken_mixed_precision.py and must catch them."""
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm.nn import Parameter
from tinygrad_llm.optim import SGD, GradScaler

import broken_mixed_precision as broken

pytestmark = pytest.mark.scaling

shapes = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 5)), min_size=1, max_size=3)
power_of_two_scales = st.integers(0, 20).map(lambda k: 2.0**k)
# The checks report a failing example as drawn: every example already fails on a broken scaler, and shrinking
# it cost seconds per run. The examples are small enough to read unshrunk.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)


def make_parameters(shape_list, seed):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(shape).astype(np.float32)) for shape in shape_list]


def scaled_step(scaler, optimizer, params, grads) -> None:
    """Leave S * grads in .grad, as backward of scaler.scale(loss) would; unscale (as before clipping), step, update."""
    for p, g in zip(params, grads):
        p.grad = (g * np.float32(scaler.get_scale())).astype(np.float32)
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()


# ------------------------------------------------------------------ the checks (each takes a scaler class)
def check_overflow_skips_the_step_and_halves_the_scale(scaler_class):
    @given(shapes, st.integers(0, 2**16), power_of_two_scales, st.sampled_from([np.inf, -np.inf, np.nan]))
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def overflowed_step(shape_list, seed, init_scale, bad_value):
        params = make_parameters(shape_list, seed)
        before = [p.data.copy() for p in params]
        scaler, optimizer = scaler_class(init_scale=init_scale), SGD(params, lr=0.1)
        grads = [np.ones(p.shape, np.float32) for p in params]
        rng = np.random.default_rng(seed)
        victim = grads[rng.integers(len(grads))]
        victim.flat[rng.integers(victim.size)] = bad_value
        scaled_step(scaler, optimizer, params, grads)
        for p, old in zip(params, before):
            np.testing.assert_array_equal(p.data, old)  # a skipped step changes no weight
        assert scaler.get_scale() == init_scale * 0.5 and scaler.skipped_steps == 1 and scaler.growth_tracker == 0

    overflowed_step()


def check_clean_step_equals_the_unscaled_step(scaler_class):
    """Backward of S * loss, unscale_ (the caller's, as before clipping), step == the plain step on the loss."""
    @given(shapes, st.integers(0, 2**16), power_of_two_scales)
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def clean_step(shape_list, seed, init_scale):
        params, twins = make_parameters(shape_list, seed), make_parameters(shape_list, seed)
        coefficients = [tgl.tensor(np.random.default_rng(seed + 1).standard_normal(p.shape).astype(np.float32))
                        for p in params]
        scaler, optimizer, plain = scaler_class(init_scale=init_scale), SGD(params, lr=0.1), SGD(twins, lr=0.1)
        scaler.scale(sum((p * c).sum() for p, c in zip(params, coefficients))).backward()
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        sum((p * c).sum() for p, c in zip(twins, coefficients)).backward()
        plain.step()
        for p, twin in zip(params, twins):
            np.testing.assert_array_equal(p.data, twin.data)  # S a power of two: scaling and unscaling are exact

    clean_step()


def check_scale_follows_overflows_and_clean_runs(scaler_class):
    """Any sequence of overflowed and clean steps: the scale, the skipped count and the weights follow the rule
    halve-and-skip on overflow, double after growth_interval clean steps in a row."""
    @given(st.lists(st.booleans(), max_size=12), st.integers(1, 4))
    @settings(report_multiple_bugs=False, phases=NO_SHRINKING)
    def sequence(overflows, growth_interval):
        params = make_parameters([(2, 3)], 0)
        scaler, optimizer = scaler_class(init_scale=2.0**10, growth_interval=growth_interval), SGD(params, lr=0.1)
        expected_scale, clean_run = 2.0**10, 0
        for overflow in overflows:
            before = params[0].data.copy()
            grad = np.full((2, 3), np.inf if overflow else 0.5, np.float32)
            scaled_step(scaler, optimizer, params, [grad])
            if overflow:
                expected_scale, clean_run = expected_scale / 2, 0
                np.testing.assert_array_equal(params[0].data, before)
            else:
                clean_run += 1
                if clean_run == growth_interval:
                    expected_scale, clean_run = expected_scale * 2, 0
                np.testing.assert_allclose(params[0].data, before - 0.05)
            assert scaler.get_scale() == expected_scale
        assert scaler.skipped_steps == sum(overflows)

    sequence()


@pytest.mark.parametrize("check", [check_overflow_skips_the_step_and_halves_the_scale,
                                   check_clean_step_equals_the_unscaled_step,
                                   check_scale_follows_overflows_and_clean_runs])
def test_the_scaler_passes_its_checks(check):
    check(GradScaler)


@pytest.mark.broken
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("check, broken_scaler", [
    (check_overflow_skips_the_step_and_halves_the_scale, broken.ScalerThatStepsOnInf),
    (check_scale_follows_overflows_and_clean_runs, broken.ScalerThatStepsOnInf),
    (check_clean_step_equals_the_unscaled_step, broken.ScalerThatUnscalesTwice),
], ids=lambda x: getattr(x, "__name__", ""))
def test_the_checks_catch_the_broken_scalers(check, broken_scaler):
    with pytest.raises(Exception):  # hypothesis may group several distinct failures
        check(broken_scaler)


# ------------------------------------------------------------------ state, misuse, and the disabled scaler
@given(st.lists(st.booleans(), max_size=8), st.lists(st.booleans(), max_size=8), st.integers(1, 3))
def test_state_round_trips_and_the_copy_behaves_identically(first, then, growth_interval):
    params = make_parameters([(3,)], 0)
    scaler = GradScaler(init_scale=2.0**8, growth_interval=growth_interval)
    optimizer = SGD(params, lr=0.1)
    for overflow in first:
        scaled_step(scaler, optimizer, params, [np.full(3, np.inf if overflow else 1.0, np.float32)])
    restored = GradScaler()
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == scaler.state_dict()
    twin_params = [Parameter(params[0].data.copy())]
    twin_optimizer = SGD(twin_params, lr=0.1)
    for overflow in then:
        grad = np.full(3, np.inf if overflow else 1.0, np.float32)
        scaled_step(scaler, optimizer, params, [grad])
        scaled_step(restored, twin_optimizer, twin_params, [grad])
    assert restored.state_dict() == scaler.state_dict()
    np.testing.assert_array_equal(twin_params[0].data, params[0].data)


def test_unscaling_twice_or_stepping_twice_in_one_step_raises():
    params = make_parameters([(2,)], 0)
    scaler, optimizer = GradScaler(), SGD(params, lr=0.1)
    params[0].grad = np.ones(2, np.float32)
    scaler.unscale_(optimizer)
    with pytest.raises(RuntimeError, match="unscale_.*already.*twice"):
        scaler.unscale_(optimizer)
    scaler.step(optimizer)
    with pytest.raises(RuntimeError, match="step: already called"):
        scaler.step(optimizer)
    scaler.update()
    scaler.unscale_(optimizer)  # a new step may unscale again


def test_a_disabled_scaler_passes_everything_through():
    params = make_parameters([(2,)], 0)
    scaler, optimizer = GradScaler(enabled=False), SGD(params, lr=0.1)
    loss = (params[0] * 2).sum()
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    loss.backward()
    scaler.unscale_(optimizer)
    assert scaler.step(optimizer) and not scaler.found_inf(optimizer)
    scaler.update()
    np.testing.assert_allclose(params[0].data, make_parameters([(2,)], 0)[0].data - 0.2)


def test_loss_scaling_is_for_training_an_inference_output_has_no_backward():
    """M40: a loss scaler does nothing for inference. An output computed under no_grad has no graph, so
    scaling it is refused with an explanation, and calling backward on it raises too."""
    params = make_parameters([(2, 2)], 0)
    with tgl.no_grad():
        output = (params[0] * 3).sum()
    with pytest.raises(RuntimeError, match="training tool.*inference"):
        GradScaler().scale(output)
    with pytest.raises(RuntimeError, match="does not require grad.*Inference needs no backward"):
        output.backward()


@pytest.mark.parametrize("bad, message", [(dict(init_scale=0), "init_scale"), (dict(growth_factor=1.0), "growth_factor"),
                                          (dict(backoff_factor=1.5), "backoff_factor"),
                                          (dict(growth_interval=0), "growth_interval")])
def test_bad_settings_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=f"GradScaler: {message}"):
        GradScaler(**bad)
