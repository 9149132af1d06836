"""Scoring and ranking leads, and a lead's score history (role `integration`)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from scoring.lead_scores import LeadScores
from scoring.score_history import score_history, score_trend
from serve.auth import Integration
from serve.deps import Engine, Recorder, Scoring
from serve.errors import error_responses
from serve.lead_scoring import check_attributes, history_rows, result_records, score_leads
from serve.metrics import metrics
from serve.schemas import (
    LeadIn,
    RankRequest,
    RankResponse,
    ScoreHistoryPoint,
    ScoreHistoryResponse,
    ScoreRequest,
    ScoreResponse,
)
from serve.service import Loaded

# Requests with more leads than this are scored on a worker thread, so a 10,000-lead batch
# does not hold up the one-lead requests queued behind it on the event loop. Up to here
# (about 10 ms of scoring) the hop to a thread and back costs more than it saves.
_INLINE_LEADS = 200

ERRORS = error_responses(400, 401, 403, 413, 422, 503)

router = APIRouter(prefix="/v1/leads", tags=["leads"], responses=ERRORS)


def _json(body: dict[str, Any]) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


async def _score(
    loaded: Loaded, leads: list[LeadIn], explain: bool, recorder: Recorder, endpoint: str
) -> tuple[list[dict[str, Any]], list[str], LeadScores]:
    scorer = loaded.scorer
    assert scorer is not None  # Scoring answered 503 otherwise
    ignored = check_attributes(scorer, leads)
    if len(leads) > _INLINE_LEADS:
        scores = await run_in_threadpool(score_leads, scorer, leads, explain)
    else:
        scores = score_leads(scorer, leads, explain)
    records = result_records(leads, scores)
    recorder.record(history_rows(leads, scores, scorer.versions.get("lead-conversion", "")))
    metrics().leads_scored.labels(endpoint).inc(len(leads))
    return records, ignored, scores


def _envelope(loaded: Loaded, records: list[dict[str, Any]], ignored: list[str]) -> dict[str, Any]:
    scorer = loaded.scorer
    assert scorer is not None
    return {
        "results": records,
        "models": scorer.versions,
        "horizon_days": scorer.horizon_days,
        "ignored_attributes": ignored,
    }


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score 1 to 10,000 leads: calibrated probability, grade, timing, value, reasons",
)
async def score(request: ScoreRequest, caller: Integration, scoring: Scoring) -> Response:
    loaded = scoring.loaded
    records, ignored, _ = await _score(
        loaded, request.leads, request.explain, scoring.recorder, "score"
    )
    return _json(_envelope(loaded, records, ignored))


@router.post(
    "/rank",
    response_model=RankResponse,
    summary="The same leads, best first (by probability), with their rank; optional top_k",
)
async def rank(request: RankRequest, caller: Integration, scoring: Scoring) -> Response:
    loaded = scoring.loaded
    records, ignored, scores = await _score(
        loaded, request.leads, request.explain, scoring.recorder, "rank"
    )
    order = sorted(range(len(records)), key=lambda i: (-scores.probability[i], i))
    if request.top_k is not None:
        order = order[: request.top_k]
    ranked = [{**records[i], "rank": position} for position, i in enumerate(order, start=1)]
    return _json(_envelope(loaded, ranked, ignored))


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
