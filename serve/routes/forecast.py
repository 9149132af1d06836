"""KPI forecasts (DESIGN §5) for anyone with a key (`viewer`): what `funnelcast forecast` prints.

The engine is CPU-bound and takes a second or more: it runs on a worker thread, with the stored
funnel the worker keeps (reloaded after an ingest or push) and its current champions.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from scoring.errors import FunnelcastInputError
from scoring.forecast import Forecast, ForecastModels, forecast
from scoring.periods import Freq
from scoring.segments import SegmentError
from serve.auth import Viewer
from serve.deps import (
    NO_FORECAST_MODELS,
    ForecastChampions,
    FunnelCache,
    Funnels,
    single_valued,
)
from serve.errors import ApiError, ErrorResponse, error_responses
from serve.forecast_schemas import (
    DEFAULT_DRAWS,
    MAX_PERIODS,
    MAX_SIMULATED_PERIODS,
    AsOfQuery,
    DrawsQuery,
    ForecastResponse,
    SeedQuery,
    SegmentPair,
    check_as_of,
    check_budget,
    invalid,
    parse_as_of,
    parse_segment,
)

INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "A parameter is out of range or malformed, names an unknown segment key "
        "or a date outside the data, or the run is over the API's limits (forecast_too_large)",
    }
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorResponse,
        "description": "No lead-conversion or deal-cycle champion (no_model), or no dated "
        "funnel in the store (no_data); the message says how to train",
    }
}

router = APIRouter(
    prefix="/v1",
    tags=["forecasts"],
    responses=error_responses(401, 403),
    dependencies=[Depends(single_valued("segment"))],
)


def simulated_periods(freq: Freq, periods: int) -> int:
    """How many periods the engine simulates: quarters are simulated as months."""
    return 3 * periods if freq == "quarter" else periods


@router.get(
    "/forecast",
    response_model=ForecastResponse,
    summary="Every KPI per future period: mean, P10, P50, P90 over Monte Carlo draws",
    responses={**INVALID, **UNAVAILABLE},
)
async def read_forecast(
    caller: Viewer,
    models: ForecastChampions,
    funnels: Funnels,
    freq: Annotated[
        Literal["week", "month", "quarter"], Query(description="Period length")
    ] = "month",
    periods: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_PERIODS,
            description="Periods to forecast, the first being the one that holds the day "
            f"after as_of (the API simulates at most {MAX_SIMULATED_PERIODS} months or weeks: "
            f"{MAX_SIMULATED_PERIODS // 3} quarters)",
        ),
    ] = 3,
    segment: Annotated[
        list[SegmentPair] | None,
        Query(description="Lead column=value, repeatable (ANDed), e.g. region=Nordics"),
    ] = None,
    as_of: AsOfQuery = None,
    draws: DrawsQuery = DEFAULT_DRAWS,
    seed: SeedQuery = 0,
) -> ForecastResponse:
    day = parse_as_of(as_of)
    filters = parse_segment(segment)
    check_budget(draws, simulated_periods(freq, periods), f"{periods} {freq}(s)")
    if models is None:
        raise ApiError(503, "no_model", NO_FORECAST_MODELS)
    result = await run_in_threadpool(
        _forecast, funnels, models, freq, periods, day, filters, draws, seed
    )
    return ForecastResponse.of(result, freq, periods, draws, seed)


def _forecast(
    funnels: FunnelCache,
    models: ForecastModels,
    freq: Freq,
    periods: int,
    day: date | None,
    segment: dict[str, str],
    draws: int,
    seed: int,
) -> Forecast:
    funnel = funnels.dated()
    moment = check_as_of(funnel, day)
    try:
        return forecast(
            funnel,
            models,
            freq=freq,
            periods=periods,
            as_of=moment,
            segment=segment,
            draws=draws,
            seed=seed,
        )
    except SegmentError as error:
        raise invalid("segment", str(error)) from None
    except FunnelcastInputError as error:
        # Lead-volume names the segment when it has no forecast for it; nothing else is left
        # that a request can cause once as_of is inside the data.
        raise invalid("segment" if "segment" in str(error) else "as_of", str(error)) from None
