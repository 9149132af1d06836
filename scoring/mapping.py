"""Applying a dataset mapping: CRM export files in, a validated canonical `Funnel` out.

Order: read sources → mark missing values → fix values → joins → canonical columns (outcome,
stage, amount, dates) → declared rules → contract validation. Every step that changes or drops
data reports how many rows or cells it touched; nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scoring.contract import (
    latest_date,
    parse_datetimes,
    validate_customers,
    validate_leads,
    validate_stage_events,
)
from scoring.errors import DataContractError, MappingError, Problem
from scoring.funnel import Funnel
from scoring.mapping_spec import DatasetMapping, LatestOf, Rule, Source
from scoring.tables import SOURCE_LINE, read_sql, read_table


@dataclass(frozen=True)
class RuleReport:
    """What one declared rule (or implicit mapping step) did."""

    rule: str
    why: str
    rows: int
    action: str  # "dropped", "repaired", "replaced", "unmatched"
    examples: tuple[str, ...] = ()

    def line(self) -> str:
        shown = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{self.rule}: {self.action} {self.rows:,}{shown} — {self.why}"


@dataclass
class MappedData:
    """A mapped data set: the canonical funnel and what the mapping did to get it."""

    funnel: Funnel
    source_rows: int
    reports: list[RuleReport] = field(default_factory=list)

    @property
    def dropped_rows(self) -> int:
        return sum(r.rows for r in self.reports if r.action == "dropped")


def apply_mapping(
    mapping: DatasetMapping, data_dir: Path, reader: Callable[[Path], pd.DataFrame] | None = None
) -> MappedData:
    """Read and map a data set; raise `DataContractError`/`MappingError` on bad data or mapping."""
    if not data_dir.is_dir():
        raise MappingError(f"--data-dir {data_dir} is not a folder")
    spec = mapping.leads
    reports: list[RuleReport] = []
    primary = _read_source(mapping, spec.from_, data_dir, reader)
    where = _describe(mapping.sources[spec.from_], spec.from_)
    source_rows = len(primary)
    frame = _mark_missing(primary, spec.missing_values, reports)
    frame = _fix_values(frame, spec.fix_values, where, reports)
    for join in spec.join:
        other = _read_source(mapping, join.source, data_dir, reader).rename(columns=join.rename)
        other = _mark_missing(other, spec.missing_values, [])
        other = _fix_values(other, spec.fix_values, join.source, [])
        frame = _join(frame, other, join.key, join.source, reports)
    frame = frame.rename(columns=spec.rename)
    _check_declared(mapping, frame, where)

    leads = pd.DataFrame(index=frame.index)
    leads[SOURCE_LINE] = frame[SOURCE_LINE]
    for canonical, column in mapping.leads.columns.items():
        leads[canonical] = frame[column]
    unit = "line" if _is_csv(mapping.sources[spec.from_]) else "row"
    leads["outcome"] = _outcomes(mapping, frame, where, unit)
    if spec.stage is not None:
        leads["stage"] = _stages(spec.stage.column, spec.stage.values, frame, where, unit)
    if spec.amount is not None:
        leads["amount"] = _amounts(
            spec.amount.column, {str(k): v for k, v in spec.amount.by_outcome.items()}, frame, leads
        )
    for column in [*spec.features, *spec.attributes]:
        if column not in leads.columns:
            leads[column] = frame[column]
    leads = _parse_lead_dates(leads, mapping, where)
    for rule in mapping.rules:
        leads, report = _apply_rule(rule, leads)
        reports.append(report)

    canonical_leads = validate_leads(leads, where, dated=mapping.dated, unit=unit)
    events = _mapped_table(mapping, "stage_events", data_dir, reader)
    customers = _mapped_table(mapping, "customers", data_dir, reader)
    stage_events = (
        None
        if events is None
        else validate_stage_events(
            events,
            _describe(mapping.sources[mapping.stage_events.from_], "stage_events"),  # type: ignore[union-attr]
            canonical_leads["lead_id"],
            mapping.stages,
            date_format=mapping.date_format,
        )
    )
    customer_table = (
        None
        if customers is None
        else validate_customers(
            customers, "customers", dated=mapping.dated, date_format=mapping.date_format
        )
    )
    funnel = Funnel(
        leads=canonical_leads,
        stage_events=stage_events,
        customers=customer_table,
        dated=mapping.dated,
        horizon_days=mapping.horizon_days,
        observed_until=_observed_until(mapping, canonical_leads, stage_events, customer_table),
        stages=tuple(mapping.stages),
        features=tuple(spec.features),
        name=mapping.name,
    )
    return MappedData(funnel=funnel, source_rows=source_rows, reports=reports)


def _is_csv(source: Source) -> bool:
    return source.file is not None and Path(source.file).suffix.lower() == ".csv"


def _describe(source: Source, name: str) -> str:
    return source.file if source.file else f"sql source {name!r}"


def _read_source(
    mapping: DatasetMapping,
    name: str,
    data_dir: Path,
    reader: Callable[[Path], pd.DataFrame] | None,
) -> pd.DataFrame:
    source = mapping.sources[name]
    if source.sql is not None:
        url = os.environ.get(source.sql.url_env)
        if not url:
            raise MappingError(
                f"source {name!r} reads from SQL: set the environment variable "
                f"{source.sql.url_env} to the database URL"
            )
        return read_sql(url, table=source.sql.table, query=source.sql.query)
    path = data_dir / (source.file or "")
    if reader is not None:
        return reader(path)
    return read_table(path, delimiter=source.delimiter, encoding=source.encoding)


def _mark_missing(
    frame: pd.DataFrame, missing_values: list[str], reports: list[RuleReport]
) -> pd.DataFrame:
    if not missing_values:
        return frame
    data = frame.drop(columns=SOURCE_LINE)
    hits = data.isin(missing_values)
    count = int(hits.to_numpy().sum())
    reports.append(
        RuleReport(
            "missing_values",
            f"{', '.join(map(repr, missing_values))} mean 'not given'",
            count,
            "replaced (cells)",
        )
    )
    frame = frame.copy()
    frame[data.columns] = data.mask(hits)
    return frame


def _fix_values(
    frame: pd.DataFrame, fixes: dict[str, dict[str, str]], where: str, reports: list[RuleReport]
) -> pd.DataFrame:
    frame = frame.copy()
    for column, replacements in fixes.items():
        if column not in frame.columns:
            continue  # the column may live in a joined table; fixed when that table is read
        hits = frame[column].isin(list(replacements))
        frame[column] = frame[column].replace(replacements)
        pairs = ", ".join(f"{k!r}→{v!r}" for k, v in replacements.items())
        reports.append(
            RuleReport(f"fix_values {column}", pairs, int(hits.sum()), f"replaced in {where}")
        )
    return frame


def _join(
    frame: pd.DataFrame,
    other: pd.DataFrame,
    on: str | list[str],
    name: str,
    reports: list[RuleReport],
) -> pd.DataFrame:
    keys = [on] if isinstance(on, str) else on
    for key in keys:
        for side, table in (("the leads source", frame), (name, other)):
            if key not in table.columns:
                raise MappingError(f"join with {name!r}: column {key!r} not in {side}")
    other = other.drop(columns=SOURCE_LINE)
    if other.duplicated(subset=keys).any():
        raise MappingError(
            f"join with {name!r}: key {keys} is not unique in {name!r}; "
            "a join must not multiply leads"
        )
    clash = (set(other.columns) & set(frame.columns)) - set(keys)
    if clash:
        raise MappingError(
            f"join with {name!r}: columns {sorted(clash)} exist on both sides; "
            "rename them in the join"
        )
    merged = frame.merge(other, on=keys, how="left", indicator=True, validate="many_to_one")
    unmatched = merged["_merge"] == "left_only"
    has_key = merged[keys].notna().all(axis=1)
    examples = tuple(merged.loc[unmatched & has_key, keys[0]].astype(str).unique()[:3])
    reports.append(
        RuleReport(
            f"join {name}",
            f"on {', '.join(keys)}",
            int((unmatched & has_key).sum()),
            "unmatched",
            examples,
        )
    )
    return merged.drop(columns="_merge")


def _check_declared(mapping: DatasetMapping, frame: pd.DataFrame, where: str) -> None:
    spec = mapping.leads
    # Features may name canonical columns (owner, stage, ...) the mapping fills from the source.
    own = [c for c in [*spec.features, *spec.attributes] if c not in spec.columns]
    used = set(spec.columns.values()) | set(own)
    used |= set(spec.exclude) | {spec.outcome.column, SOURCE_LINE}
    if spec.stage:
        used.add(spec.stage.column)
    if spec.amount:
        used |= {c for c in [spec.amount.column, *spec.amount.by_outcome.values()] if c}
    missing = sorted((used - set(spec.exclude)) - set(frame.columns))
    if missing:
        raise MappingError(
            f"{where}: the mapping names columns that are not in the data: "
            f"{missing}; columns there: {sorted(map(str, frame.columns))}"
        )
    undeclared = sorted(set(map(str, frame.columns)) - used)
    if undeclared:
        raise MappingError(
            f"{where}: columns {undeclared} are not declared; list each under features, "
            "attributes or exclude (with the reason) so nothing is used or dropped by accident"
        )


def _outcomes(mapping: DatasetMapping, frame: pd.DataFrame, where: str, unit: str) -> pd.Series:
    spec = mapping.leads.outcome
    raw = frame[spec.column]
    if spec.values is None:
        present, missing = str(spec.present), str(spec.missing)
        return raw.notna().map({True: present, False: missing}).astype(object)
    text = raw.astype("string").str.strip()
    mapped = text.map(spec.values)
    unknown = raw.notna() & mapped.isna()
    if unknown.any():
        values = sorted(text[unknown].unique().tolist())
        lines = frame.loc[unknown, SOURCE_LINE].tolist()
        raise DataContractError(
            where,
            [
                Problem(
                    f"outcome values {values} are not in the mapping's outcome.values "
                    f"({', '.join(spec.values)})",
                    spec.column,
                    lines,
                )
            ],
            unit,
        )
    return mapped.astype(object)


def _stages(
    column: str, values: dict[str, str], frame: pd.DataFrame, where: str, unit: str
) -> pd.Series:
    text = frame[column].astype("string").str.strip()
    mapped = text.map(values)
    unknown = text.notna() & mapped.isna()
    if unknown.any():
        raise DataContractError(
            where,
            [
                Problem(
                    f"stage values {sorted(text[unknown].unique().tolist())} not in the mapping",
                    column,
                    frame.loc[unknown, SOURCE_LINE].tolist(),
                )
            ],
            unit,
        )
    return mapped.astype(object)


def _amounts(
    column: str | None, by_outcome: Mapping[str, str], frame: pd.DataFrame, leads: pd.DataFrame
) -> pd.Series:
    amount = frame[column] if column else pd.Series(pd.NA, index=frame.index, dtype=object)
    amount = amount.astype(object)
    for outcome, source_column in by_outcome.items():
        chosen = leads["outcome"] == outcome
        amount = amount.where(~chosen, frame[source_column])
    return amount


def _parse_lead_dates(leads: pd.DataFrame, mapping: DatasetMapping, where: str) -> pd.DataFrame:
    """Parse dates before the rules run, so rules can compare them; bad dates are errors."""
    problems: list[Problem] = []
    for column in ("created_at", "closed_at"):
        if column not in leads:
            continue
        parsed = parse_datetimes(leads[column], mapping.date_format)
        bad = leads[column].notna() & parsed.isna()
        if bad.any():
            examples = leads.loc[bad, column].astype(str).unique()[:3].tolist()
            problems.append(
                Problem(
                    f"{int(bad.sum())} rows: not a date",
                    column,
                    leads.loc[bad, SOURCE_LINE].tolist(),
                    examples,
                )
            )
        leads[column] = parsed
    if problems:
        unit = "line" if _is_csv(mapping.sources[mapping.leads.from_]) else "row"
        raise DataContractError(where, problems, unit)
    return leads


def _apply_rule(rule: Rule, leads: pd.DataFrame) -> tuple[pd.DataFrame, RuleReport]:
    ids = leads["lead_id"].astype(str)
    if rule.drop_missing is not None:
        absent = [c for c in rule.drop_missing if c not in leads.columns]
        if absent:
            raise MappingError(f"rule drop_missing: unknown column(s) {absent}")
        touched = leads[rule.drop_missing].isna().any(axis=1)
        name, action = f"drop_missing {', '.join(rule.drop_missing)}", "dropped"
        result = leads[~touched]
    elif rule.clamp_closed_before_created:
        touched = leads["closed_at"] < leads["created_at"]
        result = leads.copy()
        result.loc[touched, "closed_at"] = result.loc[touched, "created_at"]
        name, action = "clamp_closed_before_created", "repaired"
    elif rule.drop_duplicate_ids is not None:
        keep = rule.drop_duplicate_ids
        touched = pd.Series(ids.duplicated(keep=keep), index=leads.index)
        result = leads[~touched]
        name, action = f"drop_duplicate_ids (keep {keep})", "dropped"
    else:
        touched = leads["outcome"].isin(["won", "lost"]) & leads["closed_at"].isna()
        result = leads[~touched]
        name, action = "drop_closed_without_date", "dropped"
    examples = tuple(ids[touched].head(3).tolist())
    return result, RuleReport(name, rule.why, int(touched.sum()), action, examples)


def _mapped_table(
    mapping: DatasetMapping,
    which: str,
    data_dir: Path,
    reader: Callable[[Path], pd.DataFrame] | None,
) -> pd.DataFrame | None:
    spec = mapping.stage_events if which == "stage_events" else mapping.customers
    if spec is None:
        return None
    frame = _read_source(mapping, spec.from_, data_dir, reader)
    renames = {source: canonical for canonical, source in spec.columns.items()}
    keep = [*renames, *spec.attributes, SOURCE_LINE]
    missing = [c for c in keep if c not in frame.columns]
    if missing:
        raise MappingError(f"{which}: columns {missing} are not in source {spec.from_!r}")
    return frame[keep].rename(columns=renames)


def _observed_until(
    mapping: DatasetMapping,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    customers: pd.DataFrame | None,
) -> pd.Timestamp | None:
    if not mapping.dated:
        return None
    rule = mapping.observed_until
    if isinstance(rule, LatestOf):
        values = [leads[c].max() for c in rule.latest_of if c in leads]
        present = [pd.Timestamp(v) for v in values if pd.notna(v)]
        return max(present) if present else None
    if rule == "latest":
        return latest_date(leads, events, customers)
    return pd.Timestamp(rule)
