"""The funnel store: round trip, idempotent ingest, updates, and all-or-nothing writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scoring import store as store_module
from scoring import store_schema
from scoring.funnel import Funnel
from scoring.store import FunnelStore, StoreConflictError


def ns(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(pd.Series(values)), dtype="datetime64[ns]")


def small_funnel(name: str = "fixture") -> Funnel:
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3"],
            "created_at": ns(["2026-01-05", "2026-01-06", "2026-01-07"]),
            "outcome": ["won", "lost", "open"],
            "closed_at": ns(["2026-02-01", "2026-01-20", None]),
            "amount": [1200.0, None, 500.0],
            "stage": ["won", "lost", "meeting"],
            "owner": pd.Series(["ana", "bo", None], dtype=object),
            "account_id": ["A1", "A2", "A3"],
            "industry": ["software", "retail", "software"],
            "employees": [10, 200, 35],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L3", "L3"],
            "stage": ["lead", "won", "lead", "meeting"],
            "entered_at": ns(["2026-01-05", "2026-02-01", "2026-01-07", "2026-01-09"]),
        }
    )
    customers = pd.DataFrame(
        {
            "account_id": ["A1"],
            "started_at": ns(["2026-02-01"]),
            "churned_at": ns([None]),
            "value": [1200.0],
            "plan": ["pro"],
        }
    )
    return Funnel(
        leads=leads,
        stage_events=events,
        customers=customers,
        observed_until=pd.Timestamp("2026-02-10"),
        features=("industry", "employees"),
        name=name,
    )


def snapshot(store: FunnelStore) -> dict[str, list[tuple[object, ...]]]:
    with store.engine.connect() as connection:
        return {
            table.name: sorted(tuple(row) for row in connection.execute(sa.select(table)))
            for table in (
                store_schema.leads,
                store_schema.stage_events,
                store_schema.customers,
                store_schema.funnel_meta,
            )
        }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FunnelStore]:
    opened = FunnelStore.open(f"sqlite:///{tmp_path / 'funnel.db'}")
    yield opened
    opened.close()


def test_round_trip_keeps_every_value(store: FunnelStore) -> None:
    funnel = small_funnel()
    store.ingest(funnel, source="test")
    loaded = store.load()
    pd.testing.assert_frame_equal(loaded.leads, funnel.leads, check_dtype=False)
    assert loaded.stage_events is not None and funnel.stage_events is not None
    assert loaded.customers is not None and funnel.customers is not None
    pd.testing.assert_frame_equal(loaded.stage_events, funnel.stage_events, check_dtype=False)
    pd.testing.assert_frame_equal(loaded.customers, funnel.customers, check_dtype=False)
    assert loaded.observed_until == funnel.observed_until
    assert loaded.features == ("industry", "employees")
    assert loaded.name == "fixture"


def test_same_data_twice_changes_nothing(store: FunnelStore) -> None:
    first = store.ingest(small_funnel(), source="test")
    before = snapshot(store)
    second = store.ingest(small_funnel(), source="test")
    assert (first.leads_new, first.stage_events_new, first.customers_new) == (3, 4, 1)
    assert (second.leads_new, second.leads_updated, second.leads_unchanged) == (0, 0, 3)
    assert (second.stage_events_new, second.customers_new, second.customers_updated) == (0, 0, 0)
    assert snapshot(store) == before


def test_a_lead_that_moved_on_is_updated(store: FunnelStore) -> None:
    store.ingest(small_funnel(), source="test")
    funnel = small_funnel()
    leads = funnel.leads.copy()
    leads.loc[2, "outcome"] = "won"
    leads.loc[2, "stage"] = "won"
    leads.loc[2, "closed_at"] = pd.Timestamp("2026-02-09")
    events = pd.concat(
        [
            funnel.stage_events,
            pd.DataFrame(
                {"lead_id": ["L3"], "stage": ["won"], "entered_at": [pd.Timestamp("2026-02-09")]}
            ),
        ]
    )
    summary = store.ingest(funnel.with_tables(leads=leads, stage_events=events), source="test")
    assert (summary.leads_new, summary.leads_updated, summary.leads_unchanged) == (0, 1, 2)
    assert summary.stage_events_new == 1
    loaded = store.load().leads.set_index("lead_id")
    assert loaded.loc["L3", "outcome"] == "won"
    assert loaded.loc["L3", "closed_at"] == pd.Timestamp("2026-02-09")


def test_a_new_stage_event_alone_is_picked_up(store: FunnelStore) -> None:
    store.ingest(small_funnel(), source="test")
    funnel = small_funnel()
    assert funnel.stage_events is not None
    events = pd.concat(
        [
            funnel.stage_events,
            pd.DataFrame(
                {"lead_id": ["L3"], "stage": ["proposal"], "entered_at": ns(["2026-02-05"])}
            ),
        ]
    )
    summary = store.ingest(funnel.with_tables(stage_events=events), source="test")
    assert summary.stage_events_new == 1
    loaded = store.load().stage_events
    assert loaded is not None and len(loaded) == 5


def test_failed_ingest_leaves_the_store_as_it_was(
    store: FunnelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.ingest(small_funnel(), source="test")
    before = snapshot(store)
    changed = small_funnel()
    leads = pd.concat([changed.leads, changed.leads.iloc[[0]].assign(lead_id="L4")])

    def fail(*_args: object) -> int:
        raise RuntimeError("disk full")

    # Leads are written before stage events: failing there proves the leads are rolled back.
    monkeypatch.setattr(store_module, "_insert_new_events", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        store.ingest(changed.with_tables(leads=leads), source="test")
    assert snapshot(store) == before


def test_another_data_set_is_refused_unless_replacing(store: FunnelStore) -> None:
    store.ingest(small_funnel("maven"), source="test")
    with pytest.raises(StoreConflictError, match="holds data set 'maven'"):
        store.ingest(small_funnel("olist"), source="test")
    store.ingest(small_funnel("olist"), source="test", replace=True)
    assert store.load().name == "olist"


def test_empty_store_says_how_to_fill_it(store: FunnelStore) -> None:
    with pytest.raises(ValueError, match="funnelcast ingest"):
        store.load()


def test_sqlite_store_uses_wal(store: FunnelStore) -> None:
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_migrations_match_the_schema(store: FunnelStore) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, store_schema.metadata) == []
