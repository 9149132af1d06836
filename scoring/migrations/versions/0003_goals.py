"""Goals: SMART sales goals and the history of their checks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL (a check is recorded on every run); SQLite needs INTEGER to autoincrement.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "goals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kpi", sa.String(128), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("target", sa.Float, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("segment", sa.Text, nullable=False),  # JSON text: {lead column: value}
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        # Ids are how the API and CLI name goals: SQLite must never reuse a removed goal's id.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_goals_owner", "goals", ["owner"])
    op.create_table(
        "goal_checks",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("goal_id", sa.Integer, nullable=False),
        sa.Column("checked_at", sa.DateTime, nullable=False),
        sa.Column("actual", sa.Float, nullable=True),
        sa.Column("forecast_p10", sa.Float, nullable=True),
        sa.Column("forecast_p50", sa.Float, nullable=True),
        sa.Column("forecast_p90", sa.Float, nullable=True),
        sa.Column("probability", sa.Float, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),  # JSON text
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name="fk_goal_checks_goal_id", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_goal_checks_goal_id_checked_at", "goal_checks", ["goal_id", "checked_at"])


def downgrade() -> None:
    op.drop_index("ix_goal_checks_goal_id_checked_at", table_name="goal_checks")
    op.drop_table("goal_checks")
    op.drop_index("ix_goals_owner", table_name="goals")
    op.drop_table("goals")
