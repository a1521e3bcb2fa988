"""Checkpoints as .npz files: arrays by name plus a JSON metadata entry.

Loading uses allow_pickle=False, so opening a checkpoint can never run code; saving writes a temporary
file and renames it over the target, so a crash mid-save never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

_METADATA_KEY = "__metadata__"


def save_checkpoint(path, arrays: dict, metadata: dict | None = None, compressed: bool = False) -> Path:
    """compressed=True deflates every array (np.savez_compressed): slower to write, smaller on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _METADATA_KEY in arrays:
        raise ValueError(f"save_checkpoint: {_METADATA_KEY!r} is reserved for the metadata")
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    payload[_METADATA_KEY] = np.array(json.dumps(metadata or {}))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # same folder, so the rename is atomic
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint: truncated, corrupt, or not written by save_checkpoint."""


def load_checkpoint(path) -> tuple[dict, dict]:
    """(arrays by name, metadata dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}; train first or check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files if name != _METADATA_KEY}
            metadata = json.loads(str(archive[_METADATA_KEY])) if _METADATA_KEY in archive.files else {}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"load_checkpoint: {path} is not a readable checkpoint ({type(error).__name__}: {error}); the file is "
            "truncated or corrupt, or was not written by tinygrad_llm. Nothing was loaded; use another checkpoint "
            "or train again"
        ) from error
    return arrays, metadata
