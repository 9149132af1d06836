"""Who to target (`viewer`): segments of leads ranked by what one more lead of theirs is worth.

The data behind the first step of a sales plan, "identify the target group": for each
combination of a few lead columns (say industry x company size x source), from the leads whose
outcome is decided, the conversion rate and the expected value per lead with P10-P90 intervals
(`scoring.target_segments.rank_segments`). The dashboard's "who to target" panel shows the same.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.goals import MAX_TEXT_LENGTH
from scoring.target_segments import decided_leads, default_segment_columns, rank_segments
from serve.auth import Viewer
from serve.deps import FunnelCache, Funnels, single_valued
from serve.errors import ApiError, ErrorDetail, ErrorResponse, error_responses

MAX_COLUMNS = 4  # combinations multiply: four columns of 12 levels are 20,736 segments
DEFAULT_MIN_LEADS = 30


router = APIRouter(
    prefix="/v1",
    tags=["segments"],
    responses=error_responses(401, 403),
    dependencies=[Depends(single_valued("columns"))],
)


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SegmentOut(Strict):
    """One segment's figures over its decided leads; null where the data has no amounts."""

    segment: dict[str, str] = Field(
        description="Lead column -> value; a missing value reads (missing)",
        examples=[{"industry": "Software", "company_size": "51-200", "source": "Referral"}],
    )
    leads: int = Field(description="Decided leads of the segment")
    won: int = Field(description="Of them, won within the horizon")
    conversion_rate: float = Field(description="won / leads")
    conversion_p10: float = Field(description="P10 of the rate (Beta posterior, Jeffreys prior)")
    conversion_p90: float
    avg_deal_size: float | None = Field(description="Mean amount of the segment's won deals")
    expected_value_per_lead: float | None = Field(description="conversion_rate x avg_deal_size")
    expected_value_p10: float | None = Field(description="P10 of the expected value per lead")
    expected_value_p90: float | None


class SegmentsResponse(Strict):
    """Segments best first, with what they were computed from."""

    columns: list[str] = Field(description="The lead columns combined into segments")
    min_leads: int = Field(description="Segments with fewer decided leads are left out")
    ranked_by: str = Field(
        description="expected_value_per_lead, or conversion_rate when the data has no amounts"
    )
    horizon_days: int
    decided_leads: int = Field(
        description="Leads whose outcome is decided: created at least horizon_days before the "
        "end of the data (every lead when the data is undated)"
    )
    segments: list[SegmentOut]


INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "A column the leads do not have, a column given twice, too many "
        "columns, or no attribute column to segment by",
    },
    503: {"model": ErrorResponse, "description": "The store holds no funnel yet (no_data)"},
}


def _invalid(message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"columns: {message}",
        details=[ErrorDetail(location=["query", "columns"], message=message)],
    )


def _optional(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def segments_response(funnel: Funnel, columns: list[str], min_leads: int) -> SegmentsResponse:
    """The ranking of `funnel`'s segments over `columns` (default columns when empty).

    Raises:
        FunnelcastInputError: a column the leads do not have, or none to segment by.
    """
    chosen = columns or default_segment_columns(funnel)
    ranked = rank_segments(funnel, chosen, min_leads=min_leads)
    has_amounts = bool(ranked["avg_deal_size"].notna().any()) if len(ranked) else False
    records = ranked.to_dict("records")
    return SegmentsResponse(
        columns=list(chosen),
        min_leads=min_leads,
        ranked_by="expected_value_per_lead" if has_amounts else "conversion_rate",
        horizon_days=funnel.horizon_days,
        decided_leads=len(decided_leads(funnel)),
        segments=[
            SegmentOut(
                segment={str(k): str(v) for k, v in record["segment"].items()},
                leads=int(record["leads"]),
                won=int(record["won"]),
                conversion_rate=float(record["conversion_rate"]),
                conversion_p10=float(record["conversion_p10"]),
                conversion_p90=float(record["conversion_p90"]),
                avg_deal_size=_optional(record["avg_deal_size"]),
                expected_value_per_lead=_optional(record["expected_value_per_lead"]),
                expected_value_p10=_optional(record["expected_value_p10"]),
                expected_value_p90=_optional(record["expected_value_p90"]),
            )
            for record in records
        ],
    )


def _segments(funnels: FunnelCache, columns: list[str], min_leads: int) -> SegmentsResponse:
    try:
        funnel = funnels.get()
    except FunnelcastInputError as error:
        raise ApiError(503, "no_data", str(error)) from None
    try:
        return segments_response(funnel, columns, min_leads)
    except FunnelcastInputError as error:
        raise _invalid(str(error)) from None


@router.get(
    "/segments",
    response_model=SegmentsResponse,
    summary="Segments (combinations of lead columns) ranked by expected value per lead",
    responses=INVALID,
)
async def read_segments(
    caller: Viewer,
    funnels: Funnels,
    columns: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]] | None,
        Query(
            description="A lead column to combine, repeatable (default: up to three text "
            f"columns with 2 to 12 levels, fewest levels first); at most {MAX_COLUMNS}"
        ),
    ] = None,
    min_leads: Annotated[
        int, Query(ge=1, le=1_000_000, description="Leave out segments with fewer decided leads")
    ] = DEFAULT_MIN_LEADS,
) -> SegmentsResponse:
    chosen = [column.strip() for column in columns or []]
    if len(chosen) > MAX_COLUMNS:
        raise _invalid(f"{len(chosen)} columns given; at most {MAX_COLUMNS}")
    repeated = sorted({c for c in chosen if chosen.count(c) > 1})
    if repeated:
        raise _invalid(f"{', '.join(repeated)} given more than once")
    return await run_in_threadpool(_segments, funnels, chosen, min_leads)
