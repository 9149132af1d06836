"""The models a worker serves, and the admin reload that makes every worker re-resolve them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from scoring.service_state import bump_reload_generation
from serve.auth import Admin, Viewer
from serve.deps import Engine, Service
from serve.errors import error_responses
from serve.schemas import ModelOut, ModelsResponse, ReloadResponse

AUTH_ERRORS = error_responses(401, 403)

router = APIRouter(prefix="/v1", tags=["models"], responses=AUTH_ERRORS)


@router.get("/models", response_model=ModelsResponse, summary="Loaded model versions")
async def list_models(caller: Viewer, service: Service) -> ModelsResponse:
    loaded = service.loaded
    champions = loaded.champions
    return ModelsResponse(
        models=[
            ModelOut(
                name=name,
                version=model.record.version,
                source=model.source,
                run_id=model.record.run_id,
                registered_at=model.record.registered_at,
                metrics=model.record.metrics,
                training=model.record.tags,
            )
            for name, model in sorted(champions.models.items())
        ],
        missing=champions.missing,
        degraded=champions.degraded,
        reload_generation=loaded.generation,
    )


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Every worker re-resolves the champion aliases and swaps its models",
)
async def reload_models(caller: Admin, service: Service, engine: Engine) -> ReloadResponse:
    previous = service.loaded.champions.versions()
    generation = await run_in_threadpool(bump_reload_generation, engine)
    loaded = await run_in_threadpool(service.load)  # this worker now; the others within a poll
    current = loaded.champions.versions()
    changed = {
        n: f"{previous.get(n, '-')} -> {v}" for n, v in current.items() if previous.get(n) != v
    }
    message = "models reloaded" + (f": {changed}" if changed else "; no version changed")
    if loaded.champions.degraded:  # the registry did not answer: say so, not just "reloaded"
        message += "; degraded: " + "; ".join(loaded.champions.degraded)
    return ReloadResponse(reload_generation=generation, models=current, message=message)
