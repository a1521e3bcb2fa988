"""Learning checks for the shared training loop: resuming is bit-exact, gradient accumulation equals a
bigger batch, logs are written, early stopping restores the best weights, and every way a checkpoint can
be wrong gives a clear error that changes nothing."""
import json
import math

import numpy as np
import pytest

import tinygrad_llm as tgl
from tinygrad_llm.checkpoint import CheckpointError
from tinygrad_llm.training import TrainConfig, build_model, load_trained_model, train_language_model

pytestmark = pytest.mark.training


def tiny(model="mlp", **overrides) -> TrainConfig:
    settings = dict(model=model, max_chars=6000, context_size=16, batch_size=4, embed_dim=16, hidden_dim=24,
                    num_layers=1, num_heads=2, steps=12, warmup_steps=2, eval_every=4, eval_batches=2, lr=3e-3)
    settings.update(overrides)
    return TrainConfig(**settings)


def weights(model) -> dict:
    return {name: value.copy() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("model, dropout", [("mlp", 0.0), ("gru", 0.2), ("gpt", 0.2)])
def test_resuming_equals_one_uninterrupted_run_to_the_bit(tmp_path, model, dropout):
    """Train 8 steps, stop, resume, train 4 more == train 12 in one go (dropout tests the library generator)."""
    config = tiny(model, dropout=dropout, num_layers=2)
    whole = train_language_model(config, out_dir=tmp_path / "whole", progress=False)
    train_language_model(config, out_dir=tmp_path / "parts", stop_after_step=8, progress=False)
    resumed = train_language_model(config, out_dir=tmp_path / "parts", resume_from=tmp_path / "parts/checkpoint.npz",
                                   progress=False)
    for name, value in weights(whole.model).items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value, err_msg=name)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in whole.history]
    assert [r["step"] for r in resumed.history] == [4, 8, 12]


def test_gradient_accumulation_equals_one_bigger_batch():
    """Two micro-batches of 4 (loss / 2 each, gradients summed) == one batch of 8 drawn in the same order."""
    one_step = dict(steps=1, warmup_steps=0, eval_every=1, clip_norm=0.0)
    big = train_language_model(tiny(batch_size=8, **one_step), progress=False)
    accumulated = train_language_model(tiny(batch_size=4, grad_accum_steps=2, **one_step), progress=False)
    for name, value in weights(big.model).items():
        np.testing.assert_allclose(accumulated.model.state_dict()[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_logs_and_plot_are_written_with_a_strictly_increasing_step(tmp_path):
    run = train_language_model(tiny(), out_dir=tmp_path, progress=False)
    logged = json.loads((tmp_path / "history.json").read_text())
    steps = [row["step"] for row in logged["history"]]
    assert steps == sorted(set(steps)) == [4, 8, 12]
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("step,tokens,train_loss,val_loss")
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    assert run.history[-1]["tokens"] == 12 * 4 * 16


def test_training_lowers_the_loss_from_ln_v():
    run = train_language_model(tiny(steps=60, eval_every=60, eval_batches=4), progress=False)
    ln_v = math.log(run.tokenizer.vocab_size)
    assert run.final["val_loss"] < ln_v - 0.5, (run.final, ln_v)


def test_early_stopping_stops_and_restores_the_best_weights():
    """A learning rate far too high makes val loss worse after the first evaluation: the run stops and
    the model holds the weights of its best evaluation."""
    config = tiny(lr=3.0, warmup_steps=0, steps=40, eval_every=2, early_stopping_patience=2)
    messages = []
    run = train_language_model(config, progress=False, print_fn=messages.append)
    assert run.stopped_early and run.history[-1]["step"] < 40
    assert messages[-1].startswith("early stopping") and messages[0].startswith("step")
    best = min(run.history, key=lambda r: r["val_loss"])
    from tinygrad_llm.training.loop import estimate_loss

    again = estimate_loss(run.model, run.val_ids, config, np.random.default_rng([config.seed, 3, best["step"]]))
    assert again == pytest.approx(best["val_loss"], rel=1e-6)


def test_resuming_with_a_different_configuration_names_the_differences(tmp_path):
    train_language_model(tiny(), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"embed_dim: checkpoint 16 vs now 32"):
        train_language_model(tiny(embed_dim=32), resume_from=tmp_path / "checkpoint.npz", progress=False)


def test_corrupt_truncated_and_foreign_checkpoints_give_clear_errors_and_change_nothing(tmp_path):
    train_language_model(tiny(), out_dir=tmp_path, progress=False)
    good = tmp_path / "checkpoint.npz"
    original = good.read_bytes()
    truncated, garbage, foreign = tmp_path / "truncated.npz", tmp_path / "garbage.npz", tmp_path / "foreign.npz"
    truncated.write_bytes(original[: len(original) // 2])
    garbage.write_bytes(b"not a checkpoint at all")
    np.savez(foreign, weights=np.ones(3))
    for path in (truncated, garbage, foreign):
        with pytest.raises(CheckpointError, match="checkpoint"):
            load_trained_model(path)
        with pytest.raises(CheckpointError):
            train_language_model(tiny(), resume_from=path, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_trained_model(tmp_path / "missing.npz")
    assert good.read_bytes() == original
    model, tokenizer, metadata = load_trained_model(good)
    assert metadata["state"]["step"] == 12 and tokenizer.vocab_size == model.vocab_size


def test_a_checkpoint_loads_into_the_same_model_and_not_into_another(tmp_path):
    run = train_language_model(tiny("gpt"), out_dir=tmp_path, progress=False)
    model, tokenizer, _ = load_trained_model(tmp_path / "checkpoint.npz")
    ids = run.val_ids[None, :16]
    with tgl.no_grad():
        np.testing.assert_array_equal(model(ids).data, run.model.eval()(ids).data)
    other = build_model(tiny("gpt", embed_dim=32), tokenizer.vocab_size)
    with pytest.raises(KeyError, match="shape mismatches"):
        other.load_state_dict(model.state_dict())


@pytest.mark.parametrize("kind", ["bigram", "mlp", "rnn", "lstm", "gru", "gpt"])
def test_every_model_kind_trains_with_the_same_loop(kind):
    run = train_language_model(tiny(kind, steps=4, eval_every=4), progress=False)
    assert np.isfinite(run.final["val_loss"]) and run.history[-1]["step"] == 4


def test_bad_configurations_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="model must be one of"):
        TrainConfig(model="transformerxl")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TrainConfig(embed_dim=130, num_heads=4)
    with pytest.raises(ValueError, match="context_size"):
        train_language_model(tiny(max_chars=100, context_size=64), progress=False)
