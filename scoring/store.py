"""The funnel store: the canonical tables in a SQL database (SQLite by default, PostgreSQL).

Ingest is one transaction: new leads are inserted, leads whose content changed (a new stage, a
close) are updated, identical ones are left alone, so ingesting the same data twice changes
nothing; any failure rolls the store back to exactly what it was.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from scoring import store_schema as schema
from scoring.contract import is_member
from scoring.errors import DataContractError, FunnelcastInputError, Problem
from scoring.funnel import CUSTOMER_COLUMNS, DEFAULT_HORIZON_DAYS, LEAD_COLUMNS, Funnel
from scoring.mapping import RuleReport
from scoring.store_rows import insert_rows, read_rows, update_rows

MIGRATIONS = Path(__file__).parent / "migrations"
_LEAD_FIELDS = [c for c in LEAD_COLUMNS if c != "lead_id"]
_CUSTOMER_FIELDS = [c for c in CUSTOMER_COLUMNS if c != "account_id"]
_BATCH = 50_000


_FEW_ROWS = 2_000


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


# Any fixed number: the PostgreSQL advisory lock that one migration at a time holds.
_MIGRATION_LOCK = 0x66756E6E656C  # "funnel"


def migrate(engine: sa.Engine) -> None:
    """Bring the store's schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes opening a new store together (API workers, hosts) would each create the
            # tables, and all but one fail; the others wait here, then find the schema current.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
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
            lead_rows = _lead_rows(funnel)
            _check_text(source, schema.leads, lead_rows)
            if funnel.stage_events is not None:
                _check_text(source, schema.stage_events, funnel.stage_events)
            written = self._upsert(connection, schema.leads, "lead_id", lead_rows, summary, "leads")
            if funnel.stage_events is not None:
                # A lead's row hash covers its events, so only written leads can have new ones.
                touched = lead_rows.loc[written.to_numpy(), "lead_id"]
                summary.stage_events_new = _insert_new_events(
                    connection, funnel.stage_events, touched
                )
            if funnel.customers is not None:
                customer_rows = _customer_rows(funnel.customers)
                _check_text(source, schema.customers, customer_rows)
                self._upsert(
                    connection, schema.customers, "account_id", customer_rows, summary, "customers"
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
    ) -> pd.Series:
        """Insert new rows, update changed ones; return which incoming rows were written."""
        # A few rows (an API push, a small file) need only their own stored hashes.
        few = len(incoming) <= _FEW_ROWS
        where = (key, incoming[key].tolist()) if few else None
        existing = read_rows(connection, table, [key, "row_hash"], where_in=where)
        stored = (
            incoming[[key]]
            .merge(existing.rename(columns={"row_hash": "stored_hash"}), on=key, how="left")[
                "stored_hash"
            ]
            .to_numpy()
        )
        is_new = pd.isna(stored)
        is_changed = ~is_new & (stored != incoming["row_hash"].to_numpy())
        insert_rows(connection, table, incoming[is_new])
        update_rows(connection, table, key, incoming[is_changed])
        setattr(summary, f"{prefix}_new", int(is_new.sum()))
        setattr(summary, f"{prefix}_updated", int(is_changed.sum()))
        setattr(
            summary, f"{prefix}_unchanged", int(len(incoming) - is_new.sum() - is_changed.sum())
        )
        return pd.Series(is_new | is_changed, index=incoming.index)

    # -- load -------------------------------------------------------------------------------

    def load_leads(self, lead_ids: Sequence[str]) -> pd.DataFrame:
        """The canonical rows (with attributes) of these leads; absent ids are simply absent."""
        # No stored id holds a NUL (ingest refuses them), and PostgreSQL refuses to compare one.
        lead_ids = [lead_id for lead_id in lead_ids if "\x00" not in lead_id]
        meta = self.meta()
        with self.engine.connect() as connection:
            return _read_with_attributes(
                connection,
                schema.leads,
                LEAD_COLUMNS,
                ("created_at", "closed_at"),
                meta.get("attributes"),
                where_in=("lead_id", list(lead_ids)),
            )

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
            events = read_rows(
                connection,
                schema.stage_events,
                ["lead_id", "stage", "entered_at"],
                dates=["entered_at"],
            )
            customers = _read_with_attributes(
                connection, schema.customers, CUSTOMER_COLUMNS, ("started_at", "churned_at"), None
            )
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


def _shortened(value: str, width: int = 40) -> str:
    return value if len(value) <= width else value[:width] + "…"


def _check_text(source: str, table: sa.Table, rows: pd.DataFrame) -> None:
    """Refuse text a column cannot hold on every database, whatever the store runs on.

    PostgreSQL enforces VARCHAR lengths (SQLite does not) and its text cannot hold a NUL
    character; without this a CRM's over-long owner would be a database error on one and
    stored on the other.
    """
    problems = []
    for column in table.columns:
        limit = getattr(column.type, "length", None)
        if limit is None or column.name not in rows:
            continue
        values = rows[column.name]
        text = values[values.notna().to_numpy()].astype(str)
        if text.empty:
            continue
        for bad, message in (
            (text.str.len() > limit, f"longer than {limit} characters, the most the store holds"),
            (text.str.contains("\x00", regex=False), "contains a NUL character"),
        ):
            if bad.any():
                shown = [_shortened(v) for v in text[bad].head(3)]
                problems.append(Problem(message, column=column.name, examples=shown))
    if problems:
        raise DataContractError(source, problems)


def _attributes_json(frame: pd.DataFrame) -> list[str]:
    if frame.shape[1] == 0:
        return ["{}"] * len(frame)
    text = frame.to_json(orient="records", lines=True, double_precision=15, date_format="iso")
    lines = text.splitlines()
    if len(lines) != len(frame):  # a value with a raw newline would break the line format
        lines = [json.dumps(r, default=str) for r in frame.to_dict("records")]
    return lines


def _with_hash(rows: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    """Add a content hash (64 bits, vectorised) so a re-ingest can skip unchanged rows."""
    hashes = pd.util.hash_pandas_object(rows[list(fields)], index=False).to_numpy()
    rows["row_hash"] = [f"{h:016x}" for h in hashes.tolist()]
    rows["updated_at"] = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return rows


def _event_digest(events: pd.DataFrame | None, lead_ids: pd.Series) -> pd.Series:
    """Per lead, an order-free digest of its stage events ("" when it has none)."""
    if events is None or events.empty:
        return pd.Series("", index=lead_ids.index)
    hashes = pd.util.hash_pandas_object(events[["lead_id", "stage", "entered_at"]], index=False)
    per_lead = hashes.groupby(events["lead_id"].to_numpy()).sum()  # wraps around: fine for a digest
    digest = lead_ids.to_frame("lead_id").merge(
        per_lead.rename("digest").astype(str), left_on="lead_id", right_index=True, how="left"
    )["digest"]
    return pd.Series(digest.fillna("").to_numpy(), index=lead_ids.index)


def _lead_rows(funnel: Funnel) -> pd.DataFrame:
    leads = funnel.leads
    rows = pd.DataFrame({"lead_id": leads["lead_id"].astype(str)})
    for column in _LEAD_FIELDS:
        rows[column] = leads.get(column)
    rows["attributes"] = _attributes_json(leads[funnel.attribute_columns])
    rows["events"] = _event_digest(funnel.stage_events, rows["lead_id"])
    rows = _with_hash(rows, ["lead_id", *_LEAD_FIELDS, "attributes", "events"])
    return rows.drop(columns="events")


def _customer_rows(customers: pd.DataFrame) -> pd.DataFrame:
    rows = pd.DataFrame({"account_id": customers["account_id"].astype(str)})
    for column in _CUSTOMER_FIELDS:
        rows[column] = customers.get(column)
    attributes = [c for c in customers.columns if c not in CUSTOMER_COLUMNS]
    rows["attributes"] = _attributes_json(customers[attributes])
    return _with_hash(rows, ["account_id", *_CUSTOMER_FIELDS, "attributes"])


def _insert_new_events(connection: sa.Connection, events: pd.DataFrame, lead_ids: pd.Series) -> int:
    """Insert the events of these leads that the store does not have yet."""
    events = events[is_member(events["lead_id"], lead_ids)][["lead_id", "stage", "entered_at"]]
    if events.empty:
        return 0
    existing = read_rows(
        connection,
        schema.stage_events,
        ["lead_id", "stage", "entered_at"],
        dates=["entered_at"],
        where_in=("lead_id", list(events["lead_id"].unique())),
    )
    if not existing.empty:
        merged = events.merge(
            existing, how="left", indicator=True, on=["lead_id", "stage", "entered_at"]
        )
        events = events[(merged["_merge"] == "left_only").to_numpy()]
    insert_rows(connection, schema.stage_events, events)
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
    where_in: tuple[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    base = read_rows(connection, table, [*canonical, "attributes"], dates=dates, where_in=where_in)
    money = "amount" if "amount" in base else "value"
    base[money] = pd.to_numeric(base[money]).astype("float64")
    for column in canonical:
        if column not in dates and column != money:
            base[column] = base[column].astype(object).where(base[column].notna(), None)
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
