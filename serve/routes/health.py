"""Liveness, readiness and Prometheus metrics (no key needed: probes and scrapers)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from serve.deps import Service
from serve.metrics import exposition
from serve.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Models loaded? 200 ready or degraded (serving local copies), 503 not ready",
    responses={503: {"model": Readiness, "description": "No lead-conversion model loaded"}},
)
async def readyz(service: Service) -> JSONResponse:
    loaded = service.loaded
    problems = service.problems()
    status: Literal["ready", "degraded", "not_ready"]
    if loaded.scorer is None:
        status, code = "not_ready", 503
    elif loaded.champions.degraded:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    body = Readiness(status=status, models=loaded.champions.versions(), problems=problems)
    return JSONResponse(body.model_dump(), status_code=code)


@router.get(
    "/metrics",
    summary="Prometheus metrics over every worker",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def prometheus_metrics() -> Response:
    payload, content_type = exposition()
    return Response(payload, media_type=content_type)
