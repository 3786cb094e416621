"""Settings: environment (``GOPHERGATE_*`` and the providers' standard names), ``.env`` and an optional TOML file.

Precedence, highest first: process environment, ``.env``, TOML file, defaults. Settings are validated once at
start and frozen; every other module receives the ``Settings`` object explicitly.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENCRYPTION_KEY_VAR = "GOPHERGATE_ENCRYPTION_KEY"
CONFIG_VAR = "GOPHERGATE_CONFIG"


def decode_encryption_key(value: str) -> bytes:
    """Accept 64 hex characters or base64 (standard or url-safe) of exactly 32 bytes."""
    text = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None, validate=True
        )
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("must be 64 hex characters or base64 of exactly 32 bytes")
    return raw


def parse_networks(value: Any) -> tuple[IPv4Network | IPv6Network, ...]:
    """Addresses and CIDR networks, from a comma-separated string (the environment) or a list (TOML); an
    address is a network of one. Empty items are skipped, so an empty string is an empty tuple."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be IP addresses or CIDR networks, separated by commas")
    networks: list[IPv4Network | IPv6Network] = []
    for item in items:
        if isinstance(item, (IPv4Network, IPv6Network)):
            networks.append(item)
            continue
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an IP address or CIDR network")
        if not item.strip():
            continue
        text = item.strip()
        try:
            networks.append(ip_network(text))
        except ValueError as exc:
            try:
                hint = f" (the network is {ip_network(text, strict=False)})"
            except ValueError:
                hint = ""
            raise ValueError(f"{text!r} is not an IP address or CIDR network: {exc}{hint}") from None
    return tuple(networks)


class CustomProviderConfig(BaseModel):
    """A provider entry from the TOML file (``[providers.NAME]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    api_key: SecretStr | None = None
    # Name of an environment variable holding the key, so the TOML file can stay free of secrets.
    api_key_env: str | None = None
    # Dialect of an OpenAI-compatible upstream; custom providers default to plain OpenAI.
    dialect: str | None = None
    # Bare model names routed to this provider (custom upstreams have no name pattern of their own).
    models: tuple[str, ...] = ()
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    # The models.dev provider id whose prices and limits apply to this upstream's models (e.g. "openrouter").
    registry_provider: str | None = None
    # The base URL of the upstream's Anthropic-compatible Messages API (without /v1/messages): /v1/messages requests
    # to this provider pass through there. DeepSeek and Moonshot have one derived from base_url; "" turns it off.
    anthropic_base_url: str | None = None


class PriceConfig(BaseModel):
    """A price override from the TOML file (``[prices."provider/model"]`` or ``[prices."model"]``).

    Prices are USD per 1M tokens and replace the registry's for the classes given; a discount takes
    ``discount_percent`` off every class until ``discount_until`` (exclusive; a date means its midnight UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal | None = Field(None, ge=0)
    output: Decimal | None = Field(None, ge=0)
    cache_read: Decimal | None = Field(None, ge=0)
    cache_write: Decimal | None = Field(None, ge=0)
    reasoning: Decimal | None = Field(None, ge=0)
    discount_percent: Decimal | None = Field(None, gt=0, le=100)
    discount_until: dt.datetime | dt.date | None = None

    @model_validator(mode="after")
    def _check_discount(self) -> PriceConfig:
        if (self.discount_percent is None) != (self.discount_until is None):
            raise ValueError("discount_percent and discount_until go together")
        return self


ERROR_CLASSES: tuple[str, ...] = (
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "context_window_exceeded",
)
RetryClass = Literal["rate_limited", "overloaded", "server_error", "timeout", "connection", "context_window_exceeded"]
Strategy = Literal["weighted", "priority", "least-busy", "latency", "cost"]
# Transient classes: worth retrying or sending elsewhere. context_window_exceeded always moves to the next target.
DEFAULT_RETRY_ON: tuple[RetryClass, ...] = ("rate_limited", "overloaded", "server_error", "timeout", "connection")


class TargetConfig(BaseModel):
    """One target of a model group: a model name the gateway resolves (``provider/model``, an alias, a bare id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=300)
    weight: float = Field(1.0, gt=0)


class RuleWhen(BaseModel):
    """What a request must be for a rule to match (every condition given must hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_prompt_tokens: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, ge=0)
    has_images: bool | None = None
    has_tools: bool | None = None
    reasoning_effort: tuple[str, ...] | None = None
    pattern: str | None = None  # a regular expression searched in the last user message's text

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: RuleWhen
    targets: tuple[TargetConfig, ...] = Field(min_length=1)


GroupName = Annotated[str, Field(min_length=1, max_length=300)]


class ModelGroupConfig(BaseModel):
    """``[model_groups.NAME]``: a client-facing model name standing for several targets (docs/routing.md).
    Unset fields take ``[routing]``'s defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = "weighted"
    targets: tuple[TargetConfig, ...] = Field(min_length=1)
    fallbacks: tuple[GroupName, ...] | None = None
    retries: int | None = Field(None, ge=0, le=10)
    retry_on: tuple[RetryClass, ...] | None = None
    first_token_timeout_s: float | None = Field(None, gt=0)
    affinity: Literal["none", "session", "prefix"] = "none"
    affinity_ttl_s: float | None = Field(None, gt=0)
    rules: tuple[RuleConfig, ...] = ()


class RoutingConfig(BaseModel):
    """``[routing]``: defaults for every group, and for plain model names (``retries`` and ``fallbacks`` there
    make a plain name retry and fall back too; by default a plain name has one target and no retry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(0, ge=0, le=10)
    fallbacks: tuple[GroupName, ...] = ()
    retry_on: tuple[RetryClass, ...] = DEFAULT_RETRY_ON
    first_token_timeout_s: float | None = Field(None, gt=0)
    max_retry_after_s: float = Field(10.0, ge=0)
    stream_idle_timeout_s: float = Field(60.0, gt=0)
    cooldown_after: int = Field(3, ge=1)
    cooldown_s: float = Field(30.0, gt=0)
    affinity_ttl_s: float = Field(300.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GOPHERGATE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    encryption_key: SecretStr = Field(description="32-byte key: 64 hex characters or base64. Required.")
    config: Path | None = Field(None, description="Optional TOML configuration file.")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    database_url: str | None = None
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers
    # OpenTelemetry traces (on through the standard OTEL_* variables) record the prompt and the answer.
    otel_capture_content: bool = False

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # The whole request body must arrive within this long (408): a deadline per read lets a body trickle forever.
    body_timeout_seconds: float = Field(60.0, gt=0)
    upstream_connect_timeout: float = Field(10.0, gt=0)
    upstream_read_timeout: float = Field(300.0, gt=0)
    upstream_total_timeout: float = Field(900.0, gt=0)
    upstream_max_connections: int = Field(1024, ge=1)
    # auto | h1 | aiohttp (providers/transport.py): see _check_upstream_client.
    upstream_client: Literal["auto", "h1", "aiohttp", "pyreqwest", "hybrid"] = "auto"
    # Bounds on what an upstream can make the gateway hold: a buffered (decoded) answer, and one stream event.
    # Past them the client gets a 502, or an error event mid-stream.
    max_upstream_response_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    max_sse_event_bytes: int = Field(16 * 1024 * 1024, ge=1024)

    log_queue_size: int = Field(100_000, ge=100)
    log_batch_size: int = Field(1_000, ge=1)
    log_flush_interval_ms: int = Field(10, ge=1)
    # Raw request-log rows older than this are deleted (in small batches, hourly); rollups are kept. 0 = keep.
    log_retention_days: int = Field(30, ge=0)
    # Responses the gateway made by translating /v1/responses are kept this long for previous_response_id.
    responses_ttl_days: int = Field(30, ge=1)
    shutdown_drain_seconds: float = Field(30.0, gt=0)
    # Rows queued and nothing written for this long: /readyz says not ready (the log writer is stuck).
    log_stall_seconds: float = Field(30.0, gt=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    keepalive_timeout_seconds: float = Field(30.0, gt=0)
    # Requests one worker answers at once (Granian's backpressure); past it, connections wait to be read.
    max_concurrent_requests: int = Field(1024, ge=1)
    key_refresh_seconds: float = Field(0.25, gt=0)
    models_refresh_seconds: float = Field(600.0, gt=0)

    media_fetch_allow_private: bool = False

    registry_url: str = "https://models.dev/api.json"
    registry_refresh_hours: float = Field(24.0, gt=0)
    price_refresh_seconds: float = Field(5.0, gt=0)

    # Dashboard users and sessions.
    admin_password: SecretStr | None = Field(None, description="Creates the user `admin` at the first start.")
    session_idle_minutes: float = Field(30.0, gt=0)
    session_max_hours: float = Field(12.0, gt=0)
    login_max_failures: int = Field(5, ge=1)  # per username and IP together, and per IP, in 15 minutes
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (http/forwarded.py). NoDecode: the
    # environment value is comma-separated text, not JSON.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = (
        IPv4Network("127.0.0.1/32"),
        IPv6Network("::1/128"),
    )

    # Governance (issue 17): budgets' calendar periods, models without a price under a budget, and where the
    # counters live. With a Redis URL every counter is shared by all workers and instances.
    budget_timezone: str = "UTC"
    budget_unknown_price: Literal["deny", "allow"] = "deny"
    redis_url: SecretStr | None = Field(None, description="redis://[:password@]host:port/db for shared limits.")
    limits_on_redis_error: Literal["deny", "allow"] = "deny"
    redis_key_prefix: str = Field("gophergate:", min_length=1, max_length=100)
    # This instance's name on the dashboard and in the cluster's live figures ("<hostname>:<port>" when unset).
    instance_name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    # When set, /metrics answers only a request with ``Authorization: Bearer <token>`` (401 otherwise).
    metrics_token: SecretStr | None = Field(None, description="Bearer token required on /metrics.")

    aliases: dict[str, str] = Field(default_factory=dict)
    # Routing (issue 18): model groups (TOML ``[model_groups.NAME]``, or JSON in GOPHERGATE_MODEL_GROUPS) and the
    # defaults in ``[routing]`` (GOPHERGATE_ROUTING as JSON).
    model_groups: dict[GroupName, ModelGroupConfig] = Field(default_factory=dict)
    routing: RoutingConfig = RoutingConfig()  # type: ignore[call-arg]
    providers: dict[str, CustomProviderConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)

    # The providers' standard environment names (no GOPHERGATE_ prefix), as their official SDKs read them.
    openai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    deepseek_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DEEPSEEK_API_KEY"))
    deepseek_base_url: str | None = Field(None, validation_alias=AliasChoices("DEEPSEEK_BASE_URL"))
    xai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("XAI_API_KEY"))
    xai_base_url: str | None = Field(None, validation_alias=AliasChoices("XAI_BASE_URL"))
    moonshot_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("MOONSHOT_API_KEY"))
    moonshot_base_url: str | None = Field(None, validation_alias=AliasChoices("MOONSHOT_BASE_URL"))
    ollama_base_url: str | None = Field(None, validation_alias=AliasChoices("OLLAMA_BASE_URL"))
    ollama_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OLLAMA_API_KEY"))
    # Gemini (native wire format): the google-genai SDK reads GEMINI_API_KEY, then GOOGLE_API_KEY.
    gemini_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY"))
    gemini_base_url: str | None = Field(None, validation_alias=AliasChoices("GEMINI_BASE_URL"))
    gemini_api_version: str = Field("v1beta", pattern=r"^v1(alpha|beta)?$")
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("ANTHROPIC_API_KEY"))
    anthropic_base_url: str | None = Field(None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL"))
    # The anthropic-version header (GOPHERGATE_ANTHROPIC_VERSION). From 2026-10-21 on, temperature, top_p and
    # top_k are rejected by the API, so the gateway drops them (providers.md §4.1).
    anthropic_version: str = Field("2023-06-01", pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("encryption_key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        decode_encryption_key(value.get_secret_value())
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _check_proxies(cls, value: Any) -> tuple[IPv4Network | IPv6Network, ...]:
        return parse_networks(value)

    @field_validator("upstream_client", mode="before")
    @classmethod
    def _check_upstream_client(cls, value: object) -> object:
        # pyreqwest and hybrid were removed: still accepted so that a start does not fail on them; the runtime
        # runs them as auto and says so in one warning line (providers/transport.client_kind).
        if value not in ("auto", "h1", "aiohttp", "pyreqwest", "hybrid"):
            raise ValueError("must be auto, h1 or aiohttp")
        return value

    @field_validator("budget_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as UTC or Europe/Berlin)") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if value.get_secret_value().split(":", 1)[0] not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split(":", 1)[0]
        if scheme not in {"sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml_path = _config_path_from_env()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def encryption_key_bytes(self) -> bytes:
        return decode_encryption_key(self.encryption_key.get_secret_value())

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: the SQLite default lives in the data dir."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'gophergate.db').as_posix()}"
        return async_database_url(url)


def async_database_url(url: str) -> str:
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def _config_path_from_env() -> Path | None:
    raw = os.environ.get(CONFIG_VAR)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"{CONFIG_VAR}: no such file: {raw}")
    return path


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; raises ``pydantic.ValidationError`` or ``ValueError`` on bad configuration."""
    return Settings(**overrides)


def describe_settings_error(exc: Exception) -> str:
    """One line naming the offending variable, for the CLI to print before exiting."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else "configuration"
        var = _variable_for_field(field)
        if err.get("type") == "missing":
            return f"{var} is not set" + (
                " (generate one with: python -c 'import secrets; print(secrets.token_hex(32))')"
                if var == ENCRYPTION_KEY_VAR
                else ""
            )
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if len(loc) > 1 and field in _NESTED:  # a table's entry (a model group's field): name its path
            path = ".".join(str(part) for part in loc)
            return f"{var} is invalid at {path}: {message}"
        return f"{var} is invalid: {message}"
    return str(exc)


_NESTED = frozenset(("model_groups", "routing", "providers", "prices"))


def _variable_for_field(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    if info is not None:
        return "GOPHERGATE_" + field.upper()
    return field
