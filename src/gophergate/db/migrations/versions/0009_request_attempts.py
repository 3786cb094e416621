"""Routing writes one request-log row per attempt: ``attempt`` (from 1), ``final`` (the attempt whose answer the
client saw) and ``model_group`` (the group the client named; NULL for a plain model name).

Existing rows are attempt 1 and final. Constant server defaults: an ALTER TABLE ADD COLUMN that rewrites no rows on
PostgreSQL (11+) or SQLite.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_log", sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
    op.add_column("request_log", sa.Column("final", sa.Boolean, nullable=False, server_default=sa.true()))
    op.add_column("request_log", sa.Column("model_group", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("model_group")
        batch.drop_column("final")
        batch.drop_column("attempt")
