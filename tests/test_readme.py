"""The README is the front door: short enough to read, readable in a terminal, and every link in it leads to a file
of the repository (the long parts live in docs/)."""

from __future__ import annotations

import re

from tests.support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)|<img src=\"([^\"]+)\"")


def prose_lines() -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(README.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def test_the_readme_is_at_most_200_lines() -> None:
    assert len(README.splitlines()) <= 200


def test_no_prose_line_is_over_120_characters() -> None:
    assert [(n, len(line)) for n, line in prose_lines() if len(line) > 120] == []


def test_every_relative_link_and_image_names_a_file_of_the_repository() -> None:
    targets = [a or b for a, b in LINK.findall(README)]
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "the README links to docs/"
    assert [t for t in local if not (ROOT / t).exists()] == []
