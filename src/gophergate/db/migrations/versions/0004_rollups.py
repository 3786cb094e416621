"""Dashboard rollups: per minute, hour and day x client key x provider x model (and the projections per provider x
model and per client key), kept by the log writer.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
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
FAMILIES = {"": ("client_key_id", "provider", "model"), "_model": ("provider", "model"), "_client": ("client_key_id",)}
KEY_TYPES: dict[str, Any] = {"client_key_id": sa.BigInteger, "provider": sa.String(100), "model": sa.String(300)}
NAMES = [(f"rollup_{g}{family}", keys) for g in ("minute", "hour", "day") for family, keys in FAMILIES.items()]


def upgrade() -> None:
    for name, keys in NAMES:
        op.create_table(
            name,
            sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
            *(sa.Column(key, KEY_TYPES[key], primary_key=True, autoincrement=False) for key in keys),
            *(sa.Column(column, sa.BigInteger, nullable=False) for column in SUMS),
            *(sa.Column(column, sa.Integer, nullable=False) for column in LATENCY),
        )


def downgrade() -> None:
    for name, _ in reversed(NAMES):
        op.drop_table(name)
