"""Funnel tables: leads, stage events, customers, store metadata and the ingest log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "funnel_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON, nullable=True),
    )
    op.create_table(
        "leads",
        sa.Column("lead_id", sa.String(255), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=True, index=True),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
        sa.Column("amount", sa.Float, nullable=True),
        sa.Column("stage", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("account_id", sa.String(255), nullable=True),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("row_hash", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "stage_events",
        sa.Column(
            "lead_id",
            sa.String(255),
            sa.ForeignKey("leads.lead_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("stage", sa.String(64), primary_key=True),
        sa.Column("entered_at", sa.DateTime, primary_key=True),
    )
    op.create_table(
        "customers",
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("churned_at", sa.DateTime, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("row_hash", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("dataset", sa.String(255), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("ingest_runs", "customers", "stage_events", "leads", "funnel_meta"):
        op.drop_table(table)
