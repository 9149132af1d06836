"""From a score request to its response body: attribute checks, scoring, reasons, records.

Kept apart from the routes so that score, rank and the fast path (serve/fast_path.py) share it
(`scored` also records the scores in the history and counts them), and so that the benchmarks
can time its parts. Results are built as plain dicts and serialised once with orjson:
re-validating thousands of our own floats through pydantic would cost more than scoring them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool

from scoring.lead_scores import LeadScorer, LeadScores
from scoring.reasons import Reason
from scoring.score_history import ScoreRecorder
from serve.errors import ApiError, ErrorDetail
from serve.metrics import metrics
from serve.schemas import LeadIn, RankRequest, ScoreRequest

_NS = 10**9

# Requests with more leads than this are scored on a worker thread, so a 10,000-lead batch
# does not hold up the one-lead requests queued behind it on the event loop. Up to here
# (about 10 ms of scoring) the hop to a thread and back costs more than it saves.
INLINE_LEADS = 200


def _kind_error(kind: str, value: object) -> str | None:
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number or null, got {type(value).__name__} {value!r}"
        return None
    if not isinstance(value, str | bool):
        return f"must be text, true/false or null, got {type(value).__name__} {value!r}"
    return None


# Value types that are always right for an attribute kind (`_kind_error` has the full rules).
_FINE = {"number": frozenset({int, float, type(None)}), "category": frozenset({str, type(None)})}


def check_attributes(scorer: LeadScorer, leads: Sequence[LeadIn]) -> list[str]:
    """Raise 422 naming each lead and field whose value has the wrong type for its model
    attribute; return the attribute names no model knows (sorted)."""
    kinds = scorer.attribute_kinds
    problems: list[ErrorDetail] = []
    ignored: set[str] = set()
    for index, lead in enumerate(leads):
        for name, value in lead.attributes.items():
            kind = kinds.get(name)
            if kind is None:
                ignored.add(name)
                continue
            if type(value) in _FINE[kind]:  # the common case, without a call
                continue
            message = _kind_error(kind, value)
            if message is not None:
                location: list[str | int] = ["body", "leads", index, "attributes", name]
                problems.append(
                    ErrorDetail(location=location, message=message, lead_id=lead.lead_id)
                )
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ApiError(
            422,
            "invalid_attribute",
            f"lead {first.lead_id}: attribute {first.location[-1]!s} {first.message}{more}",
            details=problems[:100],
        )
    return sorted(ignored)


def score_leads(scorer: LeadScorer, leads: Sequence[LeadIn], explain: bool) -> LeadScores:
    now = datetime.now(UTC).replace(tzinfo=None)
    created = np.array([_epoch_ns(lead.created_at or now) for lead in leads], dtype=np.int64)
    records = [lead.attributes for lead in leads]
    return scorer.score(records, created=created, explain=explain)


def _epoch_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


def _finite(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else v for v in values.tolist()]


def _reasons(pair: tuple[list[Reason], list[Reason]], base: float, raw: float) -> dict[str, Any]:
    positive, negative = pair
    return {
        "positive": [r.as_dict() for r in positive],
        "negative": [r.as_dict() for r in negative],
        "base_value": base,
        "raw_score": raw,
    }


def result_records(leads: Sequence[LeadIn], scores: LeadScores) -> list[dict[str, Any]]:
    """One response record per lead, in request order."""
    columns = {
        "probability": scores.probability.tolist(),
        "score": scores.score.tolist(),
        "grade": scores.grade,
        "percentile": _finite(scores.percentile),
        "expected_days_to_close": _finite(scores.expected_days_to_close),
        "p_won_30d": _finite(scores.p_won_30d),
        "p_won_90d": _finite(scores.p_won_90d),
        "expected_value": _finite(scores.expected_value),
        "expected_value_p10": _finite(scores.expected_value_p10),
        "expected_value_p90": _finite(scores.expected_value_p90),
    }
    names = list(columns)
    rows = zip(*columns.values(), strict=True)
    records = [
        {"lead_id": lead.lead_id, **dict(zip(names, row, strict=True))}
        for lead, row in zip(leads, rows, strict=True)
    ]
    if scores.reasons is not None and scores.base_value is not None:
        raw = scores.raw_score if scores.raw_score is not None else scores.base_value
        for record, pair, base, total in zip(
            records, scores.reasons, scores.base_value.tolist(), raw.tolist(), strict=True
        ):
            record["reasons"] = _reasons(pair, base, total)
    return records


async def scored(
    scorer: LeadScorer, recorder: ScoreRecorder, request: ScoreRequest, ignored: list[str]
) -> bytes:
    """The JSON body answering a score request, or a rank request (`RankRequest`: best first
    by probability, ties in request order, cut at `top_k`), with the scores recorded and
    counted. `ignored`: what `check_attributes` returned for the request's leads."""
    leads = request.leads
    if len(leads) > INLINE_LEADS:
        scores = await run_in_threadpool(score_leads, scorer, leads, request.explain)
    else:
        scores = score_leads(scorer, leads, request.explain)
    records = result_records(leads, scores)
    probabilities = scores.probability.tolist()
    recorder.record_scores(
        [lead.lead_id for lead in leads],
        datetime.now(UTC),
        probabilities,
        scores.score.tolist(),
        scores.grade,
        scorer.versions.get("lead-conversion", ""),
    )
    endpoint = "rank" if isinstance(request, RankRequest) else "score"
    metrics().leads_scored.labels(endpoint).inc(len(leads))
    if isinstance(request, RankRequest):
        order = sorted(range(len(records)), key=lambda i: (-probabilities[i], i))
        if request.top_k is not None:
            order = order[: request.top_k]
        records = [{**records[i], "rank": position} for position, i in enumerate(order, start=1)]
    body = {
        "results": records,
        "models": scorer.versions,
        "horizon_days": scorer.horizon_days,
        "ignored_attributes": ignored,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
