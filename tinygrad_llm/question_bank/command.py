"""`python -m tinygrad_llm bank`: look up a question or a wrong answer by id, see how much of the bank running code
backs, check the links, and regenerate the chapter pages.

    bank                   counts by status and by chapter
    bank --show M27        one entry, as the pages print it (the ids appear throughout the notebooks and tests)
    bank --check           every link resolves, every id the project mentions is in the bank, the pages are current
    bank --write-pages     regenerate docs/bank/ from bank.toml
"""
from __future__ import annotations

from pathlib import Path

from .bank import load_bank
from .links import broken_links, unknown_ids
from .pages import chapter_page, stale_pages, write_pages

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PAGES_FOLDER = REPOSITORY_ROOT / "docs" / "bank"


def register(subparsers) -> None:
    parser = subparsers.add_parser("bank", help="the interview bank: look up Q/M ids, check links, write the pages",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", metavar="ID", help="print one question (Q01-Q45) or wrong answer (M01-M61)")
    parser.add_argument("--check", action="store_true",
                        help="check the links, the ids the project mentions and the generated pages (a checkout)")
    parser.add_argument("--write-pages", action="store_true", help="regenerate docs/bank/ from bank.toml")
    parser.set_defaults(func=run)


def _show(bank, entry_id: str) -> str:
    entry_id = entry_id.upper()
    entry = bank.questions.get(entry_id) or bank.misconceptions.get(entry_id)
    if entry is None:
        raise ValueError(f"bank --show: no entry {entry_id!r}; questions are Q01-{max(bank.questions)}, wrong answers "
                         f"M01-{max(bank.misconceptions)}")
    page = chapter_page(bank, entry.chapter)
    heading = f"## {entry.id}." if entry.id.startswith("Q") else f"### {entry.id}"
    start = page.index(heading)
    end = min((page.find(marker, start + 1) for marker in ("\n## ", "\n### ") if page.find(marker, start + 1) > 0),
              default=len(page))
    return f"(chapter {entry.chapter}: {bank.chapters[entry.chapter]['title']})\n" + page[start:end].strip()


def _check(bank) -> int:
    if not (REPOSITORY_ROOT / "notebooks").is_dir():
        raise FileNotFoundError(f"bank --check: the links point into a checkout of the repository (notebooks/, "
                                f"tests/), and {REPOSITORY_ROOT} is not one; run it from a clone")
    problems = broken_links(bank, REPOSITORY_ROOT)
    problems += [f"{found}: mentioned in {', '.join(files[:3])} but not in the bank"
                 for found, files in unknown_ids(bank, REPOSITORY_ROOT).items()]
    problems += [f"docs/bank/{name} is out of date: run `python -m tinygrad_llm bank --write-pages`"
                 for name in stale_pages(bank, PAGES_FOLDER)]
    for problem in problems:
        print(problem)
    print(f"bank check: {len(problems)} problem(s)")
    return 1 if problems else 0


def run(args) -> int:
    bank = load_bank()
    if args.show:
        print(_show(bank, args.show))
        return 0
    if args.write_pages:
        for name in write_pages(bank, PAGES_FOLDER):
            print(f"wrote docs/bank/{name}")
    if args.check:
        return _check(bank)
    counts = bank.status_counts()
    print(f"{len(bank.questions)} questions, {len(bank.misconceptions)} wrong answers; questions "
          + ", ".join(f"{status}: {count}" for status, count in counts.items()))
    for number, chapter in bank.chapters.items():
        questions, misconceptions = bank.chapter_entries(number)
        backed = sum(q.status == "backed" for q in questions)
        print(f"  {number:2d}. {chapter['title']:48s} {len(questions):2d} questions ({backed} backed), "
              f"{len(misconceptions):2d} wrong answers")
    return 0
