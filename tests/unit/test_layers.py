"""Packages point one way: each may import only packages below it (type-only imports included), so the shared
types live at the bottom (``core``) and the composition at the top. A new package must be given its place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "gophergate"

# Bottom to top; a package may import the ones before it (and itself), never one after it.
LAYERS: list[set[str]] = [
    {"core"},
    {"wire", "supervise"},
    {"settings", "logs"},
    {"db"},
    {"cluster"},
    {"security"},
    {"pricing"},
    {"providers"},
    {"inbound"},
    {"recorder"},
    {"telemetry"},
    {"limits"},
    {"gateway"},
    {"hub"},
    {"runtime"},
    {"http"},
    {"admin"},
    {"app"},
    {"rsgi"},
    {"serve"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _package(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gophergate."):
                found.append((_package(path), node.module.split(".")[1], str(path.relative_to(PACKAGE))))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("gophergate."):
                        found.append((_package(path), alias.name.split(".")[1], str(path.relative_to(PACKAGE))))
    return found


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in PACKAGE.rglob("*.py") if not (p.name == "__init__.py" and p.parent == PACKAGE)}
    assert packages - RANK.keys() == set()


@pytest.mark.parametrize("source", sorted({src for src, _, _ in _imports()}))
def test_package_imports_only_packages_below_it(source: str) -> None:
    upward = [
        f"{where} imports gophergate.{target}"
        for src, target, where in _imports()
        if src == source and target != source and RANK[target] > RANK[source]
    ]
    assert upward == []
