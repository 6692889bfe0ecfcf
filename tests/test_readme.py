"""The README stays a first ten minutes: short, its contents true, its links to the pages
working (on GitHub, where they are plain relative links)."""

from __future__ import annotations

import re

from tests.docs.pages import DOCS, REPO, page

README = page("README.md")
# A newcomer reads it in one go; everything else is on a page of docs/.
MAX_BYTES = 15 * 1024


def github_anchor(title: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_the_readme_is_under_15_kb() -> None:
    assert len(README.encode()) < MAX_BYTES


def test_the_contents_list_every_section_in_order_with_working_links() -> None:
    outside_code = re.sub(r"\n```.*?\n```", "", README, flags=re.DOTALL)
    headings = re.findall(r"^(##|###) (.+)$", outside_code, flags=re.MULTILINE)
    sections = [(len(marks), title) for marks, title in headings if title != "Contents"]
    contents = README[README.index("\n## Contents\n") :].split("\n## ", 2)[1]
    listed = re.findall(r"^( *)- \[(.+)\]\(#(.+)\)$", contents, flags=re.MULTILINE)
    assert [(2 + len(indent) // 2, title) for indent, title, _ in listed] == sections
    assert [anchor for _, _, anchor in listed] == [github_anchor(title) for _, title in sections]


def test_the_readme_links_to_every_page_and_each_link_works() -> None:
    linked = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", README)
    assert [target for target in linked if not (REPO / target).is_file()] == []
    pages = {f"docs/{path.relative_to(DOCS)}" for path in DOCS.glob("*.md")} - {"docs/index.md"}
    assert sorted(pages - set(linked)) == []


def test_the_readme_names_each_page_by_its_title() -> None:
    linked = re.findall(r"^\| \[(.+?)\]\((docs/[^)#]+)\) \|", README, flags=re.MULTILINE)
    assert linked
    titles = [(REPO / target).read_text(encoding="utf-8").split("\n", 1)[0] for _, target in linked]
    assert [f"# {name}" for name, _ in linked] == titles
