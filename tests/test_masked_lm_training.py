"""Learning checks for `train --objective mlm` (Q26): the shared loop trains a MaskedLanguageModel on masked
windows, its loss is the masked-LM loss of those windows, a run resumes to the bit, the checkpoint takes a
new head through from_pretrained, and a masked LM refuses to generate."""
import numpy as np
import pytest

from tinygrad_llm.__main__ import main
from tinygrad_llm.data import IGNORE_INDEX, CharTokenizer, random_windows
from tinygrad_llm.generation import generate
from tinygrad_llm.training import TrainConfig, load_trained_model, train_language_model
from tinygrad_llm.training.loop import language_model_loss
from tinygrad_llm.training.objectives import build_objective, next_token
from tinygrad_llm.transfer.masked_language_model import MaskedLanguageModel
from tinygrad_llm.transfer.masking import masked_lm_loss
from tinygrad_llm.transfer.pretrained import from_pretrained

pytestmark = pytest.mark.pretraining


def tiny_mlm(**overrides) -> TrainConfig:
    settings = dict(objective="mlm", max_chars=6000, context_size=16, batch_size=4, embed_dim=16, num_layers=2,
                    num_heads=2, steps=12, warmup_steps=2, eval_every=4, eval_batches=2, lr=3e-3)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_the_mlm_objective_masks_windows_and_scores_only_the_masked_tokens():
    tokenizer = CharTokenizer.train("the quick brown fox jumps over the lazy dog " * 20)
    ids = np.asarray(tokenizer.encode("the quick brown fox jumps over the lazy dog " * 20))
    objective = build_objective(tiny_mlm(), tokenizer)
    windows, shifted = random_windows(ids, 32, 64, np.random.default_rng(0))
    inputs, targets = objective(windows, shifted, np.random.default_rng(1))
    scored = targets != IGNORE_INDEX
    assert 0.10 < scored.mean() < 0.20, "about 15% of the tokens are scored"
    np.testing.assert_array_equal(targets[scored], windows[scored])  # the hidden token itself, not the next one
    np.testing.assert_array_equal(inputs[~scored], windows[~scored])  # the rest is read as it is
    assert (inputs[scored] == tokenizer.mask_id).mean() > 0.6
    model = MaskedLanguageModel(tokenizer.vocab_size, context_size=32, embed_dim=16, num_heads=2, num_layers=1)
    assert language_model_loss(model, inputs, targets).item() == pytest.approx(
        masked_lm_loss(model(inputs), targets).item(), rel=1e-6)
    assert next_token(windows, shifted, None) == (windows, shifted)  # causal: the windows as drawn


def test_an_mlm_run_resumes_to_the_bit(tmp_path):
    """The masks are drawn from the data generator, which the checkpoint saves: 8 + 4 steps == 12 steps."""
    config = tiny_mlm(dropout=0.1)
    whole = train_language_model(config, out_dir=tmp_path / "whole", progress=False)
    assert isinstance(whole.model, MaskedLanguageModel)
    train_language_model(config, out_dir=tmp_path / "parts", stop_after_step=8, progress=False)
    resumed = train_language_model(config, out_dir=tmp_path / "parts", resume_from=tmp_path / "parts/checkpoint.npz",
                                   progress=False)
    for name, value in whole.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value, err_msg=name)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in whole.history]


def test_the_command_trains_reports_and_the_checkpoint_takes_a_new_head(tmp_path, capsys):
    out = tmp_path / "mlm"
    assert main(["train", "--objective", "mlm", "--max-chars", "6000", "--context-size", "16", "--batch-size", "4",
                 "--embed-dim", "16", "--num-layers", "1", "--num-heads", "2", "--steps", "6", "--warmup-steps", "1",
                 "--eval-every", "3", "--eval-batches", "1", "--no-progress", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Masked-token accuracy on the validation split" in printed and "filled in" in printed
    trained, tokenizer, _ = load_trained_model(out / "checkpoint.npz")
    assert isinstance(trained, MaskedLanguageModel)

    classifier, report = from_pretrained(out / "checkpoint.npz", head="sequence_classification", strict=False,
                                         num_classes=3)
    assert report.missing_keys == ["head.classifier.weight", "head.classifier.bias"]
    assert report.unexpected_keys and all(key.startswith("head.") for key in report.unexpected_keys)
    for name, value in trained.base.state_dict().items():
        np.testing.assert_array_equal(classifier.base.state_dict()[name], value, err_msg=name)
    assert classifier(np.array([[1, 2, 3]])).shape == (1, 3)
    with pytest.raises(KeyError, match="strict=False"):
        from_pretrained(out / "checkpoint.npz", head="sequence_classification")
    with pytest.raises(ValueError, match="not a causal language model.*fills in blanks"):
        generate(trained, np.array([1, 2]), 3)


def test_bad_mlm_configurations_name_the_reason():
    with pytest.raises(ValueError, match="objective 'mlm' trains a Transformer encoder.*--model gpt"):
        TrainConfig(objective="mlm", model="lstm")
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainConfig(objective="mask")
    with pytest.raises(ValueError, match="mask_rate must be in"):
        TrainConfig(objective="mlm", mask_rate=0.0)
