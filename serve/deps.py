"""Dependencies routes declare: the worker's models, the store, the score recorder.

They are `async def` although they await nothing: FastAPI runs a plain `def` dependency on a
worker thread, and three thread hops per request cost more than scoring one lead.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request

from scoring.score_history import ScoreRecorder
from scoring.store import FunnelStore
from serve.errors import ApiError
from serve.service import NO_MODEL, Loaded, ScoringService


async def _service(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.service
    return service


async def _loaded_with_scorer(request: Request) -> Loaded:
    """The worker's current model set, taken once per request (a reload never changes it
    under a running request); 503 when there is no lead-conversion model."""
    service: ScoringService = request.app.state.service
    loaded = service.loaded
    if loaded.scorer is None:
        raise ApiError(503, "no_model", NO_MODEL)
    return loaded


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
ScoringModels = Annotated[Loaded, Depends(_loaded_with_scorer)]
Store = Annotated[FunnelStore, Depends(_store)]
Engine = Annotated[sa.Engine, Depends(_engine)]
Recorder = Annotated[ScoreRecorder, Depends(_recorder)]
