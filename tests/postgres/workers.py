"""What the PostgreSQL tests run in spawned processes (kept light: each process imports it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from scoring.score_history import ScoreRecorder, ScoreRow
from scoring.store import FunnelStore, create_store_engine

ROWS_PER_PROCESS = 300


def score_row(lead_id: str, minute: int) -> ScoreRow:
    at = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    return ScoreRow(lead_id, at, 0.5, 50, "B", "3")


def open_store_together(url: str, barrier: Any) -> None:
    """Open (and so migrate) the store as soon as every other process is ready too."""
    barrier.wait(timeout=60)
    FunnelStore.open(url).close()


def record_scores(url: str, worker: int) -> None:
    """As an API worker does: its own engine and recorder."""
    engine = create_store_engine(url)
    with ScoreRecorder(engine, flush_rows=50, flush_seconds=0.01) as recorder:
        for start in range(0, ROWS_PER_PROCESS, 20):
            recorder.record([score_row(f"W{worker}-L{i}", i) for i in range(start, start + 20)])
    engine.dispose()
