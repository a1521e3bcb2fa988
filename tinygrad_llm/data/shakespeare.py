"""Tiny Shakespeare (1,115,394 bytes of plays, Karpathy's char-rnn corpus), downloaded once and cached.

The file is verified by size and sha256 before it is used, so a truncated download, a captive-portal
HTML page or a different edition is rejected instead of silently changing every result. It is written
to a temporary file in the cache folder and renamed into place only after the check passes, so a
failed or interrupted download leaves nothing behind and the next call starts clean. Once cached, no
network is touched again. Offline, the error says where to put the file by hand.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_SIZE = 1_115_394
FILE_NAME = "tiny_shakespeare.txt"
CACHE_ENV_VAR = "TGL_CACHE_DIR"
READ_BLOCK = 1 << 16


def default_cache_dir() -> Path:
    """$TGL_CACHE_DIR if set, else ~/.cache/tinygrad_llm."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "tinygrad_llm")


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_shakespeare_path(cache_dir=None, url: str = DEFAULT_URL, sha256: str = TINY_SHAKESPEARE_SHA256,
                          size: int = TINY_SHAKESPEARE_SIZE, timeout: float = 30.0) -> Path:
    """Path of the verified cached file, downloading it from `url` first if it is not cached yet.

    Raises ConnectionError when the download fails (offline, unreachable, HTTP error) and ValueError
    when the downloaded or cached bytes do not have the expected size and sha256.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / FILE_NAME
    by_hand = (
        f"To place the file by hand, download {DEFAULT_URL} on a machine with internet access and save it as "
        f"{target} (sha256 {sha256}); set {CACHE_ENV_VAR} to use another folder. load_text('embedded') needs no download."
    )
    if target.exists():
        actual = _sha256_of_file(target)
        if actual != sha256:
            raise ValueError(
                f"tiny_shakespeare_path: the cached file {target} has sha256 {actual}, expected {sha256}; "
                f"it is corrupt or a different text. Delete it to download again. {by_hand}"
            )
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{FILE_NAME}.", suffix=".part", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        digest, received = _download(url, tmp_path, size, timeout, by_hand)
        if received != size or digest != sha256:
            raise ValueError(
                f"tiny_shakespeare_path: the download from {url} has {received:,} bytes and sha256 {digest}, "
                f"expected {size:,} bytes and sha256 {sha256}; nothing was saved (a proxy or captive portal may have "
                f"answered instead of the server). {by_hand}"
            )
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)
    return target


def _download(url: str, destination: Path, size: int, timeout: float, by_hand: str) -> tuple[str, int]:
    """Stream `url` into `destination`: (sha256 hex digest, bytes received). Stops reading once past `size`."""
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
            while received <= size:
                block = response.read(READ_BLOCK)
                if not block:
                    break
                digest.update(block)
                out.write(block)
                received += len(block)
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise ConnectionError(
            f"tiny_shakespeare_path: could not download Tiny Shakespeare from {url}: {error}. "
            f"Is this machine offline? {by_hand}"
        ) from error
    return digest.hexdigest(), received
