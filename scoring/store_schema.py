"""The funnel store's tables as SQLAlchemy Core objects, for queries.

Alembic migrations (scoring/migrations) own the DDL; a test checks the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

funnel_meta = sa.Table(
    "funnel_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=True),
)

leads = sa.Table(
    "leads",
    metadata,
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

stage_events = sa.Table(
    "stage_events",
    metadata,
    sa.Column(
        "lead_id",
        sa.String(255),
        sa.ForeignKey("leads.lead_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("stage", sa.String(64), primary_key=True),
    sa.Column("entered_at", sa.DateTime, primary_key=True),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("account_id", sa.String(255), primary_key=True),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("churned_at", sa.DateTime, nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("attributes", sa.Text, nullable=False),
    sa.Column("row_hash", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("dataset", sa.String(255), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
)

# -- the scoring API's tables (migration 0002) ------------------------------------------------

# BIGINT on PostgreSQL (the history grows with every score); SQLite needs INTEGER to autoincrement.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

api_keys = sa.Table(
    "api_keys",
    metadata,
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

lead_scores = sa.Table(
    "lead_scores",
    metadata,
    sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(255), nullable=False),
    sa.Column("scored_at", sa.DateTime, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("grade", sa.String(1), nullable=False),
    sa.Column("model_version", sa.String(255), nullable=False),
    sa.Index("ix_lead_scores_lead_id_scored_at", "lead_id", "scored_at"),
)

service_state = sa.Table(
    "service_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
