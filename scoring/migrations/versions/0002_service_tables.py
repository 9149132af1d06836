"""Scoring API tables: API keys, the score history and shared service state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL (the history grows with every score); SQLite needs INTEGER to autoincrement.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "lead_scores",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(255), nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("grade", sa.String(1), nullable=False),
        sa.Column("model_version", sa.String(255), nullable=False),
    )
    op.create_index("ix_lead_scores_lead_id_scored_at", "lead_scores", ["lead_id", "scored_at"])
    op.create_table(
        "service_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_state")
    op.drop_index("ix_lead_scores_lead_id_scored_at", table_name="lead_scores")
    op.drop_table("lead_scores")
    op.drop_table("api_keys")
