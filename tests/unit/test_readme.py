"""The README is the user's manual: every setting the code reads must be in its configuration table."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from gophergate.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        var = alias.choices[0] if isinstance(alias, AliasChoices) else f"GOPHERGATE_{name.upper()}"
        assert f"`{var}`" in text, f"{var} is missing from the README configuration table"


def test_quick_start_is_the_two_make_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
