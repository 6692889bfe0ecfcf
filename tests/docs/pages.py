"""Where the tests find the README and the documentation pages, and a section of either."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def page(name: str) -> str:
    """A page of docs/ (or the README, by its name at the repository's root)."""
    path = REPO / name if name == "README.md" else DOCS / name
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The section under the heading (the line as written, '## Metrics'), up to the next
    heading of the same level or above outside code blocks, or the end of the page."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines(keepends=True)
    start = [line.rstrip("\n") for line in lines].index(heading)
    fenced = False
    for at in range(start + 1, len(lines)):
        line = lines[at]
        fenced = fenced != line.startswith("```")
        marks = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < marks <= level and line[marks : marks + 1] == " ":
            return "".join(lines[start:at])
    return "".join(lines[start:])
