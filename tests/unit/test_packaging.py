"""pyproject.toml metadata: an SPDX license string (a TOML table makes setuptools print a deprecation banner on
every install), and the API explorer's files shipped in the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_expression_not_a_table() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert not [c for c in PYPROJECT["project"].get("classifiers", []) if c.startswith("License ::")]


def test_build_needs_a_setuptools_that_reads_spdx_license_strings() -> None:
    [setuptools] = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.search(r">=\s*(\d+)", setuptools)
    assert floor is not None and int(floor.group(1)) >= 77, setuptools  # PEP 639 support came in 77


def test_api_explorer_files_are_package_data() -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["gophergate"]
    package = ROOT / "src" / "gophergate"
    for name in ("viewer.js", "viewer.css"):
        assert (package / "admin" / "docs_assets" / name).is_file()
        assert any((package / "admin" / "docs_assets" / name).match(str(package / p)) for p in patterns), name
