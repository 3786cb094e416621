"""The request log records the client's address (behind a trusted reverse proxy, the forwarded one).

A nullable column without a default: a plain ALTER TABLE ADD COLUMN on both engines, which rewrites no rows.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_log", sa.Column("client_ip", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("client_ip")
