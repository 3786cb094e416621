"""The request log records the class of an upstream failure (``rate_limited``, ``overloaded``, ``server_error``,
``timeout``, ``connection``, ``context_window_exceeded``; ``core/errors.py:ErrorClass``), NULL for a success or an
error that is not the upstream's.

A nullable column without a default: a plain ALTER TABLE ADD COLUMN on both engines, which rewrites no rows.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_log", sa.Column("error_class", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("error_class")
