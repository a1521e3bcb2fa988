"""The offline corpus, the character vocabulary, next-token batches and checkpoints."""
import numpy as np
import pytest

from tinygrad_llm.checkpoint import load_checkpoint, save_checkpoint
from tinygrad_llm.data import embedded_text, load_text, train_val_split

pytestmark = pytest.mark.lm


def test_embedded_corpus_is_offline_english_prose_and_deterministic():
    text = embedded_text()
    assert len(text) > 300_000
    assert 60 <= len(set(text)) <= 200
    assert text == embedded_text()
    assert "statement" in text


def test_split_is_contiguous_and_complete():
    text = embedded_text()
    train, val = train_val_split(text, 0.1)
    assert train + val == text
    assert abs(len(val) - 0.1 * len(text)) <= 1


def test_load_text_from_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("hello ", encoding="utf-8")
    (tmp_path / "b.txt").write_text("world", encoding="utf-8")
    assert load_text(str(tmp_path / "a.txt")) == "hello "
    assert load_text(str(tmp_path)) == "hello \n\nworld"
    with pytest.raises(FileNotFoundError, match="neither"):
        load_text(str(tmp_path / "missing.txt"))


def test_checkpoint_round_trip_without_pickle(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3)}
    path = save_checkpoint(tmp_path / "ck.npz", arrays, {"step": 7, "chars": ["a", "b"]})
    loaded, meta = load_checkpoint(path)
    assert meta == {"step": 7, "chars": ["a", "b"]}
    for k in arrays:
        np.testing.assert_array_equal(loaded[k], arrays[k])
        assert loaded[k].dtype == arrays[k].dtype
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"], "no temporary file may be left behind"
