"""The bank as readable Markdown, one page per chapter plus an index (docs/bank/), so it reads on the web without
running anything. The pages are generated, never edited by hand: `python -m tinygrad_llm bank --write-pages`
rewrites them and the test suite fails when they fall behind bank.toml."""
from __future__ import annotations

import re
from pathlib import Path

from .bank import Bank, Links

REPOSITORY_LINK = "../.."  # from docs/bank/ to the repository root


def page_name(number: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"{number:02d}-{slug}.md"


def _link_lines(links: Links) -> list[str]:
    lines = []
    for target in links.notebook_sections:
        stem, _, heading = target.partition("#")
        lines.append(f"  - notebook [{stem}]({REPOSITORY_LINK}/notebooks/{stem}.ipynb), section \"{heading}\"")
    for target in links.experiments:
        module, _, function = target.rpartition(".")
        lines.append(f"  - experiment `{function}` in [experiments/{module}.py]"
                     f"({REPOSITORY_LINK}/tinygrad_llm/experiments/{module}.py)")
    for name in links.exercises:
        lines.append(f"  - exercise `{name}`: `python -m tinygrad_llm exercises show {name}`")
    for target in links.tests:
        file, _, test = target.partition("::")
        lines.append(f"  - test `{test}` in [{file}]({REPOSITORY_LINK}/{file})")
    return lines


def chapter_page(bank: Bank, number: int) -> str:
    chapter = bank.chapters[number]
    questions, misconceptions = bank.chapter_entries(number)
    out = [f"# Chapter {number}: {chapter['title']}", "",
           "Generated from `tinygrad_llm/question_bank/bank.toml` by `python -m tinygrad_llm bank --write-pages`; "
           "do not edit by hand.", ""]
    if chapter.get("notebook"):
        out += [f"Notebook: [{chapter['notebook']}]({REPOSITORY_LINK}/notebooks/{chapter['notebook']}.ipynb)", ""]
    for question in questions:
        out += [f"## {question.id}. {question.question}", "", "**Model answer**", ""]
        out += [f"- {bullet}" for bullet in question.answer]
        if question.follow_ups:
            out += ["", "**Follow-ups an interviewer may ask**", ""] + [f"- {item}" for item in question.follow_ups]
        if question.misconceptions:
            out += ["", "**Common wrong answers:** " + ", ".join(f"[{m}](#{m.lower()})" for m in question.misconceptions)]
        out += ["", f"**Backed by** ({question.status}):"] + (_link_lines(question.links) or ["  - nothing yet"]) + [""]
    if misconceptions:
        out += ["## Common wrong answers", ""]
    for misconception in misconceptions:
        label = " (kept as a broken variant the tests catch)" if misconception.kind == "bug" else ""
        out += [f"### {misconception.id}", "", f"**Wrong:** \"{misconception.wrong}\"{label}", "",
                f"**Right:** {misconception.correction}", "", f"**Why people believe it:** {misconception.why_believed}",
                "", "**Shown by:**"] + (_link_lines(misconception.links) or ["  - nothing yet"]) + [""]
    return "\n".join(out).rstrip() + "\n"


def index_page(bank: Bank) -> str:
    counts = bank.status_counts()
    out = ["# The interview bank", "",
           f"{len(bank.questions)} questions and {len(bank.misconceptions)} common wrong answers, each tied to the "
           "notebook section, experiment, exercise and test that back it. "
           + ", ".join(f"{count} {status}" for status, count in counts.items()) + ".", "",
           "Generated from `tinygrad_llm/question_bank/bank.toml` by `python -m tinygrad_llm bank --write-pages`; look up "
           "one entry with `python -m tinygrad_llm bank --show Q17`.", ""]
    for number, chapter in bank.chapters.items():
        questions, misconceptions = bank.chapter_entries(number)
        out.append(f"- [Chapter {number}: {chapter['title']}]({page_name(number, chapter['title'])}): "
                   f"{', '.join(q.id for q in questions) or 'no questions'}"
                   + (f"; {len(misconceptions)} wrong answers" if misconceptions else ""))
    return "\n".join(out) + "\n"


def all_pages(bank: Bank) -> dict[str, str]:
    """{file name: Markdown} for docs/bank/."""
    pages = {"README.md": index_page(bank)}
    pages.update({page_name(number, chapter["title"]): chapter_page(bank, number)
                  for number, chapter in bank.chapters.items()})
    return pages


def stale_pages(bank: Bank, folder: Path) -> list[str]:
    """The page files that are missing, differ from what the bank generates, or should not be there."""
    expected = all_pages(bank)
    present = {path.name for path in folder.glob("*.md")} if folder.exists() else set()
    stale = [name for name, text in expected.items()
             if name not in present or (folder / name).read_text(encoding="utf-8") != text]
    return sorted(stale + sorted(present - set(expected)))


def write_pages(bank: Bank, folder: Path) -> list[str]:
    """Rewrite docs/bank/ from the bank (and remove pages of chapters that no longer exist)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = all_pages(bank)
    for path in folder.glob("*.md"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (folder / name).write_text(text, encoding="utf-8")
    return sorted(expected)
