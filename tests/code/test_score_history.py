"""Score history and shared service state: every score arrives, in order, with its trend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from scoring import store_schema
from scoring.score_history import ScoreRecorder, ScoreRow, score_history, score_trend
from scoring.service_state import bump_reload_generation, reload_generation
from scoring.store import FunnelStore, create_store_engine

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ROWS_PER_PROCESS = 600


def row(lead_id: str, minutes: int, probability: float, model: str = "3") -> ScoreRow:
    return ScoreRow(
        lead_id=lead_id,
        scored_at=T0 + dt.timedelta(minutes=minutes),
        probability=probability,
        score=round(probability * 100),
        grade="A" if probability >= 0.5 else "C",
        model_version=model,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FunnelStore]:
    opened = FunnelStore.open(f"sqlite:///{tmp_path / 'funnel.db'}")
    yield opened
    opened.close()


def stored_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).select_from(store_schema.lead_scores)
            ).scalar_one()
        )


def record_from_another_process(url: str, worker: int) -> None:
    """Runs in a spawned process, as an API worker would: its own engine and recorder."""
    engine = create_store_engine(url)
    with ScoreRecorder(engine, flush_rows=50, flush_seconds=0.01) as recorder:
        for start in range(0, ROWS_PER_PROCESS, 20):
            recorder.record([row(f"W{worker}-L{i}", i, 0.5) for i in range(start, start + 20)])
    engine.dispose()


# -- recording ----------------------------------------------------------------------------------


def test_recorded_rows_are_written_in_the_background(store: FunnelStore) -> None:
    with ScoreRecorder(store.engine, flush_rows=10, flush_seconds=0.05) as recorder:
        recorder.record([row("L1", i, 0.1) for i in range(25)])
        deadline = dt.datetime.now() + dt.timedelta(seconds=5)
        while stored_count(store.engine) < 25 and dt.datetime.now() < deadline:
            threading.Event().wait(0.02)
        assert stored_count(store.engine) == 25  # without flush() or close()


def test_flush_writes_everything_recorded_so_far(store: FunnelStore) -> None:
    recorder = ScoreRecorder(store.engine, flush_rows=1000, flush_seconds=60)
    recorder.record([row("L1", 1, 0.2), row("L2", 2, 0.3)])
    recorder.flush()
    assert stored_count(store.engine) == 2
    recorder.record([row("L3", 3, 0.4)])
    recorder.close()
    assert stored_count(store.engine) == 3


def test_rows_from_two_processes_all_arrive(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'funnel.db'}"
    FunnelStore.open(url).close()
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=record_from_another_process, args=(url, w)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    engine = create_store_engine(url)
    assert stored_count(engine) == 2 * ROWS_PER_PROCESS
    assert len(score_history(engine, "W2-L599")) == 1
    engine.dispose()


def test_a_locked_store_is_retried_then_the_loss_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'funnel.db'}"
    FunnelStore.open(url).close()
    impatient = sa.create_engine(url, connect_args={"timeout": 0.01})
    holder = create_store_engine(url)
    recorder = ScoreRecorder(impatient, flush_seconds=60, retries=2, backoff_seconds=0.01)
    with holder.connect() as blocking:
        blocking.exec_driver_sql("BEGIN IMMEDIATE")  # another writer holds the lock
        recorder.record([row("L1", 1, 0.2), row("L2", 2, 0.3)])
        with caplog.at_level(logging.WARNING, logger="scoring.score_history"):
            recorder.flush()
        blocking.exec_driver_sql("ROLLBACK")
    assert "lost 2 rows after 3 attempts" in caplog.text
    recorder.record([row("L3", 3, 0.4)])
    recorder.close()  # the writer survived: later rows still arrive
    assert stored_count(holder) == 1
    holder.dispose()
    impatient.dispose()


def test_a_briefly_locked_store_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'funnel.db'}"
    FunnelStore.open(url).close()
    impatient = sa.create_engine(url, connect_args={"timeout": 0.01})
    holder = create_store_engine(url)
    recorder = ScoreRecorder(impatient, flush_seconds=60, retries=6, backoff_seconds=0.05)
    blocking = holder.connect()
    blocking.exec_driver_sql("BEGIN IMMEDIATE")
    recorder.record([row("L1", 1, 0.2)])

    def release_the_lock() -> None:
        blocking.exec_driver_sql("ROLLBACK")
        blocking.close()

    release = threading.Timer(0.1, release_the_lock)
    release.start()
    recorder.flush()
    release.join()
    recorder.close()
    assert stored_count(holder) == 1
    holder.dispose()
    impatient.dispose()


# -- reading ------------------------------------------------------------------------------------


def test_history_is_in_time_order_and_keeps_the_latest(store: FunnelStore) -> None:
    with ScoreRecorder(store.engine) as recorder:
        recorder.record([row("L1", 30, 0.3), row("L1", 10, 0.1), row("L2", 5, 0.9)])
        recorder.record([row("L1", 20, 0.2)])
    history = score_history(store.engine, "L1")
    assert [r.probability for r in history] == [0.1, 0.2, 0.3]
    assert history[0] == row("L1", 10, 0.1)  # times come back as UTC
    assert [r.probability for r in score_history(store.engine, "L1", limit=2)] == [0.2, 0.3]
    assert score_history(store.engine, "nobody") == []


def test_times_in_other_zones_are_stored_as_utc(store: FunnelStore) -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    with ScoreRecorder(store.engine) as recorder:
        recorder.record([dataclasses.replace(row("L1", 0, 0.5), scored_at=T0.astimezone(berlin))])
    assert score_history(store.engine, "L1")[0].scored_at == T0


def test_the_recorder_stores_times_as_sqlalchemy_does(store: FunnelStore) -> None:
    """The recorder writes SQLite rows itself (SQLAlchemy's insert cost 15 µs a row): the text
    it stores must be SQLAlchemy's, or ordering and reading back would go wrong."""
    moments = [T0, T0 + dt.timedelta(microseconds=1), T0 + dt.timedelta(seconds=59.5)]
    with ScoreRecorder(store.engine) as recorder:
        recorder.record([dataclasses.replace(row("fast", 0, 0.5), scored_at=m) for m in moments])
    with store.engine.begin() as connection:
        connection.execute(
            store_schema.lead_scores.insert(),
            [
                {"lead_id": "reference", "scored_at": m.replace(tzinfo=None), "probability": 0.5,
                 "score": 50, "grade": "B", "model_version": "3"}
                for m in moments
            ],
        )  # fmt: skip
        stored = connection.exec_driver_sql(
            "SELECT lead_id, scored_at FROM lead_scores ORDER BY id"
        ).all()
    fast = [text for lead, text in stored if lead == "fast"]
    assert fast == [text for lead, text in stored if lead == "reference"]
    assert [r.scored_at for r in score_history(store.engine, "fast")] == moments


def test_a_requests_scores_are_stored_exactly(store: FunnelStore) -> None:
    """`record_scores` hands SQLite a batch as JSON text: every probability must come back as
    the same double (tiny, huge-mantissa and round ones), with its lead, score, grade, version
    and time."""
    rng = np.random.default_rng(7)
    probabilities = [*rng.random(1_500).tolist(), *(rng.random(300) * 1e-12).tolist(),
                     0.0, 1.0, 0.1, 1 / 3, 5e-324, 0.30000000000000004]  # fmt: skip
    lead_ids = [f'L-{i}-\u00e9"quoted"' for i in range(len(probabilities))]
    scores = [round(100 * p) for p in probabilities]
    grades = ["ABCD"[i % 4] for i in range(len(probabilities))]
    at = T0 + dt.timedelta(microseconds=7)
    with ScoreRecorder(store.engine, flush_rows=700) as recorder:
        recorder.record_scores(lead_ids, at, probabilities, scores, grades, "12")
        with pytest.raises(ValueError, match="differ in length"):
            recorder.record_scores(lead_ids, at, probabilities[:-1], scores, grades, "12")
    with store.engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT lead_id, probability, score, grade, model_version FROM lead_scores ORDER BY id"
        ).all()
    assert [tuple(r) for r in stored] == list(
        zip(lead_ids, probabilities, scores, grades, ["12"] * len(lead_ids), strict=True)
    )
    assert [r.scored_at for r in score_history(store.engine, lead_ids[-1])] == [at]


# -- trend --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probabilities", "trend"),
    [
        ([], "steady"),
        ([0.4], "steady"),
        ([0.40, 0.41], "steady"),
        ([0.40, 0.43], "improving"),
        ([0.40, 0.37], "declining"),
        # the latest against the mean of the 4 before it (0.3), not the very first score
        ([0.90, 0.30, 0.30, 0.30, 0.30, 0.31], "steady"),
        ([0.10, 0.20, 0.30, 0.40, 0.50, 0.30], "declining"),  # vs 0.35, not all five (0.30)
    ],
)
def test_trend_rules(probabilities: list[float], trend: str) -> None:
    rows = [row("L1", i, p) for i, p in enumerate(probabilities)]
    assert score_trend(rows) == trend


def test_a_new_model_version_is_not_a_trend() -> None:
    rows = [row("L1", 0, 0.2, model="3"), row("L1", 1, 0.6, model="4")]
    assert score_trend(rows) == "steady"
    rows.append(row("L1", 2, 0.5, model="4"))
    assert score_trend(rows) == "declining"


# -- reload generation --------------------------------------------------------------------------


def test_reload_generation_starts_at_zero_and_counts_up(store: FunnelStore) -> None:
    assert reload_generation(store.engine) == 0
    assert bump_reload_generation(store.engine) == 1
    assert bump_reload_generation(store.engine) == 2
    assert reload_generation(store.engine) == 2


def test_reload_generation_increments_atomically_from_many_threads(store: FunnelStore) -> None:
    results: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def bump_five_times() -> None:
        start.wait()
        for _ in range(5):
            value = bump_reload_generation(store.engine)
            with lock:
                results.append(value)

    threads = [threading.Thread(target=bump_five_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 41))  # no increment lost, none seen twice
    assert reload_generation(store.engine) == 40
