"""Prometheus metrics, correct across the workers of `funnelcast serve --workers N`.

`funnelcast serve` points `PROMETHEUS_MULTIPROC_DIR` at an empty folder before the workers
start; each worker then writes its samples to memory-mapped files there, and `/metrics` (on
whichever worker answers) adds up every worker's files (the client's multiprocess mode). In a
single process (tests, `TestClient`) the ordinary in-memory registry is used.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass(frozen=True)
class Metrics:
    requests: Counter
    latency: Histogram
    errors: Counter
    leads_scored: Counter
    model_version: Gauge


@functools.cache
def metrics() -> Metrics:
    """The process's metrics, created once (Prometheus forbids registering a name twice)."""
    return Metrics(
        requests=Counter(
            "funnelcast_requests", "HTTP requests by route, method and status",
            ["route", "method", "status"],
        ),
        latency=Histogram(
            "funnelcast_request_seconds", "Request latency by route", ["route"],
            buckets=_LATENCY_BUCKETS,
        ),
        errors=Counter(
            "funnelcast_errors", "Error responses (status >= 400) by route and status",
            ["route", "status"],
        ),
        leads_scored=Counter("funnelcast_leads_scored", "Leads scored, by endpoint", ["endpoint"]),
        model_version=Gauge(
            "funnelcast_model_version", "1 for each model version a live worker serves",
            ["model", "version"], multiprocess_mode="livemax",
        ),
    )  # fmt: skip


def show_versions(previous: dict[str, str], current: dict[str, str]) -> None:
    """Flip the version gauge from the versions served before to the ones served now."""
    gauge = metrics().model_version
    for name, version in previous.items():
        if current.get(name) != version:
            gauge.labels(name, version).set(0)
    for name, version in current.items():
        gauge.labels(name, version).set(1)


def exposition() -> tuple[bytes, str]:
    """The text `/metrics` answers with, over every worker when in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every request by its route template (`/v1/leads/{lead_id}/scores`,
    never the raw path, so label values stay few). Plain ASGI: no per-request task overhead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cache: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            request_count, latency, errors = self._children(template, scope["method"], status)
            request_count.inc()
            latency.observe(time.perf_counter() - started)
            if errors is not None:
                errors.inc()

    def _children(self, route: str, method: str, status: int) -> tuple[Any, Any, Any]:
        """The labelled series of one route, method and status (looked up once: `labels()`
        costs more than the increment)."""
        key = (route, method, status)
        found = self._cache.get(key)
        if found is None:
            recorded = metrics()
            found = (
                recorded.requests.labels(route, method, str(status)),
                recorded.latency.labels(route),
                recorded.errors.labels(route, str(status)) if status >= 400 else None,
            )
            self._cache[key] = found
        return found
