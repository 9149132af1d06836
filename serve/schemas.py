"""Request and response schemas of the API (strict: no silent type coercion, no extra fields).

Date-times are ISO 8601 strings (`2026-05-01T09:30:00Z`, `2026-05-01`); a zone is converted
to UTC and dropped, since the funnel store keeps naive UTC times.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_LEADS = 10_000
MAX_EXPLAINED_LEADS = 1_000


# Years a funnel date may have: anything else is a placeholder or a typo, and beyond 2262
# it no longer fits the nanosecond timestamps scoring and the store compute with. The pattern
# puts the same rule in the OpenAPI schema, so clients and generators see it.
FIRST_YEAR, LAST_YEAR = 1900, 2199
_YEAR_PATTERN = "^(19|2[01])[0-9]{2}-"


def _iso_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO 8601 date-time such as 2026-05-01T09:30:00Z"
            ) from None
        if not re.match(r"[0-9]{4}-", value):
            raise ValueError(f"{value!r} is not written as YYYY-MM-DD... (ISO 8601 extended)")
    else:
        raise ValueError("must be an ISO 8601 date-time string")
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValueError(f"{value!r} is outside the years {FIRST_YEAR}-{LAST_YEAR}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _date_time_schema(schema: dict[str, Any]) -> None:
    """What `_iso_datetime` takes: a date-time or a date, in the years allowed."""
    schema.pop("format", None)
    schema.update(
        type="string",
        anyOf=[{"format": "date-time"}, {"format": "date"}],
        pattern=_YEAR_PATTERN,
        description=f"ISO 8601, years {FIRST_YEAR}-{LAST_YEAR}; a zone is converted to UTC",
    )


IsoDateTime = Annotated[
    datetime, BeforeValidator(_iso_datetime), Field(json_schema_extra=_date_time_schema)
]
LeadId = Annotated[str, Field(min_length=1, max_length=255, examples=["L-1042"])]
# JSON numbers a float can hold: no NaN or Infinity (not JSON), no integer beyond 64 bits.
AttributeValue = (
    str
    | bool
    | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | None
)


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def _bad_text(value: Any) -> str | None:
    """What makes a text in `value` (a key or a value, at any depth) unstorable, if any."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\u0000), which PostgreSQL text cannot hold"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "a lone surrogate escape such as \\ud800, which is not valid Unicode"
        return None
    items = [*value, *value.values()] if isinstance(value, dict) else value
    for item in items if isinstance(items, list) else ():
        problem = _bad_text(item)
        if problem is not None:
            return problem
    return None


def unicode_text(data: Any) -> Any:
    """Refuse text that JSON can carry and the store or a response cannot: a lone surrogate
    escape ("\\ud800") or a NUL character. Found late, either is a 500."""
    try:
        if b"\\u0000" not in orjson.dumps(data):  # fails on a lone surrogate
            return data
    except TypeError:
        pass
    try:
        problem = _bad_text(data)
    except RecursionError:  # nested deeper than any lead: the fields' own checks refuse it
        return data
    if problem is not None:
        raise ValueError(f"text must be valid Unicode without NUL characters; found {problem}")
    return data


class StrictBody(Strict):
    """A request body: strict, and its text valid Unicode (see `unicode_text`)."""

    @model_validator(mode="before")
    @classmethod
    def _unicode_text(cls, data: Any) -> Any:
        return unicode_text(data)


class LeadIn(Strict):
    """A lead to score: its id, when it was created, and its attributes."""

    lead_id: LeadId
    created_at: IsoDateTime | None = Field(
        default=None, description="When the lead was created; default: now (UTC)"
    )
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Attribute name -> value. Unknown names are ignored (listed in the "
        "response); a known numeric attribute needs a number, a known categorical one text "
        "or true/false; null means not given.",
        examples=[{"industry": "software", "employees": 40, "source": "referral"}],
    )


class ScoreRequest(StrictBody):
    leads: list[LeadIn] = Field(min_length=1, max_length=MAX_LEADS)
    explain: bool = Field(
        default=False, description=f"Add reasons (at most {MAX_EXPLAINED_LEADS} leads)"
    )

    @model_validator(mode="after")
    def _explain_is_bounded(self) -> ScoreRequest:
        if self.explain and len(self.leads) > MAX_EXPLAINED_LEADS:
            raise ValueError(
                f"explain is limited to {MAX_EXPLAINED_LEADS} leads per request; "
                f"got {len(self.leads)}"
            )
        return self


class RankRequest(ScoreRequest):
    top_k: int | None = Field(default=None, ge=1, le=MAX_LEADS, description="Keep the best k")


class ReasonOut(Strict):
    attribute: str
    value: AttributeValue
    effect: float = Field(description="Part of the raw log-odds (exact; sums with base value)")
    points: float = Field(description="Approximate effect in score points (see docs/api.md)")
    text: str = Field(examples=["Source is referral: raises the chance to win (+6 points)"])


class ReasonsOut(Strict):
    positive: list[ReasonOut]
    negative: list[ReasonOut]
    base_value: float = Field(description="The raw score with no attribute effects")
    raw_score: float = Field(description="base_value + the sum of every attribute's effect")


class LeadScoreOut(Strict):
    lead_id: str
    probability: float = Field(ge=0, le=1, description="Calibrated P(won within the horizon)")
    score: int = Field(ge=0, le=100, description="round(100 × probability)")
    grade: Literal["A", "B", "C", "D"] = Field(
        description="A: top 10 % of training leads, B: next 20 %, C: next 30 %, D: the rest"
    )
    percentile: float | None = Field(description="Share of training leads scored at or below")
    expected_days_to_close: float | None = Field(
        description="Mean days from creation to a win, given a win within the horizon"
    )
    p_won_30d: float | None
    p_won_90d: float | None
    expected_value: float | None = Field(description="probability × mean deal amount if won")
    expected_value_p10: float | None
    expected_value_p90: float | None
    reasons: ReasonsOut | None = None


class RankedLeadOut(LeadScoreOut):
    rank: int = Field(ge=1)


class ScoreResponse(Strict):
    results: list[LeadScoreOut]
    models: dict[str, str] = Field(description="Model name -> registry version used")
    horizon_days: int
    ignored_attributes: list[str] = Field(description="Attribute names no model knows")


class RankResponse(Strict):
    results: list[RankedLeadOut]
    models: dict[str, str]
    horizon_days: int
    ignored_attributes: list[str]


class ScoreHistoryPoint(Strict):
    scored_at: datetime
    probability: float
    score: int
    grade: str
    model_version: str


class ScoreHistoryResponse(Strict):
    lead_id: str
    trend: Literal["improving", "steady", "declining"]
    scores: list[ScoreHistoryPoint]


class ModelOut(Strict):
    name: str
    version: str
    source: Literal["registry", "local copy"]
    run_id: str | None
    registered_at: str | None
    metrics: dict[str, float]
    training: dict[str, str] = Field(description="Training data: dataset, split, rows, range")


class ModelsResponse(Strict):
    models: list[ModelOut]
    missing: dict[str, str]
    degraded: list[str]
    reload_generation: int


class ReloadResponse(Strict):
    reload_generation: int
    models: dict[str, str]
    message: str


class Health(Strict):
    status: Literal["ok"]


class Readiness(Strict):
    status: Literal["ready", "degraded", "not_ready"]
    models: dict[str, str]
    problems: list[str]


class LeadUpsert(StrictBody):
    """A lead pushed by a CRM: created, updated, moved on, won or lost."""

    created_at: IsoDateTime
    outcome: Literal["won", "lost", "open"] = "open"
    closed_at: IsoDateTime | None = None
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    stage: str | None = None
    owner: str | None = None
    account_id: str | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)


class LeadEvent(StrictBody):
    """A stage change, or the outcome (a won/lost close) of a lead already in the store."""

    kind: Literal["stage", "won", "lost"]
    at: IsoDateTime = Field(description="When the lead entered the stage or closed")
    stage: str | None = Field(default=None, description="The stage entered (kind = stage)")
    amount: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Deal value (kind = won)"
    )


class LeadStored(Strict):
    lead_id: str
    created: bool
    outcome: str
    stage: str | None
