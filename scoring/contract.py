"""The data contract (DESIGN §3): typing and validating the canonical leads, stage_events and
customers tables.

Validation collects every problem in a table and raises one `DataContractError` naming the
source, the column, the first few lines and the problem; a table with any problem is not loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import DataContractError, Problem
from scoring.funnel import (
    CLOSING_STAGES,
    DEFAULT_HORIZON_DAYS,
    DEFAULT_STAGES,
    LEAD_COLUMNS,
    OUTCOMES,
    Funnel,
)
from scoring.tables import SOURCE_LINE, read_table

_TRUE = frozenset({"true", "yes", "1"})
_BOOLEAN_TEXT = frozenset({"true", "false"})
_TABLE_FILES = ("leads", "stage_events", "customers")
_AFTER_WON_STAGES = ("customer", "churned")


class _Checker:
    """Collects problems for one table, pointing at source lines."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.lines = (
            frame[SOURCE_LINE].to_numpy() if SOURCE_LINE in frame else np.arange(1, len(frame) + 1)
        )
        self.problems: list[Problem] = []

    def flag(
        self,
        mask: pd.Series | np.ndarray,
        column: str | None,
        message: str,
        values: pd.Series | None = None,
    ) -> None:
        bad = np.asarray(mask, dtype=bool)
        if not bad.any():
            return
        examples: list[object] = []
        if values is not None:
            examples = list(dict.fromkeys(values[bad]))[:3]
        count = int(bad.sum())
        noun = "row" if count == 1 else "rows"
        self.problems.append(
            Problem(f"{count} {noun}: {message}", column, self.lines[bad].tolist(), examples)
        )

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)


def is_member(values: pd.Series, universe: pd.Series) -> np.ndarray:
    """`values.isin(universe)` for large text columns: pandas' isin on Arrow strings is slow."""
    found = pc.is_in(
        pa.array(values.astype(object).to_numpy(), type=pa.string(), from_pandas=True),
        value_set=pa.array(universe.astype(object).to_numpy(), type=pa.string(), from_pandas=True),
    )
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def parse_datetimes(values: pd.Series, date_format: str | None = None) -> pd.Series:
    """Parse to naive datetimes; time-zone-aware values are converted to UTC first."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return pd.Series(values.dt.tz_convert("UTC").dt.tz_localize(None), dtype="datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return pd.Series(values.astype("datetime64[ns]"))
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, format=date_format or "ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _parse_dates(
    check: _Checker, frame: pd.DataFrame, column: str, date_format: str | None
) -> pd.Series:
    original = frame[column]
    parsed = parse_datetimes(original, date_format)
    fmt = date_format or "ISO 8601 (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"
    check.flag(original.notna() & parsed.isna(), column, f"not a date in {fmt}", original)
    return parsed


def _optional_dates(
    check: _Checker, raw: pd.DataFrame, column: str, date_format: str | None
) -> pd.Series:
    if column in raw:
        return _parse_dates(check, raw, column, date_format)
    return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")


def _unique_key(check: _Checker, raw: pd.DataFrame, column: str) -> pd.Series:
    """An identifier column that must be present and unique."""
    key = _identifier(raw[column])
    check.flag(key.isna(), column, f"{column} is missing")
    check.flag(key.notna() & key.duplicated(keep=False), column, f"duplicate {column}", key)
    return key


def _parse_numbers(check: _Checker, frame: pd.DataFrame, column: str) -> pd.Series:
    original = frame[column]
    parsed = pd.to_numeric(original, errors="coerce").astype("float64")
    check.flag(original.notna() & parsed.isna(), column, "not a number", original)
    check.flag(np.isinf(parsed), column, "not a finite number", original)
    check.flag(parsed < 0, column, "negative amount", original)
    return parsed


def _identifier(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def _infer_attribute(values: pd.Series) -> pd.Series:
    """Numbers stay numbers and true/false text becomes booleans; everything else is text."""
    if not (pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values)):
        return values
    present = values.dropna()
    if present.empty:
        return values.astype("float64")
    lowered = present.head(1000).astype(str).str.strip().str.lower()
    if lowered.isin(_BOOLEAN_TEXT).all() and (
        present.astype(str).str.strip().str.lower().isin(_BOOLEAN_TEXT).all()
    ):
        return values.map(lambda v: pd.NA if pd.isna(v) else str(v).strip().lower() in _TRUE)
    # A sample rules out text columns cheaply before converting a million values.
    if pd.to_numeric(present.head(1000), errors="coerce").isna().any():
        return values.astype("string").astype(object).where(values.notna(), None)
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values.astype("string").astype(object).where(values.notna(), None)


def _missing_columns(frame: pd.DataFrame, required: Sequence[str]) -> Problem | None:
    missing = [c for c in required if c not in frame.columns]
    if not missing:
        return None
    found = ", ".join(str(c) for c in frame.columns if c != SOURCE_LINE)
    return Problem(f"missing required column(s) {', '.join(missing)}; the file has: {found}")


def validate_leads(
    raw: pd.DataFrame,
    source: str,
    *,
    dated: bool = True,
    date_format: str | None = None,
    unit: str = "row",
) -> pd.DataFrame:
    """Type and check a leads table; return it canonical (without the source-line column).

    Raises:
        DataContractError: listing every problem found.
    """
    required = ("lead_id", "created_at", "outcome") if dated else ("lead_id", "outcome")
    missing = _missing_columns(raw, required)
    if missing:
        raise DataContractError(source, [missing], unit)
    if raw.empty:
        raise DataContractError(source, [Problem("the table has a header but no leads")], unit)
    check = _Checker(raw)
    leads = pd.DataFrame(index=raw.index)
    leads["lead_id"] = _unique_key(check, raw, "lead_id")

    outcome = raw["outcome"].astype("string").str.strip().str.lower()
    check.flag(
        ~outcome.isin(OUTCOMES) | outcome.isna(),
        "outcome",
        f"outcome must be one of {', '.join(OUTCOMES)}",
        raw["outcome"].fillna("<missing>"),
    )
    leads["outcome"] = outcome.astype(object)

    for column in ("created_at", "closed_at"):
        leads[column] = _optional_dates(check, raw, column, date_format)
    leads["amount"] = (
        _parse_numbers(check, raw, "amount")
        if "amount" in raw
        else pd.Series(np.nan, index=raw.index)
    )
    # Optional canonical columns are always present (None when a data set lacks them), so every
    # funnel has the same shape whether it came from a file, a mapping or the store.
    for column in ("stage", "owner", "account_id"):
        values = _identifier(raw[column]) if column in raw else pd.Series(pd.NA, index=raw.index)
        leads[column] = values.astype(object).where(values.notna(), None)
    stage = leads["stage"].astype("string").str.lower()
    leads["stage"] = stage.astype(object).where(stage.notna(), None)
    leads = leads[list(LEAD_COLUMNS)]

    if dated:
        _check_lead_dates(check, raw, leads)
    for column in raw.columns:
        if column not in LEAD_COLUMNS and column != SOURCE_LINE:
            leads[column] = _infer_attribute(raw[column])
    if check.problems:
        raise DataContractError(source, check.problems, unit)
    leads = leads.reset_index(drop=True)
    leads["lead_id"] = leads["lead_id"].astype(str)
    return leads


def _check_lead_dates(check: _Checker, raw: pd.DataFrame, leads: pd.DataFrame) -> None:
    created, closed, outcome = leads["created_at"], leads["closed_at"], leads["outcome"]
    check.flag(raw["created_at"].isna(), "created_at", "created_at is missing in dated data")
    check.flag(
        outcome.isin(CLOSING_STAGES) & closed.isna(),
        "closed_at",
        "a won or lost lead needs closed_at in dated data",
    )
    check.flag(
        (outcome == "open") & closed.notna(),
        "closed_at",
        "an open lead has a closed_at; mark it won or lost, or clear the date",
    )
    check.flag(closed < created, "closed_at", "closed_at is before created_at")


def validate_stage_events(
    raw: pd.DataFrame,
    source: str,
    lead_ids: pd.Series,
    stages: Sequence[str],
    *,
    date_format: str | None = None,
    unit: str = "row",
) -> pd.DataFrame:
    """Type and check stage events against the known leads and stage names."""
    missing = _missing_columns(raw, ("lead_id", "stage", "entered_at"))
    if missing:
        raise DataContractError(source, [missing], unit)
    check = _Checker(raw)
    events = pd.DataFrame(index=raw.index)
    events["lead_id"] = _identifier(raw["lead_id"])
    events["stage"] = _identifier(raw["stage"]).str.lower()
    events["entered_at"] = _parse_dates(check, raw, "entered_at", date_format)
    check.flag(raw["entered_at"].isna(), "entered_at", "entered_at is missing")
    check.flag(events["lead_id"].isna(), "lead_id", "lead_id is missing")
    check.flag(
        events["lead_id"].notna() & ~is_member(events["lead_id"], lead_ids),
        "lead_id",
        "stage event for a lead that is not in the leads table",
        events["lead_id"],
    )
    allowed = {*stages, *CLOSING_STAGES, *_AFTER_WON_STAGES}
    check.flag(
        ~events["stage"].isin(allowed),
        "stage",
        f"unknown stage (known: {', '.join(stages)}, lost)",
        raw["stage"].fillna("<missing>"),
    )
    if check.problems:
        raise DataContractError(source, check.problems, unit)
    events = events.drop_duplicates().sort_values(["lead_id", "entered_at"], kind="stable")
    events = events.reset_index(drop=True)
    return events.astype({"lead_id": str, "stage": str})


def validate_customers(
    raw: pd.DataFrame,
    source: str,
    *,
    dated: bool = True,
    date_format: str | None = None,
    unit: str = "row",
) -> pd.DataFrame:
    """Type and check a customers table."""
    required = ("account_id", "started_at") if dated else ("account_id",)
    missing = _missing_columns(raw, required)
    if missing:
        raise DataContractError(source, [missing], unit)
    check = _Checker(raw)
    customers = pd.DataFrame(index=raw.index)
    customers["account_id"] = _unique_key(check, raw, "account_id")
    for column in ("started_at", "churned_at"):
        customers[column] = _optional_dates(check, raw, column, date_format)
    if dated:
        check.flag(raw["started_at"].isna(), "started_at", "started_at is missing")
    check.flag(
        customers["churned_at"] < customers["started_at"],
        "churned_at",
        "churned_at is before started_at",
    )
    customers["value"] = (
        _parse_numbers(check, raw, "value")
        if "value" in raw
        else pd.Series(np.nan, index=raw.index)
    )
    for column in raw.columns:
        if column not in customers.columns and column != SOURCE_LINE:
            customers[column] = _infer_attribute(raw[column])
    if check.problems:
        raise DataContractError(source, check.problems, unit)
    customers = customers.reset_index(drop=True)
    customers["account_id"] = customers["account_id"].astype(str)
    return customers


def _find_table(directory: Path, name: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        candidate = directory / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _unit(path: Path) -> str:
    return "line" if path.suffix.lower() == ".csv" else "row"


def read_canonical(
    directory: Path,
    *,
    dated: bool = True,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    stages: Sequence[str] = DEFAULT_STAGES,
    reader: Callable[[Path], pd.DataFrame] = read_table,
) -> Funnel:
    """Read `leads`, optional `stage_events` and `customers` (.parquet or .csv) from a folder.

    Other files there (such as the generator's `truth.parquet`) are ignored.
    """
    if not directory.is_dir():
        raise DataContractError(str(directory), [Problem("not a folder")])
    leads_path = _find_table(directory, "leads")
    if leads_path is None:
        raise DataContractError(
            str(directory), [Problem("no leads.parquet or leads.csv in this folder")]
        )
    leads = validate_leads(reader(leads_path), str(leads_path), dated=dated, unit=_unit(leads_path))
    events_path = _find_table(directory, "stage_events")
    events = None
    if events_path is not None:
        events = validate_stage_events(
            reader(events_path), str(events_path), leads["lead_id"], stages, unit=_unit(events_path)
        )
    customers_path = _find_table(directory, "customers")
    customers = None
    if customers_path is not None:
        customers = validate_customers(
            reader(customers_path), str(customers_path), dated=dated, unit=_unit(customers_path)
        )
    features = tuple(c for c in leads.columns if c not in LEAD_COLUMNS)
    return Funnel(
        leads=leads,
        stage_events=events,
        customers=customers,
        dated=dated,
        horizon_days=horizon_days,
        observed_until=latest_date(leads, events, customers) if dated else None,
        stages=tuple(stages),
        features=features,
        name="canonical",
    )


def latest_date(
    leads: pd.DataFrame, events: pd.DataFrame | None, customers: pd.DataFrame | None
) -> pd.Timestamp | None:
    """The last moment any table records: the default extraction date of a data set."""
    candidates = [leads["created_at"].max(), leads["closed_at"].max()]
    if events is not None and not events.empty:
        candidates.append(events["entered_at"].max())
    if customers is not None and not customers.empty:
        candidates += [customers["started_at"].max(), customers["churned_at"].max()]
    present = [pd.Timestamp(c) for c in candidates if pd.notna(c)]
    return max(present) if present else None
