"""Teams, and one set of governance limits on teams and client keys (issue 17, step 1: stored, not enforced yet).

Adds the ``teams`` table and, on both ``teams`` and ``client_keys``: ``rpm``, ``tpm``, ``max_parallel``,
``budget_usd`` with ``budget_period`` (day | week | month | total), ``allowed_models`` (a JSON list of patterns)
and ``max_tokens_cap``; on keys also ``team_id`` (nullable, a foreign key to ``teams``) and ``expires_at``.

The two old budget columns of 0003 become one budget with a period: a key with a monthly budget keeps it as
``budget_usd`` with period ``month`` (its daily one, if it also had one, is dropped: one budget per key); else a
daily budget becomes period ``day``. ``rpm`` and ``tpm`` stay as they are.

Downgrade: a ``day`` budget goes back to ``budget_daily_usd`` and a ``month`` budget to ``budget_monthly_usd``;
``week`` and ``total`` budgets, teams and the other new limits are lost.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ExactDecimal = sa.Numeric().with_variant(sa.Text(), "sqlite")


def _new_limits() -> list[sa.Column[object]]:
    return [
        sa.Column("max_parallel", sa.Integer, nullable=True),
        sa.Column("budget_usd", ExactDecimal, nullable=True),
        sa.Column("budget_period", sa.String(8), nullable=True),
        sa.Column("allowed_models", sa.Text, nullable=True),
        sa.Column("max_tokens_cap", sa.Integer, nullable=True),
    ]


def _keys(*names: str) -> sa.TableClause:
    types = {"budget_period": sa.String(8)}
    return sa.table("client_keys", *(sa.column(n, types.get(n, ExactDecimal)) for n in names))


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        *_new_limits(),
    )
    with op.batch_alter_table("client_keys") as batch:
        batch.add_column(sa.Column("team_id", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        for column in _new_limits():
            batch.add_column(column)
        batch.create_foreign_key("fk_client_keys_team_id", "teams", ["team_id"], ["id"])
        batch.create_index("ix_client_keys_team_id", ["team_id"])

    keys = _keys("budget_daily_usd", "budget_monthly_usd", "budget_usd", "budget_period")
    op.execute(
        sa.update(keys)
        .where(keys.c.budget_monthly_usd.is_not(None))
        .values(budget_usd=keys.c.budget_monthly_usd, budget_period="month")
    )
    op.execute(
        sa.update(keys)
        .where(keys.c.budget_usd.is_(None), keys.c.budget_daily_usd.is_not(None))
        .values(budget_usd=keys.c.budget_daily_usd, budget_period="day")
    )
    with op.batch_alter_table("client_keys") as batch:
        batch.drop_column("budget_monthly_usd")
        batch.drop_column("budget_daily_usd")


def downgrade() -> None:
    with op.batch_alter_table("client_keys") as batch:
        batch.add_column(sa.Column("budget_daily_usd", ExactDecimal, nullable=True))
        batch.add_column(sa.Column("budget_monthly_usd", ExactDecimal, nullable=True))
    keys = _keys("budget_daily_usd", "budget_monthly_usd", "budget_usd", "budget_period")
    op.execute(sa.update(keys).where(keys.c.budget_period == "day").values(budget_daily_usd=keys.c.budget_usd))
    op.execute(sa.update(keys).where(keys.c.budget_period == "month").values(budget_monthly_usd=keys.c.budget_usd))
    with op.batch_alter_table("client_keys") as batch:
        batch.drop_index("ix_client_keys_team_id")
        batch.drop_constraint("fk_client_keys_team_id", type_="foreignkey")
        for name in ("max_tokens_cap", "allowed_models", "budget_period", "budget_usd", "max_parallel"):
            batch.drop_column(name)
        batch.drop_column("expires_at")
        batch.drop_column("team_id")
    op.drop_table("teams")
