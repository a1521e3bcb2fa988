"""`train --dp-sigma S --dp-clip C` (Q37, M58): the whole GPT's batched per-example gradients held to a loop over
examples (learned positions included, tied and untied), one DP step with sigma = 0 and C = inf equal to the plain
step, the epsilon a run prints and saves equal to the accountant's for its (q, sigma, steps, delta), a resume that
keeps counting, and the settings DP-SGD refuses."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_llm.__main__ import main
from tinygrad_llm.experiments.private_language_model import private_against_plain
from tinygrad_llm.nn import GPT, MLPLanguageModel, RecurrentLanguageModel
from tinygrad_llm.random import manual_seed
from tinygrad_llm.responsible.per_example_gradients import per_example_gradients, per_example_gradients_by_loop
from tinygrad_llm.responsible.rdp_accountant import epsilon_after
from tinygrad_llm.training import TrainConfig, build_optimizer, load_trained_model, train_language_model
from tinygrad_llm.training.loop import language_model_loss
from tinygrad_llm.training.private_training import (PrivateTraining, private_windows, privacy_spent,
                                                    window_losses)

pytestmark = pytest.mark.responsible

# A run of a few seconds: 12 DP steps of a one-block GPT on 3,000 characters.
TINY = dict(max_chars=3000, context_size=12, batch_size=6, embed_dim=16, num_heads=2, num_layers=1, steps=12,
            warmup_steps=2, eval_every=6, eval_batches=2, dp_sigma=1.0, dp_clip=1.0)
TINY_FLAGS = [f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()]


def assert_same_gradients(batched, looped):
    assert batched.keys() == looped.keys()
    for name in batched:
        np.testing.assert_allclose(batched[name], looped[name], rtol=1e-4, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------ per-example gradients of whole models
@settings(max_examples=6)
@given(seed=st.integers(0, 10**6), batch=st.integers(1, 4), length=st.integers(1, 5), tie_weights=st.booleans(),
       positions=st.sampled_from(["learned", "sinusoidal", "rope"]))
def test_a_gpts_batched_per_example_gradients_equal_a_loop_over_examples(seed, batch, length, tie_weights,
                                                                           positions):
    manual_seed(seed)
    model = GPT(9, context_size=5, embed_dim=8, num_heads=2, num_layers=2, tie_weights=tie_weights,
                positions=positions)
    rng = np.random.default_rng(seed)
    ids, targets = rng.integers(0, 9, (batch, length)), rng.integers(0, 9, (batch, length))
    batched = per_example_gradients(model, window_losses, ids, targets)
    assert_same_gradients(batched, per_example_gradients_by_loop(model, window_losses, ids, targets))
    if positions == "learned":  # each example's position rows: only the ones its window reached
        assert np.all(batched["position_embedding.weight"][:, length:] == 0)


def test_the_mlp_language_models_per_example_gradients_equal_the_loop():
    manual_seed(0)
    model = MLPLanguageModel(7, block_size=3, embed_dim=4, hidden_dim=8)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 7, (3, 5)), rng.integers(0, 7, (3, 5))
    assert_same_gradients(per_example_gradients(model, window_losses, ids, targets),
                          per_example_gradients_by_loop(model, window_losses, ids, targets))


def test_a_recurrent_model_is_refused_naming_its_layer():
    with pytest.raises(TypeError, match="LSTM.*per_example_gradients_by_loop"):
        per_example_gradients(RecurrentLanguageModel(5, cell="lstm", embed_dim=4, hidden_dim=4), window_losses,
                              np.zeros((2, 3), int), np.zeros((2, 3), int))


# ------------------------------------------------------------------ the DP step against the plain step
def test_windows_are_disjoint_chunks_of_context_plus_one_tokens():
    inputs, targets = private_windows(np.arange(23), context_size=4)
    np.testing.assert_array_equal(inputs, [[0, 1, 2, 3], [5, 6, 7, 8], [10, 11, 12, 13], [15, 16, 17, 18]])
    np.testing.assert_array_equal(targets, inputs + 1)


@settings(max_examples=4)
@given(seed=st.integers(0, 10**6), windows=st.integers(1, 4), context_size=st.integers(2, 6))
def test_with_sigma_0_and_c_inf_a_dp_step_is_the_plain_step(seed, windows, context_size):
    """batch_size = the number of windows makes q = 1: every window is drawn and the expected batch is the actual
    one, so without clipping or noise the DP gradient must be the plain loop's, and so must the AdamW step (compared
    where the gradient is more than round-off: the keys' bias has an exact zero gradient, whose float noise AdamW's
    g / sqrt(v) would blow up to a full learning-rate step either way)."""
    config = TrainConfig(context_size=context_size, batch_size=windows, embed_dim=8, num_heads=2, num_layers=1,
                         steps=5, warmup_steps=1, dp_sigma=0.0, dp_clip=math.inf)
    train_ids = np.random.default_rng(seed).integers(0, 11, windows * (context_size + 1))
    models = []
    for _ in range(2):
        manual_seed(seed)
        models.append(GPT(11, context_size=context_size, embed_dim=8, num_heads=2, num_layers=1))
    plain, private = models
    optimizer, scheduler = build_optimizer(plain, config)
    language_model_loss(plain, *private_windows(train_ids, context_size)).backward()
    optimizer.step()
    scheduler.step()
    PrivateTraining(train_ids, config).optimizer_step(private, *build_optimizer(private, config),
                                                      np.random.default_rng(seed))
    for (name, p), q in zip(plain.named_parameters(), private.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-4, atol=1e-7, err_msg=name)
        above_round_off = np.abs(p.grad) > 1e-5
        np.testing.assert_allclose(q.data[above_round_off], p.data[above_round_off], rtol=1e-5, atol=1e-7,
                                   err_msg=name)


# ------------------------------------------------------------------ a DP run: epsilon printed, saved, resumed
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same DP run in one go, and stopped at step 6 then resumed to 12."""
    whole, split = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("split")
    lines = []
    config = TrainConfig(**TINY)
    run = train_language_model(config, out_dir=whole, progress=False, print_fn=lines.append)
    train_language_model(config, out_dir=split, progress=False, stop_after_step=6)
    resumed = train_language_model(config, out_dir=split, resume_from=split / "checkpoint.npz", progress=False)
    return run, resumed, lines


def test_the_reported_epsilon_is_the_accountants_for_q_sigma_steps_and_delta(runs):
    run, _, lines = runs
    windows = len(private_windows(run.train_ids, TINY["context_size"])[0])
    expected = epsilon_after(TINY["steps"], TINY["batch_size"] / windows, TINY["dp_sigma"], 1 / windows)
    assert run.final["epsilon"] == pytest.approx(expected, rel=1e-12)
    assert run.final["delta"] == 1 / windows
    assert f"eps={expected:.3f} (delta={1 / windows:.1e})" in lines[-1]
    halfway = epsilon_after(6, TINY["batch_size"] / windows, TINY["dp_sigma"], 1 / windows)
    assert run.history[0]["epsilon"] == pytest.approx(halfway) and halfway < expected
    assert privacy_spent(load_trained_model(run.checkpoint)[2]) == {"epsilon": run.final["epsilon"],
                                                                    "delta": run.final["delta"]}


def test_a_resumed_run_counts_the_steps_already_spent_and_trains_the_same(runs):
    run, resumed, _ = runs
    assert resumed.final["epsilon"] == pytest.approx(run.final["epsilon"], rel=1e-12)
    for (name, p), q in zip(run.model.named_parameters(), resumed.model.parameters()):
        np.testing.assert_array_equal(q.data, p.data, err_msg=name)  # sampling and noise resume with the data rng


def test_a_plain_checkpoint_has_no_epsilon_to_report():
    with pytest.raises(ValueError, match="not trained with DP-SGD"):
        privacy_spent({"state": {"history": [{"step": 2, "val_loss": 3.0}]}})


def test_the_train_command_prints_epsilon(tmp_path, capsys):
    assert main(["train", *TINY_FLAGS, "--steps=6", "--eval-every=3", "--samples=0", "--no-progress",
                 f"--out-dir={tmp_path}"]) == 0
    output = capsys.readouterr().out
    printed = [line for line in output.splitlines() if line.startswith("step")]
    assert len(printed) == 2 and all("eps=" in line and "(delta=" in line for line in printed)
    assert "-differentially private for each window of 13 training tokens" in output


def test_private_against_plain_experiment():
    """Structure and what holds by construction: epsilon falls with sigma, clipping alone buys none, plain training
    reports none. Which run reaches the lower loss is measured, not asserted (20 steps decide little)."""
    result = private_against_plain(fast=True)
    runs = result["runs"]
    assert list(runs) == ["plain", "clipping_only", "sigma=0.5", "sigma=1.0"]
    assert runs["plain"]["epsilon"] is None and runs["clipping_only"]["epsilon"] == math.inf
    assert math.inf > runs["sigma=0.5"]["epsilon"] > runs["sigma=1.0"]["epsilon"] > 0
    assert all(math.isfinite(run["val_loss"]) and run["val_loss"] > 0 for run in runs.values())


# ------------------------------------------------------------------ what DP-SGD refuses
@pytest.mark.parametrize("setting, message", [
    (dict(dp_sigma=1.0, dp_clip=0.0), "dp_clip > 0"),
    (dict(dp_sigma=-1.0, dp_clip=0.0), "dp_sigma >= 0"),
    (dict(grad_accum_steps=2), "grad_accum_steps=2"),
    (dict(precision="bf16"), "precision 'bf16'"),
    (dict(data_parallel=True), "data_parallel"),
    (dict(device="cuda"), "device 'cuda'"),
    (dict(objective="mlm"), "objective 'mlm'"),
    (dict(model="lstm"), "model 'lstm'"),
    (dict(dp_delta=1.0), "dp_delta"),
])
def test_dp_sgd_refuses_what_breaks_its_bound(setting, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TrainConfig(**{**TINY, **setting})


def test_a_corpus_with_fewer_windows_than_the_batch_is_refused():
    with pytest.raises(ValueError, match="fewer than batch_size=6"):
        PrivateTraining(np.arange(30), TrainConfig(**TINY))
