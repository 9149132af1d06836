"""What only PostgreSQL can show: migrations on it, several processes on one store, and the
product configured through FUNNELCAST_DATABASE_URL (no SQLite anywhere).

The store, goals, keys, score history and API tests also run here through their
`[postgresql]` variants (tests/postgres/subset.py).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from funnelcast.cli import app as cli_app
from scoring import store_schema
from scoring.api_keys import list_keys
from scoring.errors import DataContractError
from scoring.goal_store import list_goals
from scoring.score_history import ScoreRecorder, score_history
from scoring.service_state import bump_reload_generation, reload_generation
from scoring.store import MIGRATIONS, FunnelStore, create_store_engine, migrate
from scoring.synthetic import generate_funnel
from tests.postgres import workers
from tests.postgres.server import PostgresServer

pytestmark = pytest.mark.postgres

PERIOD = ("--start", "2026-01-01", "--end", "2026-03-31")


@pytest.fixture
def blank_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new database with no tables at all."""
    name = postgres_server.new_database()
    yield postgres_server.url_for(name)
    postgres_server.drop(name)


@pytest.fixture
def store_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new database holding an empty, migrated store."""
    name = postgres_server.new_database(postgres_server.empty_store())
    yield postgres_server.url_for(name)
    postgres_server.drop(name)


def _schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), store_schema.metadata))


def test_a_funnel_reads_back_the_same_from_both_databases(store_url: str, tmp_path: Path) -> None:
    """Bulk writes (COPY on PostgreSQL) keep awkward text and every time exactly."""
    funnel = generate_funnel(300, seed=5).as_funnel()
    leads = funnel.leads.copy()
    leads.loc[0, "owner"] = 'tab\there, "quotes", back\\slash\nnewline, ünïcødé ✓'
    leads.loc[1, "account_id"] = "\\N"  # COPY's text for NULL, as a value
    leads.loc[2, "industry"] = "line\nbreak\ttab"
    leads.loc[3, "created_at"] = pd.Timestamp("2026-01-02 03:04:05.123456")
    funnel = funnel.with_tables(leads=leads)
    loaded = []
    for url in (f"sqlite:///{tmp_path / 'funnel.db'}", store_url):
        store = FunnelStore.open(url)
        try:
            store.ingest(funnel, source="test")
            again = store.ingest(funnel, source="test")
            assert again.leads_unchanged == len(leads) and again.stage_events_new == 0
            loaded.append(store.load())
        finally:
            store.close()
    on_sqlite, on_postgres = loaded
    pd.testing.assert_frame_equal(on_postgres.leads, on_sqlite.leads)
    assert on_postgres.stage_events is not None and on_sqlite.stage_events is not None
    pd.testing.assert_frame_equal(on_postgres.stage_events, on_sqlite.stage_events)
    assert on_postgres.customers is not None and on_sqlite.customers is not None
    pd.testing.assert_frame_equal(on_postgres.customers, on_sqlite.customers)
    assert on_postgres.leads["owner"].head(1).tolist() == leads["owner"].head(1).tolist()
    assert on_postgres.leads["account_id"].iloc[1] == "\\N"


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("owner", "o" * 256, "longer than 255 characters"),
        ("stage", "s" * 65, "longer than 64 characters"),
        ("account_id", "nul\x00byte", "contains a NUL character"),
    ],
)
def test_text_a_column_cannot_hold_is_refused_on_both_databases(
    store_url: str, tmp_path: Path, column: str, value: str, says: str
) -> None:
    """PostgreSQL enforces VARCHAR lengths and refuses NUL; SQLite would store either."""
    funnel = generate_funnel(50, seed=5).as_funnel()
    leads = funnel.leads.copy()
    leads.loc[7, column] = value
    for url in (f"sqlite:///{tmp_path / 'funnel.db'}", store_url):
        store = FunnelStore.open(url)
        try:
            with pytest.raises(DataContractError, match=f"column '{column}': {says}"):
                store.ingest(funnel.with_tables(leads=leads), source="test")
            assert store.is_empty()
        finally:
            store.close()


def _alembic(engine: sa.Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_migrations_build_the_schema_and_go_down_and_up_again(blank_url: str) -> None:
    store = FunnelStore.open(blank_url)
    engine = store.engine
    try:
        assert _schema_differences(engine) == []
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert version.scalar_one() == head

        _alembic(engine, "downgrade", "base")
        assert sa.inspect(engine).get_table_names() == ["alembic_version"]
        migrate(engine)
        assert _schema_differences(engine) == []
    finally:
        store.close()


def test_processes_opening_a_new_store_together_migrate_it_once(blank_url: str) -> None:
    """API workers (or hosts) starting together on an empty database: one migrates, the others
    wait for it rather than failing on tables that another one just created."""
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Barrier(2)
    openers = [
        spawn.Process(target=workers.open_store_together, args=(blank_url, ready)) for _ in range(2)
    ]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=120)
    assert [p.exitcode for p in openers] == [0, 0]
    engine = create_store_engine(blank_url)
    assert _schema_differences(engine) == []
    engine.dispose()


def test_score_rows_from_two_processes_all_arrive(store_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    recorders = [spawn.Process(target=workers.record_scores, args=(store_url, w)) for w in (1, 2)]
    for recorder in recorders:
        recorder.start()
    for recorder in recorders:
        recorder.join(timeout=120)
    assert [p.exitcode for p in recorders] == [0, 0]
    engine = create_store_engine(store_url)
    with engine.connect() as connection:
        count = sa.select(sa.func.count()).select_from(store_schema.lead_scores)
        assert connection.execute(count).scalar_one() == 2 * workers.ROWS_PER_PROCESS
    assert len(score_history(engine, "W2-L299")) == 1
    engine.dispose()


def test_a_lead_id_with_a_nul_loses_no_other_score(store_url: str) -> None:
    """PostgreSQL's text cannot hold a NUL: such a row is skipped, not the whole batch."""
    engine = create_store_engine(store_url)
    with ScoreRecorder(engine, flush_seconds=60) as recorder:
        rows = [("L1", 1), ("bad\x00id", 2), ("L2", 3)]
        recorder.record([workers.score_row(lead_id, minute) for lead_id, minute in rows])
        assert recorder.flush() == 2
    assert [r.lead_id for r in score_history(engine, "L2")] == ["L2"]
    assert score_history(engine, "bad\x00id") == []
    assert list_goals(engine, owner="bad\x00owner") == []
    engine.dispose()


def test_concurrent_reload_requests_each_count(store_url: str) -> None:
    """The first bump inserts the row: concurrent first bumps collide, retry, and all count."""
    engine = create_store_engine(store_url)
    with ThreadPoolExecutor(max_workers=6) as pool:
        values = list(pool.map(lambda _: bump_reload_generation(engine), range(30)))
    assert sorted(values) == list(range(1, 31))
    assert reload_generation(engine) == 30
    engine.dispose()


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_keeps_everything_in_the_configured_database(
    home: Path, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNELCAST_DATABASE_URL", store_url)
    data = tmp_path / "data"
    for args in (
        ("generate", "--leads", "400", "--seed", "3", "--out", str(data)),
        ("ingest", "--data-dir", str(data)),
        ("keys", "create", "--role", "viewer", "--name", "wall"),
        ("goals", "add", "--name", "Q1", "--kpi", "won_revenue", "--target", "1000", *PERIOD),
    ):
        code, _, err = _run(*args)
        assert code == 0, (args, err)
    code, out, err = _run("kpis", "--format", "json")
    assert code == 0, err
    assert out.lstrip().startswith("[")

    assert not (home / "funnel.db").exists()
    store = FunnelStore.open(store_url)
    try:
        assert len(store.load().leads) == 400
        assert [k.name for k in list_keys(store.engine)] == ["wall"]
        assert [g.goal.kpi for g in list_goals(store.engine)] == ["won_revenue"]
    finally:
        store.close()
