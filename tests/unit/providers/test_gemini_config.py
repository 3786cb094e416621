"""Gemini configuration: offered only with a key; the API version goes into the base URL exactly once."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from gophergate.providers.config import provider_configs
from gophergate.settings import Settings

KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("GOPHERGATE_CONFIG", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GOPHERGATE_GEMINI_API_VERSION", raising=False)
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)


def _gemini(settings: Settings) -> list[tuple[str, str, str | None]]:
    return [(c.dialect, c.base_url, c.api_key) for c in provider_configs(settings) if c.name == "gemini"]


def test_not_offered_without_a_key() -> None:
    assert _gemini(Settings()) == []


def test_default_base_url_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "g-key")
    assert _gemini(Settings()) == [("gemini", "https://generativelanguage.googleapis.com/v1beta", "g-key")]


def test_google_api_key_is_accepted_and_the_version_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g2")
    monkeypatch.setenv("GEMINI_BASE_URL", "http://127.0.0.1:9000/")
    monkeypatch.setenv("GOPHERGATE_GEMINI_API_VERSION", "v1")
    assert _gemini(Settings()) == [("gemini", "http://127.0.0.1:9000/v1", "g2")]


def test_a_base_url_with_a_version_is_not_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("GEMINI_BASE_URL", "https://proxy.example/v1beta")
    assert _gemini(Settings())[0][1] == "https://proxy.example/v1beta"


def test_an_unknown_api_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_GEMINI_API_VERSION", "v2")
    with pytest.raises(ValueError):
        Settings()


def test_toml_entry_configures_gemini(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[providers.gemini]\napi_key_env = "MY_GEMINI"\nmodels = ["my-tuned"]\n')
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("MY_GEMINI", "from-env")
    configs = [c for c in provider_configs(Settings()) if c.name == "gemini"]
    assert len(configs) == 1 and configs[0].api_key == "from-env" and configs[0].models == ("my-tuned",)


def test_a_disabled_toml_entry_turns_gemini_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text("[providers.gemini]\nenabled = false\n")
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    assert _gemini(Settings()) == []
