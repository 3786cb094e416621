"""All tables and indexes. The Alembic migrations under ``migrations/versions`` create exactly this schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

metadata = MetaData()

# BigInteger primary keys become INTEGER on SQLite so that they alias the rowid (autoincrement).
BigId = BigInteger().with_variant(Integer(), "sqlite")

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
)
Index("ix_client_keys_updated_at", client_keys.c.updated_at)

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
    Column("cost_usd", Numeric(20, 10), nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("ttfb_ms", Float, nullable=True),
    Column("upstream_ms", Float, nullable=True),
    Column("overhead_ms", Float, nullable=True),
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
