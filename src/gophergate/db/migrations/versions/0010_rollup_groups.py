"""The per-model rollups (``rollup_minute_model``, ``rollup_hour_model``, ``rollup_day_model``) are split by the model
group the client named: a ``model_group`` key column, "" for a plain model name, so analytics can show a group's
figures (and its prompt-cache hit ratio) without a table, and a statement per log batch, more.

Each table is rebuilt with the new primary key (bucket, provider, model, model_group) and its rows copied under the
group "" (rows before 0009 never named a group). The downgrade sums the groups back into one row per model.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_pusd",
)
LATENCY = tuple(f"lat_{i:02d}" for i in range(40))
VALUES = (*SUMS, *LATENCY, "unpriced")
TABLES = tuple(f"rollup_{g}_model" for g in ("minute", "hour", "day"))


def _create(name: str, grouped: bool) -> None:
    keys = [
        sa.Column("provider", sa.String(100), primary_key=True),
        sa.Column("model", sa.String(300), primary_key=True),
    ]
    if grouped:
        keys.append(sa.Column("model_group", sa.String(300), primary_key=True, server_default=""))
    op.create_table(
        name,
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        *keys,
        *(sa.Column(column, sa.BigInteger, nullable=False) for column in SUMS),
        *(sa.Column(column, sa.Integer, nullable=False) for column in LATENCY),
        sa.Column("unpriced", sa.BigInteger, nullable=False, server_default="0"),
    )


def _swap(name: str, grouped: bool) -> None:
    """Rebuild ``name`` (with or without the group key) and copy its rows over."""
    staging = f"{name}_0010"
    _create(staging, grouped)
    values = ", ".join(VALUES)
    if grouped:
        op.execute(
            f"INSERT INTO {staging} (bucket, provider, model, model_group, {values}) "
            f"SELECT bucket, provider, model, '', {values} FROM {name}"
        )
    else:
        sums = ", ".join(f"SUM({column})" for column in VALUES)
        op.execute(
            f"INSERT INTO {staging} (bucket, provider, model, {values}) "
            f"SELECT bucket, provider, model, {sums} FROM {name} GROUP BY bucket, provider, model"
        )
    op.drop_table(name)
    op.rename_table(staging, name)
    if op.get_bind().dialect.name == "postgresql":  # the primary key's name follows the table's
        op.execute(f"ALTER TABLE {name} RENAME CONSTRAINT {staging}_pkey TO {name}_pkey")


def upgrade() -> None:
    for name in TABLES:
        _swap(name, grouped=True)


def downgrade() -> None:
    for name in TABLES:
        _swap(name, grouped=False)
