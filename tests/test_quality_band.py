"""The library's GPT trained on the same batches as its PyTorch twin stays with it, step for step.

This is the quality band's mechanism at toy size: same initial weights, same batches, same AdamW, schedule
and clipping; any difference in any op's forward or backward, the optimizer or the schedule shows up as
diverging losses."""
import pytest

from tinygrad_llm.benchmarks.quality import run_quality_benchmark

pytestmark = [pytest.mark.lm, pytest.mark.oracle]


def test_library_gpt_and_its_pytorch_twin_reach_the_same_losses(tmp_path):
    pytest.importorskip("torch")
    report = run_quality_benchmark("embedded", steps=30, eval_every=10, eval_batches=3, final_eval_batches=4,
                                   max_chars=20_000, out=tmp_path / "q.json", verbose=False)
    for record in report["history"]:
        assert record["library_train_batch_loss"] == pytest.approx(record["torch_train_batch_loss"], abs=2e-3)
        assert record["library_val_loss"] == pytest.approx(record["torch_val_loss"], abs=2e-3)
    assert report["history"][-1]["library_val_loss"] < report["history"][0]["library_val_loss"]
    assert (tmp_path / "q.json").exists()
