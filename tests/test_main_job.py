"""The main job (character MLP language model) and the command line, in a tiny configuration."""
import math
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_llm as tgl
from tinygrad_llm.char_lm_training import CharLMConfig, train_char_lm
from tinygrad_llm.checkpoint import load_checkpoint
from tinygrad_llm.nn import MLPLanguageModel
from tinygrad_llm.nn import functional as F

pytestmark = pytest.mark.lm


def test_initial_loss_is_about_log_vocab_size():
    tgl.manual_seed(0)
    model = MLPLanguageModel(vocab_size=50, block_size=4)
    contexts = np.random.default_rng(0).integers(0, 50, size=(256, 4))
    targets = np.random.default_rng(1).integers(0, 50, size=256)
    assert abs(F.cross_entropy(model(contexts), targets).item() - math.log(50)) < 0.1


def test_training_beats_the_uniform_baseline_and_saves_a_loadable_checkpoint(tmp_path):
    config = CharLMConfig(max_chars=20_000, steps=150, eval_every=150, batch_size=64, warmup_steps=10)
    result = train_char_lm(config, checkpoint_path=tmp_path / "lm.npz", progress=False)
    assert result["val_loss"] < result["uniform_loss"] - 0.5
    arrays, meta = load_checkpoint(tmp_path / "lm.npz")
    fresh = MLPLanguageModel(len(meta["chars"]), config.block_size, config.embed_dim, config.hidden_dim)
    fresh.load_state_dict(arrays)
    contexts = np.zeros((2, config.block_size), dtype=np.int64)
    np.testing.assert_array_equal(fresh(contexts).data, result["model"](contexts).data)


def test_same_seed_same_run():
    config = CharLMConfig(max_chars=5_000, steps=20, eval_every=20, batch_size=16, warmup_steps=2)
    a = train_char_lm(config, progress=False)
    b = train_char_lm(config, progress=False)
    assert a["val_loss"] == b["val_loss"]


def test_generate_extends_the_context_by_the_requested_length():
    tgl.manual_seed(0)
    model = MLPLanguageModel(vocab_size=10, block_size=3)
    out = model.generate([1, 2, 3], num_tokens=7)
    assert out.shape == (7,) and out.min() >= 0 and out.max() < 10
    with pytest.raises(ValueError, match="block_size=3"):
        model.generate([1], num_tokens=2)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinygrad_llm", *args], capture_output=True, text=True, timeout=300)


def test_cli_train_runs_end_to_end(tmp_path):
    out = run_cli("train", "--steps", "30", "--warmup-steps", "3", "--eval-every", "30", "--max-chars", "5000", "--samples", "1",
                  "--sample-length", "20", "--checkpoint", str(tmp_path / "c.npz"))
    assert out.returncode == 0, out.stderr
    assert "val loss" in out.stdout and "sample 1" in out.stdout
    assert (tmp_path / "c.npz").exists()


def test_cli_help_documents_every_flag():
    out = run_cli("train", "--help")
    assert out.returncode == 0
    for flag in ("--steps", "--lr", "--corpus", "--block-size", "--checkpoint", "--temperature"):
        assert flag in out.stdout
