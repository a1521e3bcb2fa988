"""The progress store keeps a learner's work through corrupt files and interrupted saves."""
import json
import os
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_llm import learner_progress
from tinygrad_llm.learner_progress import load_progress, progress_path, save_progress

pytestmark = pytest.mark.bank


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv("TGL_PROGRESS_FILE", str(path))
    return path


def test_the_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TGL_PROGRESS_FILE", str(tmp_path / "mine.json"))
    assert progress_path() == tmp_path / "mine.json"
    monkeypatch.delenv("TGL_PROGRESS_FILE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if os.name != "nt":
        assert progress_path() == tmp_path / "data" / "tinygrad_llm" / "progress.json"


def test_a_missing_file_is_empty_progress(progress_file):
    assert load_progress("quiz") == {}
    assert not progress_file.exists()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)


@settings(max_examples=15)
@given(quiz=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
       exercises=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_saving_one_section_keeps_the_others(tmp_path_factory, quiz, exercises):
    path = tmp_path_factory.mktemp("progress") / "progress.json"
    with mock.patch.dict(os.environ, {"TGL_PROGRESS_FILE": str(path)}):  # monkeypatch is per test, not per example
        save_progress("exercises", exercises)
        save_progress("quiz", quiz)
        assert load_progress("quiz") == quiz
        assert load_progress("exercises") == exercises


def test_an_interrupted_save_leaves_the_old_file_whole(progress_file, monkeypatch):
    save_progress("quiz", {"Q1": {"box": 2}})
    before = progress_file.read_bytes()

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(learner_progress.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_progress("quiz", {"Q1": {"box": 3}})
    assert progress_file.read_bytes() == before
    assert [p.name for p in progress_file.parent.iterdir()] == ["progress.json"]  # no temporary file left behind


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe binary", b"[1, 2, 3]"])
def test_a_corrupt_file_is_moved_aside_and_progress_goes_on(progress_file, capsys, content):
    progress_file.write_bytes(content)
    assert load_progress("quiz") == {}
    asides = list(progress_file.parent.glob("progress.json.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == content
    assert str(asides[0]) in capsys.readouterr().err
    save_progress("quiz", {"Q1": {"box": 1}})
    assert load_progress("quiz") == {"Q1": {"box": 1}}
    assert asides[0].read_bytes() == content  # the saved-aside copy is never overwritten


def test_a_corrupt_section_is_dropped_and_the_others_kept(progress_file, capsys):
    progress_file.write_text(json.dumps({"quiz": [1, 2], "exercises": {"softmax": {"done": True}}}))
    assert load_progress("quiz") == {}
    assert load_progress("exercises") == {"softmax": {"done": True}}
    assert "'quiz' section" in capsys.readouterr().err
    save_progress("quiz", {"Q2": {"box": 1}})
    assert json.loads(progress_file.read_text()) == {"quiz": {"Q2": {"box": 1}},
                                                      "exercises": {"softmax": {"done": True}}}
