"""The documentation: the site under docs/ builds in strict mode, and the README stays a short
front page whose links all lead somewhere.

`mkdocs build --strict` turns every warning into a failure; mkdocs.yml makes a link to a missing
page, an anchor no heading defines and a page left out of `nav` warnings. The second test breaks
each of those on purpose in a copy of the site, so a configuration that stopped catching them
would fail here rather than let broken docs through.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_MAX_LINES = 300

# Inline Markdown links and images: [text](target) / ![alt](target), target up to a space or `)`.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`]*`")


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Material prints a notice about its future on every start; it is not a build warning.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=config.parent,
    )


def _nav_pages(config: Path) -> list[str]:
    """The Markdown files `nav` names (mkdocs.yml uses `!relative`, so no yaml.safe_load)."""
    return re.findall(r":\s+([\w./-]+\.md)\s*$", config.read_text(), flags=re.MULTILINE)


def test_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = _mkdocs(REPO / "mkdocs.yml", site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr

    pages = _nav_pages(REPO / "mkdocs.yml")
    on_disk = sorted(p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md"))
    assert sorted(pages) == on_disk
    for page in pages:
        built = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.is_file(), page
    # The architecture page embeds ARCHITECTURE.md from the repository root.
    architecture = (site / "architecture" / "index.html").read_text()
    assert "tool.importlinter" in architecture
    assert "--8&lt;--" not in architecture and "--8<--" not in architecture
    # Getting started embeds the README's two commands and tour.
    start = (site / "getting-started" / "index.html").read_text()
    assert "make run" in start and "Rerun incrementally" in start


def test_strict_build_fails_on_broken_links_anchors_and_omitted_pages(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("mkdocs.yml", "ARCHITECTURE.md", "README.md"):
        shutil.copy(REPO / name, copy / name)
    shutil.copytree(REPO / "docs", copy / "docs")
    index = copy / "docs" / "index.md"
    index.write_text(
        index.read_text()
        + "\n[gone](no-such-page.md) and [nowhere](configuration.md#no-such-heading)\n"
    )
    (copy / "docs" / "orphan.md").write_text("# Not in nav\n")

    result = _mkdocs(copy / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
    assert "#no-such-heading" in result.stderr
    assert "orphan.md" in result.stderr


def _links(markdown: str) -> list[str]:
    """Link targets outside code blocks and code spans (those are examples, not links)."""
    links: list[str] = []
    in_fence = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            links.extend(_LINK.findall(_CODE_SPAN.sub("", line)))
    return links


def test_readme_is_a_short_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_relative_links_exist() -> None:
    links = _links(README.read_text())
    relative = [
        t for t in links if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")
    ]
    # The README links into the guides; finding none means the parser, not the README, broke.
    assert len(relative) >= 10, links
    missing = []
    for target in relative:
        path = (REPO / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            missing.append(target)
    assert not missing, f"README.md links to missing files: {missing}"


def test_link_parser_skips_code() -> None:
    sample = 'a [x](one.md) `[y](two.md)`\n```\n[z](three.md)\n```\n![i](four.png "t")\n'
    assert _links(sample) == ["one.md", "four.png"]
