"""The score history: every score the API hands out, kept per lead, and the lead's trend.

Scoring must not wait for the database, so `ScoreRecorder.record` only queues the rows; a
background thread writes them in batches (one insert statement each). Several API processes can
record into one SQLite file (WAL mode and the store's busy timeout make writers queue up).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from statistics import fmean
from types import TracebackType
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from scoring import store_schema as schema

logger = logging.getLogger(__name__)

Trend = Literal["improving", "steady", "declining"]
TREND_WINDOW = 4
TREND_MIN_CHANGE = 0.02


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One score given to one lead. `scored_at` is UTC (a naive time is taken as UTC)."""

    lead_id: str
    scored_at: dt.datetime
    probability: float
    score: int
    grade: str
    model_version: str


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _storable_id(lead_id: str) -> bool:
    """Whether every database can store (and look up) this lead id: PostgreSQL's text cannot
    hold a NUL character, so no history is kept for such ids, on any database."""
    return "\x00" not in lead_id


# A row as queued: lead_id, scored_at (UTC), scored_at as SQLite text (`_sqlite_stamp`),
# probability, score, grade, model_version. Plain tuples: a request's rows are made with one
# zip, and the SQLite writer hands a batch to the database as one JSON text.
Queued = tuple[str, dt.datetime, str, float, int, str, str]


def _as_values(row: Queued) -> dict[str, Any]:
    return {
        "lead_id": row[0],
        "scored_at": _naive_utc(row[1]),
        "probability": row[3],
        "score": row[4],
        "grade": row[5],
        "model_version": row[6],
    }


# One statement for a whole batch: the rows arrive as one JSON array of `Queued` arrays. The
# driver's executemany binds each row in Python, taking the interpreter lock back from the
# request thread once a row; this statement runs in SQLite with the lock released throughout.
# SQLite reads JSON numbers back to the same doubles (tests/code/test_score_history.py).
# json_extract and json_each are in every SQLite since 3.9 (2015); `->>` would need 3.38.
_SQLITE_INSERT = (
    "INSERT INTO lead_scores (lead_id, scored_at, probability, score, grade, model_version) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), "
    "json_extract(value, '$[6]') FROM json_each(?)"
)


def _sqlite_stamp(moment: dt.datetime) -> str:
    """`moment` (UTC) as SQLAlchemy's SQLite `DateTime` stores it, so both read it back alike."""
    m = _naive_utc(moment)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d} "
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}"
    )


class ScoreRecorder:
    """Writes score rows to the store in the background, in batches.

    Args:
        flush_rows: rows per insert; reaching it wakes the writer early.
        flush_seconds: longest a recorded row waits before the writer runs.
        max_pending: rows held in memory at most while the store is unreachable; rows recorded
            beyond it are dropped (and counted in a warning) rather than exhausting memory.
        retries: attempts after the first when the store is locked or unreachable.
    """

    def __init__(
        self,
        engine: sa.Engine,
        flush_rows: int = 500,
        flush_seconds: float = 0.5,
        *,
        max_pending: int = 100_000,
        retries: int = 3,
        backoff_seconds: float = 0.1,
    ) -> None:
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError("flush_rows must be at least 1 and flush_seconds positive")
        self._engine = engine
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending
        self._retries = retries
        self._backoff_seconds = backoff_seconds
        self._pending: deque[Queued] = deque()
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="score-recorder", daemon=True)
        self._writer.start()

    def record(self, rows: Iterable[ScoreRow]) -> None:
        """Queue rows for writing; returns at once."""
        self._queue(
            [
                (r.lead_id, r.scored_at, _sqlite_stamp(r.scored_at), float(r.probability),
                 int(r.score), r.grade, r.model_version)
                for r in rows
            ]
        )  # fmt: skip

    def record_scores(
        self,
        lead_ids: Sequence[str],
        scored_at: dt.datetime,
        probabilities: Sequence[float],
        scores: Sequence[int],
        grades: Sequence[str],
        model_version: str,
    ) -> None:
        """Queue the scores of one request, all given at `scored_at`: `record` without a
        `ScoreRow` per lead. Give plain floats and ints (`ndarray.tolist()`): numpy scalars
        are written to SQLite but not to PostgreSQL."""
        n = len(lead_ids)
        if not len(probabilities) == len(scores) == len(grades) == n:
            raise ValueError("lead_ids, probabilities, scores and grades differ in length")
        stamp = _sqlite_stamp(scored_at)
        self._queue(
            list(
                zip(lead_ids, repeat(scored_at, n), repeat(stamp, n), probabilities, scores,
                    grades, repeat(model_version, n), strict=True)
            )
        )  # fmt: skip

    def _queue(self, rows: list[Queued]) -> None:
        if self._closed:  # a late request during shutdown: write it now rather than lose it
            self._write(rows)
            return
        if len(self._pending) + len(rows) > self._max_pending:
            with self._dropped_lock:
                self._dropped += len(rows)
            return
        self._pending.extend(rows)
        if len(self._pending) >= self._flush_rows:
            self._wake.set()

    def flush(self) -> int:
        """Write everything recorded so far before returning; the number of rows written."""
        return self._drain()

    def close(self) -> None:
        """Stop the writer after writing what is queued. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._writer.join()
        self._drain()

    def __enter__(self) -> ScoreRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # the writer must outlive any one bad batch
                logger.exception("score history writer failed; continuing")

    def _drain(self) -> int:
        written = 0
        with self._write_lock:
            while self._pending:
                batch: list[Queued] = []
                while self._pending and len(batch) < self._flush_rows:
                    batch.append(self._pending.popleft())
                written += self._write(batch)
            self._report_dropped()
        return written

    def _report_dropped(self) -> None:
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            logger.warning(
                "score history: dropped %d rows because %d were already waiting for the store",
                dropped,
                self._max_pending,
            )

    def _write(self, batch: list[Queued]) -> int:
        """Insert one batch, retrying with backoff while the store is locked or unreachable."""
        storable = [row for row in batch if _storable_id(row[0])]
        if len(storable) < len(batch):  # one such row would fail the whole batch on PostgreSQL
            logger.warning(
                "score history: skipped %d rows whose lead id holds a NUL character",
                len(batch) - len(storable),
            )
        batch = storable
        if not batch:
            return 0
        sqlite = self._engine.dialect.name == "sqlite"
        try:
            values: Any = (
                (orjson.dumps(batch, option=orjson.OPT_SERIALIZE_NUMPY).decode(),)
                if sqlite
                else [_as_values(row) for row in batch]
            )
        except orjson.JSONEncodeError as error:  # text no database could store either
            logger.warning("score history: lost %d rows: %s", len(batch), error)
            return 0
        delay = self._backoff_seconds
        for attempt in range(self._retries + 1):
            try:
                with self._engine.begin() as connection:
                    if sqlite:
                        connection.exec_driver_sql(_SQLITE_INSERT, values)
                    else:
                        connection.execute(schema.lead_scores.insert(), values)
                return len(batch)
            except sa.exc.OperationalError as error:
                if attempt == self._retries:
                    logger.warning(
                        "score history: lost %d rows after %d attempts: %s",
                        len(batch),
                        attempt + 1,
                        error.orig,
                    )
                    return 0
                time.sleep(delay)
                delay *= 2
            except sa.exc.StatementError as error:  # bad data: retrying would not help
                logger.warning("score history: lost %d rows: %s", len(batch), error.orig)
                return 0
        return 0


def score_history(engine: sa.Engine, lead_id: str, limit: int = 100) -> list[ScoreRow]:
    """The lead's latest `limit` scores, oldest first; times are UTC."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not _storable_id(lead_id):
        return []
    table = schema.lead_scores
    query = (
        sa.select(
            table.c.lead_id,
            table.c.scored_at,
            table.c.probability,
            table.c.score,
            table.c.grade,
            table.c.model_version,
        )
        .where(table.c.lead_id == lead_id)
        .order_by(table.c.scored_at.desc(), table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        ScoreRow(
            lead_id=r.lead_id,
            scored_at=r.scored_at.replace(tzinfo=dt.UTC),
            probability=r.probability,
            score=r.score,
            grade=r.grade,
            model_version=r.model_version,
        )
        for r in reversed(rows)
    ]


def score_trend(rows: Sequence[ScoreRow]) -> Trend:
    """Whether a lead's chance of converting is rising, falling or holding.

    Compares the latest probability with the mean of the up to 4 before it from the same model
    version (a new model's scale is not a change in the lead): a change of 0.02 or more up is
    "improving", down is "declining", anything smaller "steady". With no earlier score from
    that model, "steady". `rows` are in time order, as `score_history` returns them.
    """
    if not rows:
        return "steady"
    latest = rows[-1]
    earlier = [r.probability for r in rows[:-1] if r.model_version == latest.model_version]
    if not earlier:
        return "steady"
    change = latest.probability - fmean(earlier[-TREND_WINDOW:])
    if change >= TREND_MIN_CHANGE:
        return "improving"
    if change <= -TREND_MIN_CHANGE:
        return "declining"
    return "steady"
