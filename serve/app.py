"""The FastAPI app: `create_app()` wires settings, store, keys, models and routes.

Nothing happens at import; `funnelcast serve` runs `create_app` in each uvicorn worker (as a
factory), tests call it with their own settings. Models are loaded once per worker, in the
lifespan, and handed to routes through dependencies (serve/deps.py).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from scoring.api_keys import KeyRing
from scoring.predict_threads import set_predict_threads
from scoring.score_history import ScoreRecorder
from scoring.settings import Settings
from scoring.store import FunnelStore
from serve.asgi import replay
from serve.dashboard import router as dashboard_router
from serve.deps import known_query_parameters
from serve.errors import ApiError, ErrorDetail
from serve.fast_path import ScoreFastPath
from serve.metrics import MetricsMiddleware
from serve.routes import (
    attainment,
    forecast,
    goals,
    health,
    lead_events,
    leads,
    models,
    segments,
)
from serve.service import ScoringService

log = logging.getLogger("funnelcast.serve")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app for `settings` (default: from the environment)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        set_predict_threads(1)  # one request, one core: see scoring/predict_threads.py
        store = await run_in_threadpool(FunnelStore.open, settings.store_url)
        service = ScoringService(
            store.engine, settings.tracking_uri, settings.models_dir, settings.compiled_cache
        )
        await run_in_threadpool(service.load)
        app.state.store = store
        app.state.keyring = KeyRing(store.engine, settings.key_refresh_seconds)
        app.state.service = service
        app.state.recorder = ScoreRecorder(store.engine)
        watch = asyncio.create_task(service.watch(settings.reload_poll_seconds))
        # Everything loaded so far (libraries, models) lives as long as the worker: keep it out
        # of the garbage collector's full passes, which otherwise stall a request now and then.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            watch.cancel()
            app.state.recorder.close()
            store.close()

    app = FastAPI(
        title="funnelcast",
        version=importlib.metadata.version("funnelcast"),
        summary="Lead scores, ranks and reasons for CRM integrations; funnel KPIs and models.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks check on every request whether a provider is set up;
        # funnelcast reports through Prometheus (GET /metrics), so they stay off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ScoreFastPath, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    _install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(leads.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(lead_events.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(models.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(goals.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(attainment.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(forecast.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(segments.router, dependencies=[Depends(known_query_parameters)])
    app.include_router(dashboard_router)
    app.state.settings = settings  # goal status thresholds, for the attainment routes
    return app


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _lead_id_at(body: Any, location: tuple[Any, ...]) -> str | None:
    """The lead_id of the lead an error location points into (body/leads/<i>/...)."""
    if len(location) >= 3 and location[:2] == ("body", "leads") and isinstance(location[2], int):
        try:
            lead_id = body["leads"][location[2]]["lead_id"]
        except (KeyError, IndexError, TypeError):
            return None
        return lead_id if isinstance(lead_id, str) else None
    return None


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        malformed = [p for p in problems if p.get("type") == "json_invalid"]
        if malformed:
            context = malformed[0].get("ctx", {}).get("error", "")
            return error_response(
                ApiError(400, "malformed_json", f"the request body is not valid JSON: {context}")
            )
        if isinstance(getattr(error, "body", None), bytes) and not _is_json(request):
            # FastAPI reads a body as JSON only when the Content-Type says so (a CSRF guard);
            # otherwise pydantic sees bytes and says "Input should be a valid dictionary".
            return error_response(
                ApiError(
                    422,
                    "invalid_request",
                    "the body must be JSON sent with `Content-Type: application/json`",
                    details=[ErrorDetail(location=["body"], message="not sent as JSON")],
                )
            )
        body = getattr(error, "body", None)
        details = [
            ErrorDetail(
                location=[str(part) if not isinstance(part, int) else part for part in p["loc"]],
                message=str(p["msg"]),
                lead_id=_lead_id_at(body, tuple(p["loc"])),
            )
            for p in problems
        ]
        summary = "; ".join(
            f"{'/'.join(map(str, d.location))}: {d.message}"
            + (f" (lead {d.lead_id})" if d.lead_id else "")
            for d in details[:3]
        )
        more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
        return error_response(ApiError(422, "invalid_request", f"{summary}{more}", details=details))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        message = str(error.detail)
        if error.status_code == 400 and "parsing the body" in message:
            message = "the request body could not be parsed (malformed or too deeply nested JSON)"
        return error_response(
            ApiError(
                error.status_code,
                codes.get(error.status_code, "http_error"),
                message,
                headers=dict(error.headers or {}),
            )
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(
            ApiError(500, "internal_error", "an unexpected error occurred; see the server log")
        )


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`, declared (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            "payload_too_large",
            f"the request body is over {self.max_bytes} bytes; send fewer leads per request "
            "(or raise FUNNELCAST_MAX_BODY_BYTES)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await error_response(self._too_large())(scope, receive, send)
                    return
                break  # the server delivers no more than the declared length
        else:
            # No Content-Length (a chunked upload): read the body here, up to the limit, and
            # hand it on whole. Raising from inside the app instead would not work: FastAPI
            # turns any error while reading the body into a 400.
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if len(body) > self.max_bytes:
                    await error_response(self._too_large())(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            receive = replay(
                [{"type": "http.request", "body": bytes(body), "more_body": False}], receive
            )
        await self.app(scope, receive, send)
