"""A learner's progress (quiz boxes, exercises done) in one small JSON file, one section per feature.

Progress is weeks of a learner's work, so nothing here may lose it: every save replaces the file atomically (a
Ctrl-C leaves the old file or the new one, never half of each), and a file that cannot be read is moved aside
rather than overwritten, so it can still be repaired by hand.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

PROGRESS_FILE_VARIABLE = "TGL_PROGRESS_FILE"


def progress_path() -> Path:
    """$TGL_PROGRESS_FILE if set (tests, or a learner who keeps it elsewhere), else the user-level data folder:
    $XDG_DATA_HOME/tinygrad_llm/progress.json (~/.local/share by default; %APPDATA% on Windows)."""
    if os.environ.get(PROGRESS_FILE_VARIABLE):
        return Path(os.environ[PROGRESS_FILE_VARIABLE])
    if os.name == "nt" and os.environ.get("APPDATA"):
        data_home = Path(os.environ["APPDATA"])
    else:
        data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "tinygrad_llm" / "progress.json"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _move_aside(path: Path, problem: str) -> None:
    """Keep an unreadable file for the learner to inspect, under a name no later save will touch."""
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now().strftime('%Y%m%dT%H%M%S%f')}")
    os.replace(path, aside)
    _warn(f"the progress file {path} could not be read ({problem}); it was moved to {aside} and progress starts "
          f"afresh. Fix it by hand and move it back to keep the old progress.")


def _read_all_sections(path: Path) -> dict:
    """Every well-formed section of the file; {} when it is missing or (moved aside) corrupt."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        everything = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        _move_aside(path, f"not valid UTF-8 JSON: {error}")
        return {}
    if not isinstance(everything, dict):
        _move_aside(path, f"expected a JSON object of sections, found {type(everything).__name__}")
        return {}
    sections = {}
    for name, section in everything.items():
        if isinstance(section, dict):
            sections[name] = section
        else:
            _warn(f"the {name!r} section of {path} is not a JSON object ({type(section).__name__}); it is dropped, "
                  f"the other sections are kept.")
    return sections


def load_progress(section: str) -> dict:
    """The named section ("quiz", "exercises") of the progress file, {} when there is none yet."""
    return _read_all_sections(progress_path()).get(section, {})


def save_progress(section: str, data: dict) -> None:
    """Replace one section, keep the others. The new file is written beside the old one, flushed to disk, then
    swapped in with os.replace (atomic), so an interruption at any moment leaves a whole file."""
    path = progress_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    sections = _read_all_sections(path)
    sections[section] = data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(sections, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
