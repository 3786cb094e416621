"""Dashboard rollups: per minute, hour and day x client key x provider x model, kept by the log writer.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"  # TEMP(dash-data): "0003" at merge
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


def upgrade() -> None:
    for granularity in ("minute", "hour", "day"):
        op.create_table(
            f"rollup_{granularity}",
            sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
            sa.Column("client_key_id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("provider", sa.String(100), primary_key=True),
            sa.Column("model", sa.String(300), primary_key=True),
            *(sa.Column(name, sa.BigInteger, nullable=False) for name in SUMS),
            *(sa.Column(name, sa.Integer, nullable=False) for name in LATENCY),
        )


def downgrade() -> None:
    for granularity in ("minute", "hour", "day"):
        op.drop_table(f"rollup_{granularity}")
