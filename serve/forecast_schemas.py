"""The forecast route's response schema, and the query parameters and limits of every request
that runs the Monte Carlo engine (`GET /v1/forecast`, goal attainment).

Why limits beyond the CLI's: the engine's time grows faster than linearly with the periods it
simulates (each gets a pool of template leads run through deal-cycle over the rest of the
window) and its memory with draws x periods (about 30 kB per draw and period on a funnel of a
hundred leads a month, more on bigger ones). The CLI runs on the analyst's machine; an API
worker serves everyone, so it refuses what would hold it for minutes or take gigabytes.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal

import pandas as pd
from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from scoring.forecast import Forecast
from scoring.funnel import Funnel
from scoring.goals import FIRST_YEAR, LAST_YEAR
from scoring.periods import Freq
from serve.errors import ApiError, ErrorDetail

DEFAULT_DRAWS = 1000
MIN_DRAWS, MAX_DRAWS = 100, 100_000  # as `funnelcast forecast`
MAX_PERIODS = 104  # as `funnelcast forecast`
MAX_SEED = 2**32 - 1
# Simulated periods are months (weeks for weekly forecasts; a quarter is three months).
MAX_SIMULATED_PERIODS = 24
MAX_DRAW_PERIODS = 12_000  # draws x simulated periods: 1,000 draws over a year, 4,000 over 3 months
AS_OF_PATTERN = r"^(19|2[01])[0-9]{2}-[0-9]{2}-[0-9]{2}$"
SEGMENT_PATTERN = r"^[^=]+=.*$"
_DATE = re.compile(AS_OF_PATTERN)

AsOfQuery = Annotated[
    str | None,
    Query(
        pattern=AS_OF_PATTERN,
        description="As of the end of this day, YYYY-MM-DD, within the data (default: the end "
        "of the data)",
    ),
]
DrawsQuery = Annotated[
    int,
    Query(
        ge=MIN_DRAWS,
        le=MAX_DRAWS,
        description=f"Monte Carlo draws (draws x simulated periods at most {MAX_DRAW_PERIODS:,})",
    ),
]
SegmentPair = Annotated[str, Field(pattern=SEGMENT_PATTERN, max_length=600)]
SeedQuery = Annotated[
    int, Query(ge=0, le=MAX_SEED, description="Random seed (same seed, same figures)")
]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ForecastRow(Strict):
    """One KPI in one period: the mean and percentiles of its draws (null when the KPI is
    undefined in every draw, say no deal closes)."""

    period_start: date
    period_end: date = Field(description="Last day of the period (inclusive)")
    kpi: str = Field(examples=["won_revenue"])
    mean: float | None
    p10: float | None
    p50: float | None
    p90: float | None


class ForecastResponse(Strict):
    """Every forecast KPI for every period, as `funnelcast forecast --format json` prints them,
    with what the forecast was made from."""

    as_of: datetime = Field(
        description="The moment the funnel is known up to (the end of a day, UTC)"
    )
    freq: Literal["week", "month", "quarter"]
    periods: int
    draws: int
    seed: int
    segment: dict[str, str] = Field(description="Lead column -> value the forecast covers")
    rows: list[ForecastRow]
    notes: list[str] = Field(description="What the forecast could not simulate, and why")
    models: dict[str, str] = Field(description="Registered model name -> champion version used")

    @classmethod
    def of(
        cls, result: Forecast, freq: Freq, periods: int, draws: int, seed: int
    ) -> ForecastResponse:
        rows = [
            ForecastRow(
                period_start=start,
                period_end=end,
                kpi=str(record["kpi"]),
                mean=_figure(record["mean"]),
                p10=_figure(record["p10"]),
                p50=_figure(record["p50"]),
                p90=_figure(record["p90"]),
            )
            for record, start, end in _dated(result.records())
        ]
        return cls(
            as_of=utc(result.timeline.as_of),
            freq=freq,
            periods=periods,
            draws=draws,
            seed=seed,
            segment=dict(result.segment),
            rows=rows,
            notes=list(result.notes),
            models=dict(result.versions),
        )


def utc(moment: pd.Timestamp) -> datetime:
    """A moment of the funnel (naive UTC, as the store keeps it) as an aware UTC datetime."""
    return moment.to_pydatetime().replace(tzinfo=UTC)


def _dated(records: list[dict[str, object]]) -> list[tuple[dict[str, object], date, date]]:
    return [
        (r, date.fromisoformat(str(r["period_start"])), date.fromisoformat(str(r["period_end"])))
        for r in records
    ]


def _figure(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# -- request checks shared by the routes that run the engine ---------------------------------


def invalid(
    parameter: str, message: str, code: str = "invalid_request", where: str = "query"
) -> ApiError:
    """A 422 naming the parameter at fault (`where`: query or path)."""
    return ApiError(
        422,
        code,
        f"{parameter}: {message}",
        details=[ErrorDetail(location=[where, parameter], message=message)],
    )


def parse_as_of(text: str | None) -> date | None:
    """`as_of` as a date (the schema's pattern has checked its shape, not the calendar)."""
    if text is None:
        return None
    try:
        day = date.fromisoformat(text) if _DATE.match(text) else None
    except ValueError:
        day = None
    if day is None or not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise invalid("as_of", f"{text!r} is not a date written YYYY-MM-DD")
    return day


def parse_segment(pairs: list[str] | None) -> dict[str, str]:
    """`segment=key=value` parameters as a filter; a key given twice is refused."""
    segment: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise invalid("segment", f"{pair!r} must look like key=value, e.g. region=Nordics")
        if key in segment:
            raise invalid("segment", f"key {key!r} is given twice; segment keys are ANDed")
        segment[key] = value
    return segment


def check_budget(
    draws: int, simulated: int, what: str, span: tuple[str, str] = ("query", "periods")
) -> None:
    """Refuse a run whose simulated periods or draws x periods are over the API's limits;
    `span` is where the number of periods comes from (a query parameter, a goal's id)."""
    if simulated > MAX_SIMULATED_PERIODS:
        raise invalid(
            span[1],
            f"{what} simulates {simulated} periods (months, or weeks for weekly forecasts); "
            f"the API simulates at most {MAX_SIMULATED_PERIODS}: use `funnelcast` for longer ones",
            code="forecast_too_large",
            where=span[0],
        )
    if draws * simulated > MAX_DRAW_PERIODS:
        raise invalid(
            "draws",
            f"{draws} draws over {simulated} simulated periods is over the API's limit of "
            f"{MAX_DRAW_PERIODS:,} draws x periods: ask for at most "
            f"{max(MAX_DRAW_PERIODS // simulated, MIN_DRAWS)} draws, or use `funnelcast`",
            code="forecast_too_large",
        )


def check_as_of(funnel: Funnel, day: date | None) -> pd.Timestamp | None:
    """`as_of` as the engine takes it, within the data: from the first lead's day to the day
    the data ends."""
    if day is None:
        return None
    first = pd.Timestamp(funnel.leads["created_at"].min()).date()
    last = pd.Timestamp(funnel.observed_until or funnel.leads["created_at"].max()).date()
    if not first <= day <= last:
        raise invalid("as_of", f"{day} is outside the data, which runs from {first} to {last}")
    return pd.Timestamp(day)
