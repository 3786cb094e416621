from __future__ import annotations

import base64
import secrets
from ipaddress import ip_network
from pathlib import Path

import pytest
from pydantic import ValidationError

from gophergate.providers.config import config_secrets, provider_configs, settings_secrets
from gophergate.settings import Settings, decode_encryption_key, describe_settings_error


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in (
        "GOPHERGATE_CONFIG",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "DEEPSEEK_API_KEY",
        "XAI_API_KEY",
        "MOONSHOT_API_KEY",
        "OLLAMA_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GOPHERGATE_ANTHROPIC_VERSION",
        "GOPHERGATE_ENCRYPTION_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


KEY = secrets.token_hex(32)


def test_key_formats() -> None:
    raw = secrets.token_bytes(32)
    assert decode_encryption_key(raw.hex()) == raw
    assert decode_encryption_key(base64.b64encode(raw).decode()) == raw
    assert decode_encryption_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    for bad in ("", "zz" * 32, raw.hex()[:-2], base64.b64encode(raw[:31]).decode()):
        with pytest.raises(ValueError):
            decode_encryption_key(bad)


def test_missing_key_message_names_the_variable() -> None:
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "GOPHERGATE_ENCRYPTION_KEY is not set" in describe_settings_error(info.value)


def test_bad_port_message_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("GOPHERGATE_PORT", "99999")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_settings_error(info.value).startswith("GOPHERGATE_PORT is invalid")


def test_env_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('port = 9001\nmax_body_bytes = 2048\n[aliases]\nfast = "gpt-4o-mini"\n')
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("GOPHERGATE_PORT", "9002")
    settings = Settings()
    assert settings.port == 9002 and settings.max_body_bytes == 2048 and settings.aliases == {"fast": "gpt-4o-mini"}


def test_default_database_is_sqlite_in_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    assert Settings().resolved_database_url == "sqlite+aiosqlite:///data/gophergate.db"
    monkeypatch.setenv("GOPHERGATE_DATABASE_URL", "postgresql://u@h/db")
    assert Settings().resolved_database_url == "postgresql+asyncpg://u@h/db"
    monkeypatch.setenv("GOPHERGATE_DATABASE_URL", "mysql://u@h/db")
    with pytest.raises(ValidationError):
        Settings()


def test_providers_from_standard_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-o")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-d")
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:11434")
    configs = {c.name: c for c in provider_configs(Settings())}
    assert set(configs) == {"openai", "deepseek", "ollama"}  # xai/moonshot have no key: not offered
    assert configs["openai"].base_url == "https://api.openai.com/v1"
    assert configs["deepseek"].base_url == "https://api.deepseek.com"
    assert configs["ollama"].base_url == "http://127.0.0.1:11434/v1"


def test_ollama_base_with_v1_is_not_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1/")
    assert provider_configs(Settings())[0].base_url == "http://127.0.0.1:11434/v1"


def test_custom_provider_needs_base_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text("[providers.acme]\napi_key = 'k'\n")
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    with pytest.raises(ValueError, match=r"providers\.acme: base_url"):
        provider_configs(Settings())


def test_anthropic_is_offered_only_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    assert all(c.name != "anthropic" for c in provider_configs(Settings()))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("GOPHERGATE_ANTHROPIC_VERSION", "2026-10-21")
    (cfg,) = [c for c in provider_configs(Settings()) if c.name == "anthropic"]
    assert (cfg.dialect, cfg.base_url, cfg.api_key, cfg.api_version) == (
        "anthropic",
        "https://api.anthropic.com",
        "sk-ant-test",
        "2026-10-21",
    )


def test_anthropic_from_toml_with_key_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[providers.anthropic]\napi_key_env = "MY_CLAUDE_KEY"\nbase_url = "http://127.0.0.1:9/"\n')
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("MY_CLAUDE_KEY", "sk-ant-toml")
    (cfg,) = [c for c in provider_configs(Settings()) if c.name == "anthropic"]
    assert (cfg.base_url, cfg.api_key, cfg.api_version) == ("http://127.0.0.1:9", "sk-ant-toml", "2023-06-01")


def test_bad_anthropic_version_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("GOPHERGATE_ANTHROPIC_VERSION", "latest")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_settings_error(info.value).startswith("GOPHERGATE_ANTHROPIC_VERSION is invalid")


def test_every_configured_secret_is_collected_for_redaction_enabled_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", "acme-key-from-env-1234")
    settings = Settings(
        encryption_key=KEY,
        openai_api_key="Zq9!custom-KEY.with/slash+plus=",
        database_url="postgresql://gg:db-password-5678@127.0.0.1/gg",
        providers={
            "acme": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "ACME_KEY", "enabled": False},
            "tenant": {
                "base_url": "http://user:url-password-9@127.0.0.1:9/v1",
                "api_key": "tenant-key-0000",
                "headers": {"authorization": "Bearer extra-token-abcdef", "x-org": "org-value-123"},
            },
        },
    )
    found = set(settings_secrets(settings))
    assert {KEY, "Zq9!custom-KEY.with/slash+plus=", "db-password-5678", "acme-key-from-env-1234"} <= found
    assert {"tenant-key-0000", "Bearer extra-token-abcdef", "extra-token-abcdef", "org-value-123"} <= found
    tenant = next(cfg for cfg in provider_configs(settings) if cfg.name == "tenant")
    assert {"tenant-key-0000", "extra-token-abcdef", "org-value-123", "url-password-9"} <= set(config_secrets(tenant))


def test_trusted_proxies_default_to_loopback_and_take_a_comma_separated_env_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.delenv("GOPHERGATE_TRUSTED_PROXIES", raising=False)
    assert Settings().trusted_proxies == (ip_network("127.0.0.1/32"), ip_network("::1/128"))
    monkeypatch.setenv("GOPHERGATE_TRUSTED_PROXIES", " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
    assert Settings().trusted_proxies == (
        ip_network("10.0.0.0/8"),
        ip_network("192.0.2.7/32"),
        ip_network("2001:db8::/32"),
    )
    monkeypatch.setenv("GOPHERGATE_TRUSTED_PROXIES", "")
    assert Settings().trusted_proxies == ()  # trusts no proxy


def test_trusted_proxies_from_a_toml_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('trusted_proxies = ["172.16.0.0/12", "::1"]\n')
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.delenv("GOPHERGATE_TRUSTED_PROXIES", raising=False)
    assert Settings().trusted_proxies == (ip_network("172.16.0.0/12"), ip_network("::1/128"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' is not an IP address or CIDR network: 10.0.0.1/8 has host bits set (the "
         "network is 10.0.0.0/8)"),
        ("127.0.0.1, proxy.internal", "'proxy.internal' is not an IP address or CIDR network"),
        ("[::1]", "'[::1]' is not an IP address or CIDR network"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or CIDR network"),
        ("127.0.0.1:8080", "'127.0.0.1:8080' is not an IP address or CIDR network"),
    ],
)  # fmt: skip
def test_a_bad_trusted_proxy_is_a_start_up_error_naming_the_variable_and_the_entry(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("GOPHERGATE_TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_settings_error(info.value).startswith(f"GOPHERGATE_TRUSTED_PROXIES is invalid: {message}")


def test_a_trusted_proxy_entry_of_the_wrong_type_in_toml_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.delenv("GOPHERGATE_TRUSTED_PROXIES", raising=False)
    with pytest.raises(ValidationError) as info:
        Settings(trusted_proxies=["127.0.0.1", 8080])
    assert describe_settings_error(info.value) == (
        "GOPHERGATE_TRUSTED_PROXIES is invalid: 8080 is not an IP address or CIDR network"
    )
    with pytest.raises(ValidationError) as info:
        Settings(trusted_proxies={"a": 1})
    assert describe_settings_error(info.value).startswith("GOPHERGATE_TRUSTED_PROXIES is invalid: must be IP")


def test_upstream_client_accepts_the_removed_values_and_names_the_variable_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyreqwest and hybrid were removed; a start with them must not fail (they run as auto, with a warning)."""
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    for value in ("auto", "h1", "aiohttp", "pyreqwest", "hybrid"):
        monkeypatch.setenv("GOPHERGATE_UPSTREAM_CLIENT", value)
        assert Settings().upstream_client == value
    monkeypatch.setenv("GOPHERGATE_UPSTREAM_CLIENT", "httpx")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_settings_error(info.value) == "GOPHERGATE_UPSTREAM_CLIENT is invalid: must be auto, h1 or aiohttp"


def test_a_bad_model_group_names_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("GOPHERGATE_MODEL_GROUPS", '{"smart": {"strategy": "fastest", "targets": [{"model": "a/b"}]}}')
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_settings_error(info.value).startswith(
        "GOPHERGATE_MODEL_GROUPS is invalid at model_groups.smart.strategy: Input should be 'weighted', 'priority'"
    )
    monkeypatch.setenv("GOPHERGATE_MODEL_GROUPS", '{"smart": {"targets": []}}')
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "model_groups.smart.targets" in describe_settings_error(info.value)
    monkeypatch.delenv("GOPHERGATE_MODEL_GROUPS")
    monkeypatch.setenv("GOPHERGATE_ROUTING", '{"cooldown_after": 0}')
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_settings_error(info.value).startswith("GOPHERGATE_ROUTING is invalid at routing.cooldown_after")
