"""Does every link in the bank lead somewhere, and does every id the project mentions resolve in the bank?

Links rot silently: a notebook heading is renamed, a test is merged into another, an experiment moves. This
module checks them against a checkout of the repository (the notebooks and tests are not installed with the
package), so the test suite and `python -m tinygrad_llm bank --check` fail the moment one breaks.
"""
from __future__ import annotations

import importlib
import json
import re
from functools import lru_cache
from pathlib import Path

from .bank import Bank

# Q01-Q45 and M01-M61 as whole words; other capital-letter-and-digits tokens (Q4_K, M5) are not ids.
MENTIONED_ID = re.compile(r"\b(?:Q(?:0[1-9]|[1-9]\d)|M(?:0[1-9]|[1-9]\d))\b")
SCANNED = ("tinygrad_llm", "kernels", "tests", "notebooks", "README.md", "docs")


@lru_cache(maxsize=None)
def notebook_headings(path: Path) -> frozenset:
    """The text of every markdown heading line of a notebook, without its leading #s."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = (line for cell in cells if cell["cell_type"] == "markdown"
             for line in "".join(cell["source"]).splitlines())
    return frozenset(line.lstrip("#").strip() for line in lines if line.startswith("#"))


def _exercise_names() -> frozenset:
    from ..exercises import list_exercises
    return frozenset(name for name, _ in list_exercises())


def broken_link(kind: str, target: str, root: Path) -> str | None:
    """Why the link does not resolve, or None when it does."""
    if kind == "notebook_sections":
        stem, _, heading = target.partition("#")
        path = root / "notebooks" / f"{stem}.ipynb"
        if not path.exists():
            return f"no notebook notebooks/{stem}.ipynb"
        return None if heading in notebook_headings(path) else f"no heading {heading!r} in {path.name}"
    if kind == "experiments":
        module_name, _, function = target.rpartition(".")
        try:
            module = importlib.import_module(f"tinygrad_llm.experiments.{module_name}")
        except ImportError:
            return f"no module tinygrad_llm.experiments.{module_name}"
        return None if callable(getattr(module, function, None)) else f"no function {function} in {module_name}"
    if kind == "exercises":
        return None if target in _exercise_names() else f"no exercise named {target!r}"
    if kind == "tests":
        file, _, test = target.partition("::")
        path = root / file
        if not path.exists():
            return f"no test file {file}"
        return None if re.search(rf"^def {re.escape(test)}\(", path.read_text(encoding="utf-8"), re.M) else \
            f"no test function {test} in {file}"
    return f"unknown link kind {kind!r}"


def broken_links(bank: Bank, root: Path) -> list[str]:
    """'<id>: <kind> <target>: <why>' for every link that does not resolve."""
    entries = list(bank.questions.values()) + list(bank.misconceptions.values())
    return [f"{entry.id}: {kind} {target!r}: {why}" for entry in entries for kind, target in entry.links
            if (why := broken_link(kind, target, root)) is not None]


def _readable_text(path: Path) -> str:
    """A file's text; for a notebook its cells' sources only (its image outputs are base64, where ids appear by
    chance)."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8", errors="replace")
    return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])


def mentioned_ids(root: Path) -> dict[str, list[str]]:
    """{id: files that mention it} over the project's code, tests, notebooks and docs."""
    mentions: dict[str, list[str]] = {}
    for name in SCANNED:
        top = root / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.suffix in (".py", ".ipynb", ".md"))
        for path in files:
            for found in set(MENTIONED_ID.findall(_readable_text(path))):
                mentions.setdefault(found, []).append(str(path.relative_to(root)))
    return mentions


def unknown_ids(bank: Bank, root: Path) -> dict[str, list[str]]:
    """The ids the project mentions that the bank does not hold, with where."""
    known = set(bank.questions) | set(bank.misconceptions)
    return {found: files for found, files in sorted(mentioned_ids(root).items()) if found not in known}
