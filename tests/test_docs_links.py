"""Every relative link in README.md and docs/*.md points to a file or folder that exists.

Links are read the way Markdown writes them, ``[text](target)``, outside fenced code blocks
and inline code. Web addresses (``http:``, ``https:``, ``mailto:``) are not checked. A
``#section`` must name a heading of the Markdown file it points to, spelt as GitHub spells
its anchors (lower case, punctuation dropped, spaces as hyphens).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every ``docs/*.md`` under ``root``."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of the lines of Markdown ``text`` outside fenced code blocks."""
    lines = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            lines.append((number, line))
    return lines


def relative_links(text: str) -> list[tuple[int, str]]:
    """``(line number, target)`` of every relative link in Markdown ``text``."""
    links = []
    for number, line in prose_lines(text):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                links.append((number, target))
    return links


def anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of Markdown ``text`` (``## What `make demo` runs`` ->
    ``what-make-demo-runs``; a repeated heading gets ``-1``, ``-2``, ...)."""
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def broken_links(path: Path) -> list[str]:
    """``file:line: target`` for each relative link in ``path`` to a file that does not exist,
    or to a ``#section`` that is not a heading of the Markdown file it names."""
    broken = []
    for number, target in relative_links(path.read_text(encoding="utf-8")):
        file_part, _, fragment = target.partition("#")
        linked = path.parent / file_part if file_part else path
        if not linked.exists():
            broken.append(f"{path.name}:{number}: {target}")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{path.name}:{number}: {target} (no such heading)")
    return broken


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path: Path) -> None:
    assert path.exists(), f"{path} is missing"
    assert broken_links(path) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text(
        "# Real\n\n## What `make demo` runs, measured\n\n```\n# not a heading\n```\n")
    (tmp_path / "README.md").write_text(
        "# Top\n"
        "See [the real doc](docs/real.md#what-make-demo-runs-measured), [the web](https://example.com),\n"
        "[this page](#top) and [a typo](docs/reel.md).\n"
        "```\n[in a code block](docs/not_checked.md)\n```\n"
        "`[inline code](docs/not_checked_either.md)`\n"
        "[a lost section](docs/real.md#not-a-heading) and [one here](#bottom).\n"
    )
    files = markdown_files(tmp_path)
    assert files[0].name == "README.md" and files[1].name == "real.md"
    assert broken_links(tmp_path / "README.md") == [
        "README.md:3: docs/reel.md",
        "README.md:8: docs/real.md#not-a-heading (no such heading)",
        "README.md:8: #bottom (no such heading)",
    ]
    assert broken_links(tmp_path / "docs" / "real.md") == []
