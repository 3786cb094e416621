"""The README is a short entry point and docs/ the manual: every setting the code reads is in
docs/configuration.md, and every relative link in the Markdown files leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from gophergate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
MARKDOWN = [README, *sorted((ROOT / "docs").rglob("*.md"))]

# [text](target) outside code; images and reference-style links are not used in these files.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+?)\s*#*$", _FENCE.sub("", path.read_text()), re.MULTILINE)
    return {_anchor(h) for h in headings}


def test_every_setting_is_documented() -> None:
    text = CONFIGURATION.read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        var = alias.choices[0] if isinstance(alias, AliasChoices) else f"GOPHERGATE_{name.upper()}"
        assert f"`{var}`" in text, f"{var} is missing from the settings tables in docs/configuration.md"


def test_quick_start_is_the_two_make_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text


def test_readme_is_at_most_250_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines; move detail into docs/"


def _broken_links(path: Path) -> list[str]:
    """Relative links in ``path`` to a file that does not exist, or to a heading a Markdown file does not have."""
    broken = []
    for target in _LINK.findall(_prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    return broken


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings_that_exist(path: Path) -> None:
    broken = _broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_reports_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    """The check above must fail on what it is meant to catch, or its passing says nothing."""
    (tmp_path / "other.md").write_text("# Other\n\n## Live hub (`/ws`)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Some `code` heading\n\n"
        "[a](#some-code-heading) [b](other.md#live-hub-ws) [c](https://example.com/x.md) `[d](nowhere.md)`\n\n"
        "[e](#nowhere) [f](missing.md) [g](other.md#gone)\n\n```\n[h](fenced.md)\n```\n"
    )
    assert _broken_links(page) == [
        "#nowhere: no heading with that anchor in page.md",
        "missing.md: no such file",
        "other.md#gone: no heading with that anchor in other.md",
    ]
