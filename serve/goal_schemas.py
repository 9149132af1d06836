"""Request and response schemas of the goals routes (strict: no coercion, no extra fields).

The schemas check types; what a goal means (a known KPI, a rate between 0 and 1, an end after
the start, segment keys that are lead columns) is checked by `scoring.goals.parse_goal`, so the
API, the CLI and goals files give the same messages. The patterns below document those rules
in the OpenAPI schema.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from scoring.goal_store import StoredGoal
from scoring.goals import FIRST_YEAR, LAST_YEAR, MAX_STAGE_LENGTH, MAX_TEXT_LENGTH
from scoring.kpis import KPI_IDS, STAGE_CONVERSION_PREFIX

_KPI_PATTERN = (
    f"^({'|'.join(KPI_IDS)}|{re.escape(STAGE_CONVERSION_PREFIX)}.{{1,{MAX_STAGE_LENGTH}}})$"
)
_YEARS = "(19[0-9]{2}|2[01][0-9]{2})"  # FIRST_YEAR to LAST_YEAR
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD, e.g. 2026-03-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid date") from None


def _date_schema(schema: dict[str, Any]) -> None:
    schema.update(type="string", format="date", pattern=f"^{_YEARS}-")


IsoDate = Annotated[date, BeforeValidator(_iso_date), Field(json_schema_extra=_date_schema)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class GoalIn(Strict):
    """A SMART goal: a KPI, a target and a direction over a period, for an optional segment."""

    name: str = Field(
        max_length=MAX_TEXT_LENGTH,
        json_schema_extra={"pattern": r"\S"},
        examples=["Q1 new revenue, Nordics"],
    )
    kpi: str = Field(
        max_length=len(STAGE_CONVERSION_PREFIX) + MAX_STAGE_LENGTH,
        json_schema_extra={"pattern": _KPI_PATTERN},
        description=f"A KPI id: {', '.join(KPI_IDS)}, or {STAGE_CONVERSION_PREFIX}<stage>",
        examples=["won_revenue"],
    )
    direction: Literal["at_least", "at_most"] = Field(
        description="Whether the KPI should end at or above (at_least) or at or below the target"
    )
    target: float = Field(
        allow_inf_nan=False,
        json_schema_extra={"minimum": 0},
        description="The target value; rates (conversion_rate, win_rate, churn_rate, "
        "stage_conversion.*) as a share between 0 and 1; other KPIs 0 or more",
        examples=[500000],
    )
    period_start: IsoDate = Field(
        description=f"First day of the period, YYYY-MM-DD (years {FIRST_YEAR}-{LAST_YEAR})"
    )
    period_end: IsoDate = Field(
        description="Last day of the period (inclusive), not before period_start"
    )
    segment: dict[str, str] = Field(
        default_factory=dict,
        description="Lead column -> value (text), ANDed; keys must be lead columns of the funnel",
        examples=[{"region": "Nordics"}],
    )
    owner: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH, examples=["nordics-team"])


class GoalOut(Strict):
    """A stored goal: its id, its fields and when it was created and last changed (UTC)."""

    id: int
    name: str
    kpi: str
    direction: Literal["at_least", "at_most"]
    target: float
    period_start: date
    period_end: date
    segment: dict[str, str]
    owner: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, stored: StoredGoal) -> GoalOut:
        goal = stored.goal
        return cls(
            id=stored.id,
            name=goal.name,
            kpi=goal.kpi,
            direction=goal.direction,
            target=goal.target,
            period_start=goal.period_start,
            period_end=goal.period_end,
            segment=dict(goal.segment),
            owner=goal.owner,
            created_at=stored.created_at,
            updated_at=stored.updated_at,
        )


class GoalList(Strict):
    goals: list[GoalOut]
