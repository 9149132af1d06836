"""Dependencies routes declare: the worker's models, the store, the score recorder, the
forecast engine's inputs and the app's settings.

They are `async def` although they await nothing: FastAPI runs a plain `def` dependency on a
worker thread, and three thread hops per request cost more than scoring one lead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from pydantic import BaseModel

from scoring import store_schema as schema
from scoring.errors import FunnelcastInputError
from scoring.forecast import ForecastModels, forecast_models
from scoring.funnel import Funnel
from scoring.lead_scores import LeadScorer
from scoring.score_history import ScoreRecorder
from scoring.settings import Settings
from scoring.store import FunnelStore
from serve.errors import ApiError, ErrorDetail
from serve.service import NO_MODEL, ScoringService


async def _service(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.service
    return service


@dataclass(frozen=True)
class ScoringContext:
    """What the score and rank routes need: the worker's current lead scorer (taken once per
    request: a reload never changes it under a running request) and its recorder."""

    scorer: LeadScorer
    recorder: ScoreRecorder


async def _scoring_context(request: Request) -> ScoringContext:
    """The scoring context in one dependency (each one FastAPI resolves costs tens of
    microseconds on a one-lead request); 503 when there is no lead-conversion model."""
    service: ScoringService = request.app.state.service
    scorer = service.loaded.scorer
    if scorer is None:
        raise ApiError(503, "no_model", NO_MODEL)
    return ScoringContext(scorer, request.app.state.recorder)


async def _store(request: Request) -> FunnelStore:
    store: FunnelStore = request.app.state.store
    return store


async def _engine(request: Request) -> sa.Engine:
    store: FunnelStore = request.app.state.store
    return store.engine


async def _recorder(request: Request) -> ScoreRecorder:
    recorder: ScoreRecorder = request.app.state.recorder
    return recorder


Service = Annotated[ScoringService, Depends(_service)]
Store = Annotated[FunnelStore, Depends(_store)]
Engine = Annotated[sa.Engine, Depends(_engine)]
Recorder = Annotated[ScoreRecorder, Depends(_recorder)]
Scoring = Annotated[ScoringContext, Depends(_scoring_context)]


NO_FORECAST_MODELS = (
    "forecasts need champions of lead-conversion and deal-cycle (GET /v1/models lists what is "
    "loaded): train and promote them with `funnelcast train --promote` (or `make demo` for the "
    "synthetic funnel), then POST /v1/admin/reload"
)


class FunnelCache:
    """The stored funnel, loaded once per worker and again after every ingest or push.

    Every write to the funnel (`funnelcast ingest`, a lead pushed through the API, from any
    process) goes through `FunnelStore.ingest`, which adds a row to `ingest_runs`: the largest
    id there (one primary-key read) says whether the copy in memory is still the stored funnel.
    The engine only reads the funnel, so requests share the copy.
    """

    def __init__(self, store: FunnelStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._funnel: Funnel | None = None

    def revision(self) -> int | None:
        """The id of the last ingest; None while nothing was ever ingested."""
        with self._store.engine.connect() as connection:
            latest = connection.execute(sa.select(sa.func.max(schema.ingest_runs.c.id))).scalar()
        return None if latest is None else int(latest)

    def get(self) -> Funnel:
        """The current funnel (blocking: run it off the event loop).

        Raises:
            FunnelcastInputError: the store holds no funnel yet.
        """
        revision = self.revision()
        with self._lock:  # one load when several requests find the copy stale together
            if self._funnel is None or revision != self._revision:
                self._funnel = self._store.load()
                self._revision = revision
            return self._funnel

    def dated(self) -> Funnel:
        """`get()`, or a 503 saying what to load when the store is empty or has no dates."""
        try:
            funnel = self.get()
        except FunnelcastInputError as error:
            raise ApiError(503, "no_data", str(error)) from None
        if not funnel.dated:
            raise ApiError(
                503,
                "no_data",
                "forecasts need dated data and the stored data set has no dates: ingest a "
                "dated funnel (`funnelcast ingest`), then train and promote "
                "(`funnelcast train --promote`)",
            )
        return funnel


async def _funnels(request: Request) -> FunnelCache:
    """The worker's funnel cache, made on first use (dependencies run on the event loop, one at
    a time, so two requests cannot both make one)."""
    state = request.app.state
    cache: FunnelCache | None = getattr(state, "funnel_cache", None)
    if cache is None:
        cache = state.funnel_cache = FunnelCache(state.store)
    return cache


async def _forecast_models(request: Request) -> ForecastModels | None:
    """The forecast engine's champions from the worker's current model set (so a reload swaps
    them); None without a lead-conversion or deal-cycle champion."""
    service: ScoringService = request.app.state.service
    champions = service.loaded.champions
    loaded = {name: model.model for name, model in champions.models.items()}
    try:
        return forecast_models(loaded, champions.versions())
    except FunnelcastInputError:
        return None


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Funnels = Annotated[FunnelCache, Depends(_funnels)]
ForecastChampions = Annotated[ForecastModels | None, Depends(_forecast_models)]
AppSettings = Annotated[Settings, Depends(_settings)]


def single_valued(*repeatable: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency that refuses a query parameter given twice (`?owner=a&owner=b`), those in
    `repeatable` apart: FastAPI would silently keep the last value."""

    async def each_parameter_once(request: Request) -> None:
        seen: set[str] = set()
        for name, _ in request.query_params.multi_items():
            if name in seen and name not in repeatable:
                message = "given more than once; it takes one value"
                raise ApiError(
                    422,
                    "invalid_request",
                    f"{name}: {message}",
                    details=[ErrorDetail(location=["query", name], message=message)],
                )
            seen.add(name)

    return each_parameter_once


_QUERY_NAMES: dict[int, list[str]] = {}


def _query_names(dependant: Any) -> list[str]:
    """The query parameter names an endpoint takes, through its dependencies and parameter
    models (`Annotated[Model, Query()]`)."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        for param in current.query_params:
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names.update(f.alias or n for n, f in annotation.model_fields.items())
            else:
                names.add(param.alias)
        stack.extend(current.dependencies)
    return sorted(names)


async def known_query_parameters(request: Request) -> None:
    """A 422 for a query parameter the endpoint does not take (a typo such as `ownr` would
    otherwise be ignored without a word, and the caller would get every goal)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    given = {name for name, _ in request.query_params.multi_items()}
    if dependant is None or not given:
        return
    taken = _QUERY_NAMES.get(id(dependant))
    if taken is None:
        taken = _QUERY_NAMES[id(dependant)] = _query_names(dependant)
    unknown = sorted(given - set(taken))
    if unknown:
        offer = f"it takes {', '.join(taken)}" if taken else "it takes none"
        message = f"not a parameter of this endpoint; {offer}"
        raise ApiError(
            422,
            "invalid_request",
            f"{unknown[0] or '(empty name)'}: {message}",
            details=[ErrorDetail(location=["query", name], message=message) for name in unknown],
        )
