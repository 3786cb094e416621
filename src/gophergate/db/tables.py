"""All tables and indexes. The Alembic migrations under ``migrations/versions`` create exactly this schema."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

metadata = MetaData()

# BigInteger primary keys become INTEGER on SQLite so that they alias the rowid (autoincrement).
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Exact decimals (USD amounts, prices): unbounded NUMERIC on PostgreSQL; TEXT on SQLite, whose NUMERIC affinity
# would turn them into 15-digit floats. Written and read as decimal strings there.
ExactDecimal = Numeric().with_variant(Text(), "sqlite")


# Governance limits shared by teams and client keys (NULL = unlimited; migration 0007), enforced on /v1 by
# gateway/governance.py. allowed_models is a JSON list of patterns (NULL or [] = every model); budget_period is
# day | week | month | total and is set exactly when budget_usd is.
def _limit_columns() -> list[Column[Any]]:
    return [
        Column("rpm", Integer, nullable=True),
        Column("tpm", Integer, nullable=True),
        Column("max_parallel", Integer, nullable=True),
        Column("budget_usd", ExactDecimal, nullable=True),
        Column("budget_period", String(8), nullable=True),
        Column("allowed_models", Text, nullable=True),
        Column("max_tokens_cap", Integer, nullable=True),
    ]


teams = Table(
    "teams",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    *_limit_columns(),
)

client_keys = Table(
    "client_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    # Per-key limits (migration 0007; NULL = unlimited).
    Column("team_id", BigInteger, ForeignKey("teams.id", name="fk_client_keys_team_id"), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    *_limit_columns(),
)
Index("ix_client_keys_updated_at", client_keys.c.updated_at)
Index("ix_client_keys_team_id", client_keys.c.team_id)

request_log = Table(
    "request_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("client_key_id", BigInteger, nullable=True),
    Column("requested_model", String(300), nullable=True),
    Column("provider", String(100), nullable=True),
    Column("model", String(300), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),
    Column("error_type", String(100), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("finish_reason", String(50), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cache_read_tokens", Integer, nullable=False, default=0),
    Column("cache_write_tokens", Integer, nullable=False, default=0),
    Column("estimated", Boolean, nullable=False, default=False),
    Column("cost_usd", ExactDecimal, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("ttfb_ms", Float, nullable=True),
    Column("upstream_ms", Float, nullable=True),
    Column("overhead_ms", Float, nullable=True),
    # Cost breakdown by token class (sums to cost_usd), what priced it, and whether no price was known.
    Column("cost_input_usd", ExactDecimal, nullable=True),
    Column("cost_cache_read_usd", ExactDecimal, nullable=True),
    Column("cost_cache_write_usd", ExactDecimal, nullable=True),
    Column("cost_output_usd", ExactDecimal, nullable=True),
    Column("cost_reasoning_usd", ExactDecimal, nullable=True),
    Column("price_source", String(300), nullable=True),
    Column("price_unknown", Boolean, nullable=False, default=False),
    # The client's address (behind a trusted reverse proxy, the forwarded one); NULL for rows before 0005.
    Column("client_ip", String(64), nullable=True),
    # What kind of upstream failure the request met (core/errors.py:ErrorClass); NULL otherwise and before 0008.
    Column("error_class", String(32), nullable=True),
    # Routing: the attempt's number (from 1), whether it is the request's last (the answer the client saw), and the
    # model group the client named (NULL: a plain model name). Rows before 0009 are attempt 1, final.
    Column("attempt", Integer, nullable=False, default=1, server_default="1"),
    Column("final", Boolean, nullable=False, default=True, server_default=true()),
    Column("model_group", String(300), nullable=True),
)
# One index per dashboard filter, each ending in created_at so "newest first" pages are index scans.
Index("ix_request_log_created_at", request_log.c.created_at)
Index("ix_request_log_client_created", request_log.c.client_key_id, request_log.c.created_at)
Index("ix_request_log_provider_created", request_log.c.provider, request_log.c.created_at)
Index("ix_request_log_model_created", request_log.c.model, request_log.c.created_at)
Index("ix_request_log_status_created", request_log.c.status, request_log.c.created_at)
# "Errors only, newest first": a partial index, so successful rows (the bulk) cost it nothing.
Index(
    "ix_request_log_errors_created",
    request_log.c.created_at,
    sqlite_where=request_log.c.status >= 400,
    postgresql_where=request_log.c.status >= 400,
)
Index("ix_request_log_request_id", request_log.c.request_id)

# Per-model price overrides and discounts set with `gophergate prices set` (TOML ones live in the settings).
price_overrides = Table(
    "price_overrides",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("provider", String(100), nullable=False),  # "" = any provider
    Column("model", String(300), nullable=False),
    Column("input", ExactDecimal, nullable=True),
    Column("output", ExactDecimal, nullable=True),
    Column("cache_read", ExactDecimal, nullable=True),
    Column("cache_write", ExactDecimal, nullable=True),
    Column("reasoning", ExactDecimal, nullable=True),
    Column("discount_percent", ExactDecimal, nullable=True),
    Column("discount_until", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("provider", "model", name="uq_price_overrides_provider_model"),
)

# -- dashboard: users, sessions, providers and models managed from /api (migration 0003) ----------------------

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("password_hash", String(100), nullable=False),  # bcrypt, cost 12
    Column("role", String(16), nullable=False),  # "admin" | "viewer"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
)

# Server-side sessions: the signed cookie names a row here, so logout or a password change revokes it at once.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),  # 128 random bits, hex
    Column("user_id", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # the absolute lifetime
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
)
Index("ix_sessions_user_id", sessions.c.user_id)

# Providers added or edited from the dashboard; a row replaces the env/TOML provider of the same name.
provider_configs = Table(
    "provider_configs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("dialect", String(32), nullable=True),
    Column("base_url", String(500), nullable=True),
    Column("api_key_encrypted", LargeBinary, nullable=True),  # nonce || AES-256-GCM ciphertext+tag
    Column("models", Text, nullable=False),  # JSON list of model ids
    Column("enabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Per-model switches: a disabled (provider, model) answers 404 model_not_found on /v1.
model_settings = Table(
    "model_settings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("provider", String(100), nullable=False),
    Column("model", String(300), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("provider", "model", name="uq_model_settings_provider_model"),
)

# Responses the gateway translated (/v1/responses on a provider without a Responses API), for previous_response_id
# and GET/DELETE /v1/responses/{id}: the response object and the conversation's chat messages up to and including it
# (JSON), owned by one client key, deleted by retention after expires_at (migration 0011).
stored_responses = Table(
    "stored_responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client_key_id", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("response", Text, nullable=False),
    Column("messages", Text, nullable=False),
)
Index("ix_stored_responses_expires_at", stored_responses.c.expires_at)

# -- Dashboard rollups (helper "data") ---------------------------------------------------------------------------
# Request counts, tokens, cost and a latency histogram per time bucket, kept by the log writer in the same
# transaction as the raw rows, so analytics never scan request_log. Three granularities (minute, hour, day), each in
# four key families:
#   rollup_<g>         bucket x client key x provider x model (the full cross product),
#   rollup_<g>_model   bucket x provider x model x model group (all clients: what ungrouped and per model, provider,
#                      target and model group views read; the group is "" for a plain model name; migration 0010),
#   rollup_<g>_client  bucket x client key (all models: per-client views).
# The projections are sums of the full table (the model family split by the model group the client named, which
# costs plain traffic nothing and the writer no statement more); they exist so that a 30-day hourly chart reads ~15
# rows per hour instead of one per (client, model) pair. The key is the primary key, bucket first (every query is a
# bucket range).
# A request without a client key / provider / model is stored under 0 / "" / "" (NULLs would never conflict in an
# upsert). cost_pusd is the cost in pico-USD (1e-12 USD), an integer so that the upsert adds it exactly on both
# engines. unpriced counts the requests with tokens but no known price (their cost is not in cost_pusd: a total
# shows "N unpriced" beside it, never a silent 0; migration 0006). lat_00..lat_39 count requests per latency bucket
# (gophergate.recorder.rollup.LATENCY_EDGES_MS). requests, errors and the latency buckets count final rows only (a
# request routing retried counts once); tokens, cost and unpriced add up every attempt's row.
ROLLUP_GRANULARITIES: tuple[str, ...] = ("minute", "hour", "day")
ROLLUP_FAMILIES: dict[str, tuple[str, ...]] = {
    "": ("client_key_id", "provider", "model"),
    "_model": ("provider", "model", "model_group"),
    "_client": ("client_key_id",),
}
LATENCY_BUCKETS = 40
ROLLUP_SUMS: tuple[str, ...] = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_pusd",
    "unpriced",
)
LATENCY_COLUMNS: tuple[str, ...] = tuple(f"lat_{i:02d}" for i in range(LATENCY_BUCKETS))
_ROLLUP_KEY_TYPES: dict[str, Any] = {
    "client_key_id": BigInteger,
    "provider": String(100),
    "model": String(300),
    "model_group": String(300),
}


# Added by migration 0010 to tables that may hold rows (theirs are a plain model name's: "").
_KEY_DEFAULTS: dict[str, dict[str, Any]] = {"model_group": {"server_default": ""}}


def _rollup_table(name: str, keys: tuple[str, ...]) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", DateTime(timezone=True), primary_key=True),
        *(
            Column(key, _ROLLUP_KEY_TYPES[key], primary_key=True, autoincrement=False, **_KEY_DEFAULTS.get(key, {}))
            for key in keys
        ),
        *(Column(name, BigInteger, nullable=False, default=0) for name in ROLLUP_SUMS if name != "unpriced"),
        *(Column(name, Integer, nullable=False, default=0) for name in LATENCY_COLUMNS),
        # Added by migration 0006 (last, as ALTER TABLE puts it) to tables that may hold rows: a server default.
        Column("unpriced", BigInteger, nullable=False, default=0, server_default="0"),
    )


# Table name -> its key columns after bucket, e.g. "rollup_hour_model" -> ("provider", "model").
ROLLUP_KEYS: dict[str, tuple[str, ...]] = {
    f"rollup_{g}{family}": keys for g in ROLLUP_GRANULARITIES for family, keys in ROLLUP_FAMILIES.items()
}
ROLLUPS: dict[str, Table] = {name: _rollup_table(name, keys) for name, keys in ROLLUP_KEYS.items()}
rollup_minute = ROLLUPS["rollup_minute"]
rollup_hour = ROLLUPS["rollup_hour"]
rollup_day = ROLLUPS["rollup_day"]
ROLLUP_TABLES: dict[str, Table] = {"minute": rollup_minute, "hour": rollup_hour, "day": rollup_day}


def rollup_table(granularity: str, family: str = "") -> Table:
    return ROLLUPS[f"rollup_{granularity}{family}"]
