"""Pricing: exact cost columns with a breakdown by token class, price source and price_unknown on every log
row, and the price_overrides table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ExactDecimal = sa.Numeric().with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.alter_column("cost_usd", type_=ExactDecimal, existing_nullable=True)
        for name in ("input", "cache_read", "cache_write", "output", "reasoning"):
            batch.add_column(sa.Column(f"cost_{name}_usd", ExactDecimal, nullable=True))
        batch.add_column(sa.Column("price_source", sa.String(300), nullable=True))
        batch.add_column(sa.Column("price_unknown", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("request_log") as batch:
        batch.alter_column("price_unknown", server_default=None, existing_type=sa.Boolean, existing_nullable=False)

    op.create_table(
        "price_overrides",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("input", ExactDecimal, nullable=True),
        sa.Column("output", ExactDecimal, nullable=True),
        sa.Column("cache_read", ExactDecimal, nullable=True),
        sa.Column("cache_write", ExactDecimal, nullable=True),
        sa.Column("reasoning", ExactDecimal, nullable=True),
        sa.Column("discount_percent", ExactDecimal, nullable=True),
        sa.Column("discount_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("provider", "model", name="uq_price_overrides_provider_model"),
    )


def downgrade() -> None:
    op.drop_table("price_overrides")
    with op.batch_alter_table("request_log") as batch:
        for name in (
            "price_unknown",
            "price_source",
            *(f"cost_{n}_usd" for n in ("input", "cache_read", "cache_write", "output", "reasoning")),
        ):
            batch.drop_column(name)
        batch.alter_column("cost_usd", type_=sa.Numeric(20, 10), existing_nullable=True)
