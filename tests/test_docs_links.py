"""Every relative link of the project's Markdown files resolves: the file or folder exists, and
an anchor (``page.md#heading``, ``#heading``) names a heading of that page by GitHub's rules.

Pure file reading (a unit test): the Markdown files are found by walking the project, leaving
out hidden folders and what a run writes (``outputs/``, ``multirun/``, ``mlruns/``, ``wandb/``).
Links inside code (fenced blocks, backticks) are text, not links, and are not checked; nor are
absolute URLs (``https://...``), which need the network.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What a run or a tool writes beside the sources (pyproject.toml's ruff excludes, and more).
NOT_SOURCES = {"outputs", "multirun", "mlruns", "wandb", "node_modules", "__pycache__"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target may be <wrapped>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?\b(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    """The project's Markdown files (not those of hidden folders or of a run's outputs)."""
    found = []
    for path in sorted(REPO.rglob("*.md")):
        parts = path.relative_to(REPO).parts[:-1]
        if any(p.startswith(".") or p in NOT_SOURCES for p in parts):
            continue
        found.append(path)
    return found


def prose_lines(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks, inline code removed."""
    lines, fence = [], ""
    for line in text.splitlines():
        opening = FENCE.match(line)
        if fence:
            if opening and opening[1][0] == fence[0] and len(opening[1]) >= len(fence):
                fence = ""
            continue
        if opening:
            fence = opening[1]
            continue
        lines.append(INLINE_CODE.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text (links and markup reduced to their words),
    lower case, letters, digits, ``_``, ``-`` and spaces kept, each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [words](url) -> words
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor of the Markdown file ``path``: its headings' slugs (a repeated one gets
    ``-1``, ``-2``, ... as on GitHub) and the names of its ``<a name=...>`` tags."""
    seen: dict[str, int] = {}
    found = set()
    text = path.read_text(encoding="utf-8")
    for line in prose_lines(text):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found.update(HTML_ANCHOR.findall(text))
    return frozenset(found)


def links(path: Path) -> list[str]:
    """The link targets of ``path`` that are in prose (not in code)."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        targets += INLINE_LINK.findall(line)
        targets += HTML_LINK.findall(line)
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference[1])
    return targets


def broken(path: Path, target: str) -> str | None:
    """Why ``target``, a link of ``path``, does not resolve (None when it does)."""
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None  # an absolute URL: not checked here
    file_part, _, anchor = target.partition("#")
    file_part = file_part.split("?", 1)[0]
    destination = (
        (REPO / file_part.lstrip("/"))
        if file_part.startswith("/")
        else (path.parent / file_part if file_part else path)
    )
    destination = Path(*destination.parts).resolve()
    if not destination.is_relative_to(REPO):
        return f"{target}: outside the project"
    if not destination.exists():
        return f"{target}: no such file or folder ({destination.relative_to(REPO)})"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{target}: no heading #{anchor} in {destination.relative_to(REPO)}"
    return None


FILES = markdown_files()


def test_the_project_has_its_markdown_files() -> None:
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"README.md", "serving/README.md", "docs/performance.md"} <= names, names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    problems = [why for target in links(path) if (why := broken(path, target))]
    assert problems == [], f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


def test_github_slugs() -> None:
    assert slug("Quick start") == "quick-start"
    assert slug("Make it yours: data, model, step") == "make-it-yours-data-model-step"
    assert slug("`serving_example.py`") == "serving_examplepy"
    assert slug("From laptop to team (and cluster)") == "from-laptop-to-team-and-cluster"
    assert slug("[Tests](docs/tests.md) & CI") == "tests--ci"


def test_a_broken_link_and_a_broken_anchor_are_found() -> None:
    page = REPO / "README.md"
    assert broken(page, "docs/no_such_page.md") is not None
    assert broken(page, "#no-such-heading") is not None
    assert broken(page, "docs/performance.md#no-such-heading") is not None
    assert broken(page, "docs/performance.md") is None
    assert broken(page, "https://example.com/x.md#y") is None
    assert broken(page, "../outside.md") is not None


def test_links_in_code_are_not_links() -> None:
    text = "see [a](a.md) and `[b](b.md)`\n```\n[c](c.md)\n```\n[d]: d.md\n"
    lines = prose_lines(text)
    found = [t for line in lines for t in INLINE_LINK.findall(line)]
    assert found == ["a.md"]
    assert REFERENCE.match(lines[-1])[1] == "d.md"
