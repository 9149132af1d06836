"""The funnel store: the canonical tables in a SQL database (SQLite by default, PostgreSQL).

Ingest is one transaction: new leads are inserted, leads whose content changed (a new stage, a
close) are updated, identical ones are left alone, so ingesting the same data twice changes
nothing; any failure rolls the store back to exactly what it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from scoring import store_schema as schema
from scoring.errors import FunnelcastInputError
from scoring.funnel import CUSTOMER_COLUMNS, DEFAULT_HORIZON_DAYS, LEAD_COLUMNS, Funnel
from scoring.mapping import RuleReport

MIGRATIONS = Path(__file__).parent / "migrations"
_LEAD_FIELDS = [c for c in LEAD_COLUMNS if c != "lead_id"]
_CUSTOMER_FIELDS = [c for c in CUSTOMER_COLUMNS if c != "account_id"]
_BATCH = 50_000


class StoreConflictError(FunnelcastInputError):
    """The data does not belong in this store (another data set, dated vs undated)."""


@dataclass
class IngestSummary:
    """What an ingest changed, and what the mapping did on the way."""

    dataset: str
    leads_new: int = 0
    leads_updated: int = 0
    leads_unchanged: int = 0
    stage_events_new: int = 0
    customers_new: int = 0
    customers_updated: int = 0
    customers_unchanged: int = 0
    rules: list[RuleReport] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        summary = asdict(self)
        summary["rules"] = [asdict(r) for r in self.rules]
        return summary


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets API workers read while an ingest writes; busy_timeout makes writers wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_store_engine(url: str) -> sa.Engine:
    """An engine for the store URL; SQLite files get WAL mode and their folder is created."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the store's schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class FunnelStore:
    """The funnel store. Use `FunnelStore.open(url)`; it migrates the schema."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> FunnelStore:
        engine = create_store_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as connection:
            yield connection

    # -- metadata ---------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(schema.funnel_meta)).all()
        return {row.key: row.value for row in rows}

    def is_empty(self) -> bool:
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(sa.func.count()).select_from(schema.leads)
                ).scalar_one()
                == 0
            )

    # -- ingest -----------------------------------------------------------------------------

    def ingest(
        self,
        funnel: Funnel,
        source: str,
        rules: Sequence[RuleReport] = (),
        *,
        replace: bool = False,
    ) -> IngestSummary:
        """Load a validated funnel; all or nothing."""
        summary = IngestSummary(dataset=funnel.name, rules=list(rules))
        with self.transaction() as connection:
            if replace:
                for table in (
                    schema.stage_events,
                    schema.leads,
                    schema.customers,
                    schema.funnel_meta,
                ):
                    connection.execute(table.delete())
            meta = {r.key: r.value for r in connection.execute(sa.select(schema.funnel_meta))}
            self._check_fits(meta, funnel)
            self._upsert(connection, schema.leads, "lead_id", _lead_rows(funnel), summary, "leads")
            if funnel.stage_events is not None:
                summary.stage_events_new = _insert_new_events(connection, funnel.stage_events)
            if funnel.customers is not None:
                self._upsert(
                    connection,
                    schema.customers,
                    "account_id",
                    _customer_rows(funnel.customers),
                    summary,
                    "customers",
                )
            _write_meta(connection, meta, funnel)
            connection.execute(
                schema.ingest_runs.insert().values(
                    started_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    dataset=funnel.name,
                    source=source,
                    summary=summary.as_json(),
                )
            )
        return summary

    def _check_fits(self, meta: dict[str, Any], funnel: Funnel) -> None:
        held = meta.get("dataset")
        if held is not None and held != funnel.name:
            raise StoreConflictError(
                f"the store holds data set {held!r}; ingesting {funnel.name!r} would mix two "
                "funnels. Use --replace to start over, or point FUNNELCAST_HOME elsewhere."
            )
        if "dated" in meta and bool(meta["dated"]) != funnel.dated:
            raise StoreConflictError(
                "the store holds dated data and this data set is undated "
                "(or the reverse); use --replace to start over"
            )

    def _upsert(
        self,
        connection: sa.Connection,
        table: sa.Table,
        key: str,
        incoming: pd.DataFrame,
        summary: IngestSummary,
        prefix: str,
    ) -> None:
        existing = dict(connection.execute(sa.select(table.c[key], table.c.row_hash)).all())
        stored_hash = incoming[key].map(existing)
        is_new = stored_hash.isna()
        is_changed = ~is_new & (stored_hash != incoming["row_hash"])
        for rows in _batches(incoming[is_new]):
            connection.execute(table.insert(), rows)
        changed = incoming[is_changed].rename(columns={key: f"b_{key}"})
        update = table.update().where(table.c[key] == sa.bindparam(f"b_{key}"))
        for rows in _batches(changed):
            connection.execute(update, rows)
        setattr(summary, f"{prefix}_new", int(is_new.sum()))
        setattr(summary, f"{prefix}_updated", int(is_changed.sum()))
        setattr(
            summary, f"{prefix}_unchanged", int(len(incoming) - is_new.sum() - is_changed.sum())
        )

    # -- load -------------------------------------------------------------------------------

    def load(self) -> Funnel:
        """The whole funnel as canonical tables."""
        meta = self.meta()
        if not meta:
            raise FunnelcastInputError(
                "the funnel store is empty: load data first with `funnelcast ingest` "
                "(or `funnelcast demo` for a synthetic funnel)"
            )
        with self.engine.connect() as connection:
            leads = _read_with_attributes(
                connection,
                schema.leads,
                LEAD_COLUMNS,
                ("created_at", "closed_at"),
                meta.get("attributes"),
            )
            events = pd.read_sql(sa.select(schema.stage_events), connection)
            customers = _read_with_attributes(
                connection, schema.customers, CUSTOMER_COLUMNS, ("started_at", "churned_at"), None
            )
        events["entered_at"] = pd.to_datetime(events["entered_at"]).astype("datetime64[ns]")
        observed = meta.get("observed_until")
        return Funnel(
            leads=leads,
            stage_events=events if meta.get("has_stage_events") else None,
            customers=customers if meta.get("has_customers") else None,
            dated=bool(meta.get("dated", True)),
            horizon_days=int(meta.get("horizon_days", DEFAULT_HORIZON_DAYS)),
            observed_until=pd.Timestamp(observed) if observed else None,
            stages=tuple(meta.get("stages", ())),
            features=tuple(meta.get("features", ())),
            name=str(meta.get("dataset")),
        )


def _batches(frame: pd.DataFrame) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(frame), _BATCH):
        chunk = frame.iloc[start : start + _BATCH]
        yield _records(chunk)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None for missing values and plain Python datetimes/numbers."""
    columns: dict[str, list[Any]] = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            columns[column] = [None if pd.isna(v) else v.to_pydatetime() for v in values]
        elif pd.api.types.is_float_dtype(values.dtype):
            columns[column] = [None if np.isnan(v) else float(v) for v in values.to_numpy()]
        else:
            columns[column] = [
                None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
                for v in values.tolist()
            ]
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _attributes_json(frame: pd.DataFrame) -> list[str]:
    if frame.shape[1] == 0:
        return ["{}"] * len(frame)
    text = frame.to_json(orient="records", lines=True, double_precision=15, date_format="iso")
    lines = text.splitlines()
    if len(lines) != len(frame):  # a value with a raw newline would break the line format
        lines = [json.dumps(r, default=str) for r in frame.to_dict("records")]
    return lines


def _with_hash(rows: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    def as_text(column: str) -> pd.Series:
        return rows[column].astype("string").fillna("\x00")

    text = as_text(fields[0])
    for column in fields[1:]:
        text = text.str.cat(as_text(column), sep="\x1f")
    rows["row_hash"] = [hashlib.md5(t.encode(), usedforsecurity=False).hexdigest() for t in text]
    rows["updated_at"] = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return rows


def _lead_rows(funnel: Funnel) -> pd.DataFrame:
    leads = funnel.leads
    rows = pd.DataFrame({"lead_id": leads["lead_id"].astype(str)})
    for column in _LEAD_FIELDS:
        rows[column] = leads.get(column)
    rows["attributes"] = _attributes_json(leads[funnel.attribute_columns])
    return _with_hash(rows, ["lead_id", *_LEAD_FIELDS, "attributes"])


def _customer_rows(customers: pd.DataFrame) -> pd.DataFrame:
    rows = pd.DataFrame({"account_id": customers["account_id"].astype(str)})
    for column in _CUSTOMER_FIELDS:
        rows[column] = customers.get(column)
    attributes = [c for c in customers.columns if c not in CUSTOMER_COLUMNS]
    rows["attributes"] = _attributes_json(customers[attributes])
    return _with_hash(rows, ["account_id", *_CUSTOMER_FIELDS, "attributes"])


def _insert_new_events(connection: sa.Connection, events: pd.DataFrame) -> int:
    existing = pd.read_sql(sa.select(schema.stage_events), connection)
    if not existing.empty:
        existing["entered_at"] = pd.to_datetime(existing["entered_at"]).astype("datetime64[ns]")
        merged = events.merge(
            existing, how="left", indicator=True, on=["lead_id", "stage", "entered_at"]
        )
        events = events[(merged["_merge"] == "left_only").to_numpy()]
    for rows in _batches(events[["lead_id", "stage", "entered_at"]]):
        connection.execute(schema.stage_events.insert(), rows)
    return len(events)


def _write_meta(connection: sa.Connection, meta: dict[str, Any], funnel: Funnel) -> None:
    observed = funnel.observed_until
    previous = meta.get("observed_until")
    if previous and observed is not None:
        observed = max(observed, pd.Timestamp(previous))
    attributes = list(dict.fromkeys([*meta.get("attributes", []), *funnel.attribute_columns]))
    values = {
        "dataset": funnel.name,
        "dated": funnel.dated,
        "horizon_days": funnel.horizon_days,
        "observed_until": observed.isoformat() if observed is not None else None,
        "stages": list(funnel.stages),
        "features": list(funnel.features),
        "attributes": attributes,
        "has_stage_events": bool(meta.get("has_stage_events")) or funnel.stage_events is not None,
        "has_customers": bool(meta.get("has_customers")) or funnel.customers is not None,
    }
    connection.execute(schema.funnel_meta.delete())
    connection.execute(
        schema.funnel_meta.insert(), [{"key": k, "value": v} for k, v in values.items()]
    )


def _read_with_attributes(
    connection: sa.Connection,
    table: sa.Table,
    canonical: Sequence[str],
    dates: Sequence[str],
    order: Sequence[str] | None,
) -> pd.DataFrame:
    base = pd.read_sql(sa.select(*[table.c[c] for c in canonical], table.c.attributes), connection)
    for column in dates:
        base[column] = pd.to_datetime(base[column]).astype("datetime64[ns]")
    money = "amount" if "amount" in base else "value"
    base[money] = base[money].astype("float64")
    text = base.pop("attributes")
    if base.empty or (text == "{}").all():
        return base
    attributes = pd.read_json(io.StringIO("\n".join(text)), lines=True, dtype=False)
    if order:
        attributes = attributes[
            [c for c in order if c in attributes.columns]
            + [c for c in attributes.columns if c not in order]
        ]
    return pd.concat([base, attributes.set_index(base.index)], axis=1)
