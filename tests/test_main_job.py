"""The main job and the `sample` command, end to end in a tiny configuration (a subprocess, as a user runs it)."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lm

TINY = ["--max-chars", "8000", "--steps", "20", "--warmup-steps", "2", "--eval-every", "10", "--eval-batches", "2",
        "--context-size", "32", "--embed-dim", "32", "--num-layers", "1", "--num-heads", "2", "--no-progress"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinygrad_llm", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    result = run_cli("train", *TINY, "--out-dir", str(out_dir), "--samples", "1", "--sample-tokens", "30")
    assert result.returncode == 0, result.stderr
    return out_dir, result.stdout


def test_train_reports_held_out_perplexity_saves_a_checkpoint_and_prints_samples(trained):
    out_dir, stdout = trained
    assert "perplexity" in stdout and "--- sample 1" in stdout
    for name in ("checkpoint.npz", "history.csv", "history.json", "loss_curve.png"):
        assert (out_dir / name).exists(), name


def test_sample_continues_a_prompt_from_the_checkpoint(trained):
    out_dir, _ = trained
    result = run_cli("sample", "--checkpoint", str(out_dir / "checkpoint.npz"), "--prompt", "The ",
                     "--max-new-tokens", "25", "--top-k", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ") and len(result.stdout) > len("The ")
    greedy = [run_cli("sample", "--checkpoint", str(out_dir / "checkpoint.npz"), "--prompt", "The ",
                      "--max-new-tokens", "25", "--temperature", "0", "--seed", str(seed)).stdout for seed in (1, 2)]
    assert greedy[0] == greedy[1], "greedy decoding must not depend on the seed"


def test_sample_explains_bad_prompts_and_bad_checkpoints(trained, tmp_path):
    out_dir, _ = trained
    too_long = run_cli("sample", "--checkpoint", str(out_dir / "checkpoint.npz"), "--prompt", "x" * 40)
    assert too_long.returncode != 0 and "context" in too_long.stderr
    unknown = run_cli("sample", "--checkpoint", str(out_dir / "checkpoint.npz"), "--prompt", "\u2603 snowman")
    assert unknown.returncode != 0 and "\u2603" in unknown.stderr
    missing = run_cli("sample", "--checkpoint", str(tmp_path / "nope.npz"), "--prompt", "a")
    assert missing.returncode != 0 and "no checkpoint" in missing.stderr


def test_help_documents_every_choice():
    out = run_cli("train", "--help").stdout
    for flag in ("--model", "--corpus", "--tokenizer", "--context-size", "--steps", "--lr", "--warmup-steps",
                 "--grad-accum-steps", "--resume", "--out-dir"):
        assert flag in out, flag
    assert "bigram, mlp, rnn, lstm, gru, gpt" in out
    assert "--top-p" in run_cli("sample", "--help").stdout
