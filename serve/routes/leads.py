"""Scoring and ranking leads, and a lead's score history (role `integration`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from scoring.score_history import score_history, score_trend
from serve.auth import Integration
from serve.deps import Engine, Recorder, Scoring
from serve.errors import error_responses
from serve.lead_scoring import check_attributes, scored
from serve.schemas import (
    RankRequest,
    RankResponse,
    ScoreHistoryPoint,
    ScoreHistoryResponse,
    ScoreRequest,
    ScoreResponse,
)

ERRORS = error_responses(400, 401, 403, 413, 422, 503)

router = APIRouter(prefix="/v1/leads", tags=["leads"], responses=ERRORS)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score 1 to 10,000 leads: calibrated probability, grade, timing, value, reasons",
)
async def score(request: ScoreRequest, caller: Integration, scoring: Scoring) -> Response:
    # serve/fast_path.py answers well-formed requests before they get here, with the same
    # function; this route is the contract (OpenAPI, errors) and answers everything else.
    ignored = check_attributes(scoring.scorer, request.leads)
    return _json(await scored(scoring.scorer, scoring.recorder, request, ignored))


@router.post(
    "/rank",
    response_model=RankResponse,
    summary="The same leads, best first (by probability), with their rank; optional top_k",
)
async def rank(request: RankRequest, caller: Integration, scoring: Scoring) -> Response:
    ignored = check_attributes(scoring.scorer, request.leads)
    return _json(await scored(scoring.scorer, scoring.recorder, request, ignored))


@router.get(
    "/{lead_id}/scores",
    response_model=ScoreHistoryResponse,
    summary="A lead's score history (oldest first) and its trend",
)
async def scores_of_lead(
    lead_id: str,
    caller: Integration,
    engine: Engine,
    recorder: Recorder,
) -> ScoreHistoryResponse:
    await run_in_threadpool(recorder.flush)  # what this worker served so far is included
    rows = await run_in_threadpool(score_history, engine, lead_id)
    return ScoreHistoryResponse(
        lead_id=lead_id,
        trend=score_trend(rows),
        scores=[
            ScoreHistoryPoint(
                scored_at=row.scored_at,
                probability=row.probability,
                score=row.score,
                grade=row.grade,
                model_version=row.model_version,
            )
            for row in rows
        ],
    )
