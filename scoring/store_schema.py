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

# -- goals and their checks (migration 0003) --------------------------------------------------

goals = sa.Table(
    "goals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("kpi", sa.String(128), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("target", sa.Float, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("segment", sa.Text, nullable=False),
    sa.Column("owner", sa.String(255), nullable=True, index=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sqlite_autoincrement=True,  # ids name goals in the API and CLI: never reused
)

goal_checks = sa.Table(
    "goal_checks",
    metadata,
    sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column(
        "goal_id",
        sa.Integer,
        sa.ForeignKey("goals.id", name="fk_goal_checks_goal_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("checked_at", sa.DateTime, nullable=False),
    sa.Column("actual", sa.Float, nullable=True),
    sa.Column("forecast_p10", sa.Float, nullable=True),
    sa.Column("forecast_p50", sa.Float, nullable=True),
    sa.Column("forecast_p90", sa.Float, nullable=True),
    sa.Column("probability", sa.Float, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_goal_checks_goal_id_checked_at", "goal_id", "checked_at"),
)

# -- dashboard sign-in sessions (migration 0004) ----------------------------------------------

dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "key_id",
        sa.Integer,
        sa.ForeignKey("api_keys.id", name="fk_dashboard_sessions_key_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
)
