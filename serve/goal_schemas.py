"""Request and response schemas of the goals and attainment routes (strict: no coercion, no
extra fields).

The schemas check types; what a goal means (a known KPI, a rate between 0 and 1, an end after
the start, segment keys that are lead columns) is checked by `scoring.goals.parse_goal`, so the
API, the CLI and goals files give the same messages. The patterns below document those rules
in the OpenAPI schema.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from scoring.attainment import Attainment
from scoring.goal_store import StoredCheck, StoredGoal
from scoring.goals import FIRST_YEAR, LAST_YEAR, MAX_STAGE_LENGTH, MAX_TEXT_LENGTH
from scoring.kpis import KPI_IDS, STAGE_CONVERSION_PREFIX
from serve.forecast_schemas import utc
from serve.schemas import StrictBody

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


class GoalIn(StrictBody):
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


# -- attainment -------------------------------------------------------------------------------

CheckStatus = Literal["on_track", "at_risk", "off_track", "met", "missed"]


class ForecastFigures(Strict):
    """The whole period's KPI over the draws (actuals so far included)."""

    mean: float | None
    p10: float | None
    p50: float | None
    p90: float | None


class WhatItTakesOut(Strict):
    """What would bring the goal to an 80 % chance (see docs/api.md, Goal attainment)."""

    kind: Literal[
        "nothing_more",
        "extra_leads_per_week",
        "not_reachable_in_time",
        "rate_needed",
        "deal_size_needed",
        "not_available",
    ]
    value: float | None = Field(
        description="Extra new leads a week, the rate or the average deal size needed"
    )
    message: str


class AttainmentOut(Strict):
    """One check of a goal: actual to date, forecast of the period, chance and status."""

    as_of: datetime = Field(
        description="The moment the funnel was known up to (the end of a day, UTC)"
    )
    state: Literal["past", "current", "future"] = Field(
        description="Whether the period is over, under way or still to come as of as_of"
    )
    actual: float | None = Field(
        description="The KPI over the period's days so far (the final value once it is over)"
    )
    forecast: ForecastFigures | None = Field(description="Null once the period is over")
    probability: float = Field(ge=0, le=1, description="Share of draws that meet the target")
    status: CheckStatus = Field(
        description="on_track / at_risk / off_track from the probability (thresholds "
        "FUNNELCAST_GOAL_ON_TRACK, FUNNELCAST_GOAL_AT_RISK); met / missed once the period is over"
    )
    what_it_takes: WhatItTakesOut
    notes: list[str]

    @classmethod
    def of(cls, attainment: Attainment) -> AttainmentOut:
        figures = attainment.forecast
        takes = attainment.takes
        return cls(
            as_of=utc(attainment.as_of),
            state=attainment.state,
            actual=attainment.actual,
            forecast=None if figures is None else ForecastFigures(**figures),
            probability=attainment.probability,
            status=cast(CheckStatus, attainment.status),
            what_it_takes=WhatItTakesOut(kind=takes.kind, value=takes.value, message=takes.message),
            notes=list(attainment.notes),
        )


class CheckOut(Strict):
    """A recorded check: when, and what it found."""

    checked_at: datetime
    status: CheckStatus
    probability: float | None
    actual: float | None
    forecast_p10: float | None
    forecast_p50: float | None
    forecast_p90: float | None

    @classmethod
    def of(cls, stored: StoredCheck) -> CheckOut:
        check = stored.check
        if check.checked_at is None:  # the store always sets it
            raise ValueError(f"check {stored.id} has no time")
        return cls(
            checked_at=check.checked_at,
            status=cast(CheckStatus, check.status),
            probability=check.probability,
            actual=check.actual,
            forecast_p10=check.forecast_p10,
            forecast_p50=check.forecast_p50,
            forecast_p90=check.forecast_p90,
        )


class GoalAttainment(Strict):
    """A goal, the check just made (and recorded), and its checks so far, oldest first."""

    goal: GoalOut
    attainment: AttainmentOut
    history: list[CheckOut] = Field(description="Up to the last 100 checks, this one included")


class GoalAttainmentItem(Strict):
    """A goal and the check just made and recorded; `problem` says why there is none."""

    goal: GoalOut
    attainment: AttainmentOut | None
    problem: str | None = Field(
        default=None, description="Why the goal could not be checked (its KPI is not forecast)"
    )


class OwnerRollup(Strict):
    """One owner's goals: how many by status, and their mean probability of being met."""

    owner: str | None = Field(description="Null for the goals without an owner")
    goals: int
    on_track: int
    at_risk: int
    off_track: int
    met: int
    missed: int
    not_checked: int
    mean_probability: float | None = Field(description="Over the goals checked; null if none")


class AttainmentReport(Strict):
    goals: list[GoalAttainmentItem]
    owners: list[OwnerRollup]
