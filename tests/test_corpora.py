"""Corpora: the committed Chinese/English sample, empty-corpus errors, and the cached Tiny Shakespeare download.

The download tests never touch the internet: they serve a small stand-in file through file:// URLs and a
local HTTP server on 127.0.0.1, and pass its size and sha256 in place of the real ones.
"""
import functools
import hashlib
import http.server
import threading

import pytest

from tinygrad_llm.data import load_text, multilingual_sample, tiny_shakespeare_path
from tinygrad_llm.data import corpus
from tinygrad_llm.data.shakespeare import DEFAULT_URL, FILE_NAME, TINY_SHAKESPEARE_SHA256, default_cache_dir

pytestmark = pytest.mark.tokenization

STAND_IN = "First Citizen:\nBefore we proceed any further, hear me speak.\n".encode("utf-8") * 20
STAND_IN_SHA256 = hashlib.sha256(STAND_IN).hexdigest()
UNREACHABLE = "http://127.0.0.1:1/input.txt"  # port 1: connection refused at once, no network involved


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / "server" / "input.txt"
    path.parent.mkdir()
    path.write_bytes(STAND_IN)
    return path


@pytest.fixture
def http_url(source_file):
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(source_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{source_file.name}"
    server.shutdown()
    server.server_close()


def fetch(cache, url):
    return tiny_shakespeare_path(cache, url=url, sha256=STAND_IN_SHA256, size=len(STAND_IN), timeout=5)


def test_download_through_a_file_url_is_verified_and_cached(source_file, tmp_path):
    cache = tmp_path / "cache"
    path = fetch(cache, source_file.as_uri())
    assert path == cache / FILE_NAME and path.read_bytes() == STAND_IN
    assert [p.name for p in cache.iterdir()] == [FILE_NAME]  # no temporary file left behind
    assert fetch(cache, UNREACHABLE) == path  # the second call never touches the network


def test_download_through_a_local_http_server(http_url, tmp_path):
    path = fetch(tmp_path / "cache", http_url)
    assert path.read_bytes() == STAND_IN


def test_checksum_mismatch_leaves_no_file(source_file, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="sha256") as error:
        tiny_shakespeare_path(cache, url=source_file.as_uri(), sha256="0" * 64, size=len(STAND_IN))
    assert str(cache / FILE_NAME) in str(error.value)  # says where to place the file by hand
    assert list(cache.iterdir()) == []
    with pytest.raises(ValueError, match="bytes"):
        tiny_shakespeare_path(cache, url=source_file.as_uri(), sha256=STAND_IN_SHA256, size=len(STAND_IN) - 1)
    assert list(cache.iterdir()) == []


def test_offline_gives_a_clear_message_with_the_exact_path(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError) as error:
        fetch(cache, UNREACHABLE)
    message = str(error.value)
    assert "could not download" in message and UNREACHABLE in message
    assert str(cache / FILE_NAME) in message and DEFAULT_URL in message and "offline" in message
    assert list(cache.iterdir()) == []
    with pytest.raises(ConnectionError, match="could not download"):
        fetch(cache, (tmp_path / "missing.txt").as_uri())


def test_a_corrupt_cached_file_is_reported_not_used(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(STAND_IN[:-1])
    with pytest.raises(ValueError, match="cached file.*Delete it"):
        fetch(tmp_path, UNREACHABLE)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TGL_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("TGL_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "tinygrad_llm")
    assert len(TINY_SHAKESPEARE_SHA256) == 64 and "karpathy/char-rnn" in DEFAULT_URL


def test_load_text_shakespeare_reads_the_cached_file(monkeypatch, tmp_path):
    cached = tmp_path / FILE_NAME
    cached.write_bytes(STAND_IN)
    monkeypatch.setattr(corpus, "tiny_shakespeare_path", lambda: cached)
    assert load_text("shakespeare") == STAND_IN.decode("utf-8")


def test_multilingual_sample_mixes_chinese_english_numbers_and_emoji():
    text = multilingual_sample()
    assert 3_000 <= len(text.encode("utf-8")) <= 6_000
    assert load_text("zh-en") == text
    assert sum("\u4e00" <= c <= "\u9fff" for c in text) > 500
    assert sum(c.isascii() and c.isalpha() for c in text) > 1_500
    assert any(ord(c) > 0xFFFF for c in text), "expected emoji outside the basic multilingual plane"
    assert any(c.isdigit() for c in text)


def test_empty_corpora_are_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        load_text(str(tmp_path / "empty.txt"))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("", encoding="utf-8")
    (folder / "b.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="hold no text"):
        load_text(str(folder))
    (folder / "c.txt").write_text("text", encoding="utf-8")
    assert load_text(str(folder)) == "\n\n".join(["", "\n", "text"])  # files in sorted order
    with pytest.raises(FileNotFoundError, match="zh-en"):
        load_text(str(tmp_path / "nowhere"))
