"""The dataset mapping file format (YAML), as pydantic models that reject unknown keys.

See docs/mappings.md for the format with examples.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scoring.errors import MappingError
from scoring.funnel import DEFAULT_HORIZON_DAYS, DEFAULT_STAGES, OUTCOMES

BUILTIN_MAPPINGS = Path(__file__).parent / "mappings"
Outcome = Literal["won", "lost", "open"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlSource(_Strict):
    url_env: str = Field(description="Environment variable holding the SQLAlchemy URL.")
    table: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self


class Source(_Strict):
    file: str | None = Field(default=None, description="Path relative to --data-dir.")
    sql: SqlSource | None = None
    delimiter: str = ","
    encoding: str = "utf-8"

    @model_validator(mode="after")
    def _one_of_file_or_sql(self) -> Source:
        if (self.file is None) == (self.sql is None):
            raise ValueError("give exactly one of `file` or `sql`")
        return self


class Join(_Strict):
    source: str
    key: str | list[str] = Field(
        description="Join column(s); `on` is avoided because YAML reads it as true."
    )
    rename: dict[str, str] = Field(default_factory=dict, description="Renames in the joined table.")


class OutcomeSpec(_Strict):
    column: str
    values: dict[str, Outcome] | None = None
    present: Outcome | None = None
    missing: Outcome | None = None

    @model_validator(mode="after")
    def _values_or_presence(self) -> OutcomeSpec:
        if self.values is None and (self.present is None or self.missing is None):
            raise ValueError("give `values`, or both `present` and `missing`")
        return self


class StageSpec(_Strict):
    column: str
    values: dict[str, str]


class AmountSpec(_Strict):
    column: str | None = None
    by_outcome: dict[Outcome, str] = Field(default_factory=dict)


class LatestOf(_Strict):
    latest_of: list[str]


class Rule(_Strict):
    """One declared repair or drop rule; exactly one action key is set."""

    drop_missing: list[str] | None = None
    clamp_closed_before_created: bool | None = None
    drop_duplicate_ids: Literal["first", "last"] | None = None
    drop_closed_without_date: bool | None = None
    why: str = Field(min_length=3, description="Why the rule exists; shown in the ingest report.")

    @model_validator(mode="after")
    def _exactly_one_action(self) -> Rule:
        actions = [k for k in self.action_names() if getattr(self, k) not in (None, False)]
        if len(actions) != 1:
            raise ValueError(
                f"a rule needs exactly one of {', '.join(self.action_names())}; got {actions}"
            )
        return self

    @staticmethod
    def action_names() -> tuple[str, ...]:
        return (
            "drop_missing",
            "clamp_closed_before_created",
            "drop_duplicate_ids",
            "drop_closed_without_date",
        )

    @property
    def action(self) -> str:
        return next(k for k in self.action_names() if getattr(self, k) not in (None, False))


class LeadsSpec(_Strict):
    from_: str = Field(alias="from")
    fix_values: dict[str, dict[str, str]] = Field(default_factory=dict)
    missing_values: list[str] = Field(default_factory=list)
    join: list[Join] = Field(default_factory=list)
    columns: dict[str, str]
    outcome: OutcomeSpec
    stage: StageSpec | None = None
    amount: AmountSpec | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    features: list[str] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)
    exclude: dict[str, str] = Field(
        default_factory=dict, description="Columns never loaded, each with the reason."
    )

    @model_validator(mode="after")
    def _feature_lists_disjoint(self) -> LeadsSpec:
        clash = set(self.features) & set(self.exclude)
        if clash:
            raise ValueError(f"columns both in features and exclude: {sorted(clash)}")
        unknown = set(self.columns) - {
            "lead_id",
            "created_at",
            "closed_at",
            "owner",
            "account_id",
            "stage",
        }
        if unknown:
            raise ValueError(f"`columns` maps canonical columns only; unknown: {sorted(unknown)}")
        if "lead_id" not in self.columns:
            raise ValueError("`columns` must map lead_id")
        return self


class TableSpec(_Strict):
    from_: str = Field(alias="from")
    columns: dict[str, str] = Field(default_factory=dict)
    attributes: list[str] = Field(default_factory=list)


class DatasetMapping(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dated: bool = True
    horizon_days: Annotated[int, Field(gt=0, le=3650)] = DEFAULT_HORIZON_DAYS
    date_format: str | None = None
    observed_until: Literal["latest"] | dt.date | LatestOf = "latest"
    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES))
    sources: dict[str, Source]
    leads: LeadsSpec
    stage_events: TableSpec | None = None
    customers: TableSpec | None = None
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sources_exist(self) -> DatasetMapping:
        named = [self.leads.from_, *(j.source for j in self.leads.join)]
        named += [t.from_ for t in (self.stage_events, self.customers) if t is not None]
        unknown = sorted(set(named) - set(self.sources))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; declared: {sorted(self.sources)}")
        values = self.leads.outcome.values or {}
        bad = sorted(set(values.values()) - set(OUTCOMES))
        if bad:
            raise ValueError(f"outcome values must map to {OUTCOMES}, got {bad}")
        return self


def load_mapping(name_or_path: str) -> DatasetMapping:
    """Load a built-in mapping by name (`maven`) or a mapping YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BUILTIN_MAPPINGS / f"{name_or_path}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in BUILTIN_MAPPINGS.glob("*.yaml")))
            raise MappingError(
                f"no built-in mapping named {name_or_path!r}; built-in: {known}, "
                "or give the path of a mapping YAML file"
            )
    if not path.exists():
        raise MappingError(f"mapping file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise MappingError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise MappingError(f"{path}: a mapping file must be a YAML mapping (key: value)")
    try:
        return DatasetMapping.model_validate(document)
    except ValidationError as error:
        problems = "\n".join(
            f"  - {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in error.errors()
        )
        raise MappingError(f"{path}: invalid mapping:\n{problems}") from None
