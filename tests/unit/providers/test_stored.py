from __future__ import annotations

import datetime as dt
import os

from gophergate.providers.stored import StoredProvider, check_name_and_kind, merge_providers
from gophergate.security.secretbox import SecretBox
from gophergate.settings import Settings

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _settings(**env: object) -> Settings:
    return Settings(encryption_key="00" * 32, **env)  # type: ignore[arg-type]


def _row(name: str, kind: str, **kw: object) -> StoredProvider:
    values: dict[str, object] = {"dialect": None, "base_url": None, "api_key_encrypted": None, "models": (),
                                 "enabled": True, "updated_at": NOW}  # fmt: skip
    values.update(kw)
    return StoredProvider(name, kind, **values)  # type: ignore[arg-type]


def test_a_stored_row_overrides_the_env_provider_and_falls_back_to_its_fields() -> None:
    box = SecretBox(os.urandom(32))
    settings = _settings(openai_api_key="sk-env-key-123456")
    entries = merge_providers(settings, [_row("openai", "openai", models=("gpt-x",))], box)
    entry = entries["openai"]
    assert entry.source == "database" and entry.config is not None
    assert entry.config.api_key == "sk-env-key-123456" and entry.config.models == ("gpt-x",)
    assert entry.config.base_url == "https://api.openai.com/v1"


def test_a_disabled_row_switches_an_env_provider_off() -> None:
    box = SecretBox(os.urandom(32))
    entries = merge_providers(_settings(openai_api_key="sk-env"), [_row("openai", "openai", enabled=False)], box)
    assert not entries["openai"].enabled


def test_a_key_sealed_under_another_key_leaves_the_provider_unbuilt() -> None:
    sealed = SecretBox(os.urandom(32)).seal("sk-custom", "acme")
    row = _row("acme", "custom", base_url="http://127.0.0.1:1/v1", api_key_encrypted=sealed)
    entries = merge_providers(_settings(), [row], SecretBox(os.urandom(32)))
    assert entries["acme"].config is None


def test_builtin_names_keep_their_kind() -> None:
    assert check_name_and_kind("openai", "custom") is not None
    assert check_name_and_kind("gemini", "gemini") is None
    assert check_name_and_kind("acme", "anthropic") is None
    assert check_name_and_kind("acme", "nope") is not None
