"""Which providers are configured: the built-in OpenAI-compatible family from the standard environment
names and the TOML file, plus any number of named custom OpenAI-compatible upstreams from the TOML file.

Pure configuration (no HTTP client imported), so the CLI can validate it before the server starts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.providers.openai_compat.specs import BUILTIN_SPECS
from gophergate.settings import CustomProviderConfig, Settings

# Native providers (their own wire format); the names are reserved so that a custom upstream cannot shadow them.
NATIVE_PROVIDER_NAMES = frozenset({"anthropic", "gemini"})
ANTHROPIC_DIALECT = "anthropic"  # ProviderConfig.dialect of the native Anthropic provider
ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"

GEMINI_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# The Gemini SDK takes the host and puts the API version in the path (providers.md §3.1, §11.25); a base URL
# that already ends in a version is taken as it is, so the version is never doubled.
_GEMINI_VERSIONED = re.compile(r"/v1(alpha|beta)?$")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    dialect: str
    base_url: str
    api_key: str | None
    headers: tuple[tuple[str, str], ...] = ()
    models: tuple[str, ...] = ()
    api_version: str | None = None  # native providers with a version header (Anthropic)
    messages_base_url: str | None = None  # an OpenAI-compatible upstream's Anthropic-compatible Messages API


def config_secrets(cfg: ProviderConfig) -> list[str]:
    """What must never leave the gateway of one provider's config: its key, every configured header value (and
    its credential part after a scheme word such as ``Bearer``), and credentials in its base URL."""
    values = [cfg.api_key or ""]
    for _, value in cfg.headers:
        values.extend(_header_secrets(value))
    url = urlsplit(cfg.base_url)
    values.extend((url.password or "", url.username or ""))
    return [v for v in values if v]


def _header_secrets(value: str) -> tuple[str, ...]:
    scheme, _, credential = value.strip().partition(" ")
    return (value, credential.strip()) if scheme and credential.strip() else (value,)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold, used or not: each secret field (provider keys from the environment, the
    encryption key, the first admin's password), each TOML provider's key and header values (enabled or not),
    and the database URL's password."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    for entry in settings.providers.values():
        values.append(_toml_key(entry) or "")
        for header in entry.headers.values():
            values.extend(_header_secrets(header))
    if settings.database_url:
        values.append(urlsplit(settings.database_url).password or "")
    return [v for v in values if v]


def _secret(value: object) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    text = getter() if getter is not None else str(value)
    return text or None


def _toml_key(entry: CustomProviderConfig | None) -> str | None:
    if entry is None:
        return None
    if entry.api_key is not None:
        return _secret(entry.api_key)
    if entry.api_key_env:
        return os.environ.get(entry.api_key_env) or None
    return None


def provider_configs(settings: Settings) -> list[ProviderConfig]:
    configs: list[ProviderConfig] = []
    for name, spec in BUILTIN_SPECS.items():
        entry = settings.providers.get(name)
        if entry is not None and not entry.enabled:
            continue
        key = _secret(getattr(settings, f"{name}_api_key", None)) or _toml_key(entry)
        if spec.key_required and not key:
            continue
        base = getattr(settings, f"{name}_base_url", None) or (entry.base_url if entry else None)
        if name == "ollama" and base is None and entry is None:
            continue  # Ollama is offered when OLLAMA_BASE_URL or a [providers.ollama] entry says where it is
        base = (base or spec.default_base_url).rstrip("/")
        if spec.api_prefix and not base.endswith(spec.api_prefix):
            base += spec.api_prefix
        configs.append(
            ProviderConfig(
                name=name,
                dialect=(entry.dialect if entry and entry.dialect else spec.dialect),
                base_url=base,
                api_key=key,
                headers=tuple((entry.headers if entry else {}).items()),
                models=entry.models if entry else (),
                messages_base_url=_messages_base(entry, base, spec.messages_path),
            )
        )
    for native in (_gemini_config(settings), _anthropic_config(settings)):
        if native is not None:
            configs.append(native)
    for name, entry in settings.providers.items():
        if name in BUILTIN_SPECS or name in NATIVE_PROVIDER_NAMES or not entry.enabled:
            continue
        if not entry.base_url:
            raise ValueError(f"providers.{name}: base_url is required for a custom provider")
        get_dialect(entry.dialect or "openai")
        configs.append(
            ProviderConfig(
                name=name,
                dialect=entry.dialect or "openai",
                base_url=entry.base_url.rstrip("/"),
                api_key=_toml_key(entry),
                headers=tuple(entry.headers.items()),
                models=entry.models,
                messages_base_url=_messages_base(entry, entry.base_url, None),
            )
        )
    return configs


def _messages_base(entry: CustomProviderConfig | None, base: str, path: str | None) -> str | None:
    """An upstream's Anthropic-compatible Messages API: the entry's ``anthropic_base_url`` ("" for none), else
    derived from the base URL (its host part, without a trailing /v1) for providers known to have one."""
    if entry is not None and entry.anthropic_base_url is not None:
        return entry.anthropic_base_url.rstrip("/") or None
    if path is None:
        return None
    host = base.rstrip("/")
    return (host[: -len("/v1")] if host.endswith("/v1") else host) + path


def provider_names(settings: Settings) -> tuple[str, ...]:
    """Every name that can be a provider (configured or not): what counts as a ``provider/`` prefix in keys."""
    return (*BUILTIN_SPECS, *sorted(NATIVE_PROVIDER_NAMES), *settings.providers)


def _gemini_config(settings: Settings) -> ProviderConfig | None:
    """Gemini (native wire format, ``dialect="gemini"``): offered only when a key is set."""
    entry = settings.providers.get("gemini")
    if entry is not None and not entry.enabled:
        return None
    if entry is not None and entry.dialect not in (None, "gemini"):
        raise ValueError("providers.gemini: 'dialect' does not apply to the native Gemini provider")
    key = _secret(settings.gemini_api_key) or _toml_key(entry)
    if not key:
        return None
    base = (settings.gemini_base_url or (entry.base_url if entry else None) or GEMINI_DEFAULT_BASE_URL).rstrip("/")
    if not _GEMINI_VERSIONED.search(base):
        base += "/" + settings.gemini_api_version
    return ProviderConfig(
        name="gemini",
        dialect="gemini",
        base_url=base,
        api_key=key,
        headers=tuple((entry.headers if entry else {}).items()),
        models=entry.models if entry else (),
    )


def _anthropic_config(settings: Settings) -> ProviderConfig | None:
    """The native Anthropic provider: offered when ANTHROPIC_API_KEY (or ``[providers.anthropic]``) has a key."""
    entry = settings.providers.get("anthropic")
    if entry is not None and not entry.enabled:
        return None
    if entry is not None and entry.dialect not in (None, ANTHROPIC_DIALECT):
        raise ValueError("providers.anthropic: the native Anthropic provider has no dialect setting")
    key = _secret(settings.anthropic_api_key) or _toml_key(entry)
    if not key:
        return None
    base = settings.anthropic_base_url or (entry.base_url if entry else None) or ANTHROPIC_DEFAULT_BASE_URL
    return ProviderConfig(
        name="anthropic",
        dialect=ANTHROPIC_DIALECT,
        base_url=base.rstrip("/"),
        api_key=key,
        headers=tuple((entry.headers if entry else {}).items()),
        models=entry.models if entry else (),
        api_version=settings.anthropic_version,
    )
