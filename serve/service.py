"""What one API worker holds: the champions, the scorer built from them, and the reload watch.

A reload re-resolves every `champion` alias, loads what changed, and swaps the scorer in one
assignment: a request that already holds the old scorer finishes with it, the next one gets
the new, and none fails. `POST /v1/admin/reload` bumps a reload generation in the funnel store;
each worker polls that number (one indexed read a second) and reloads when it moves, so every
worker of `funnelcast serve --workers N` follows, whichever one took the request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool

from scoring.champions import Champions, compile_scorer, lead_scorer, load_champions
from scoring.lead_scores import LeadScorer
from scoring.service_state import reload_generation
from serve.metrics import show_versions

log = logging.getLogger("funnelcast.serve")

NO_MODEL = (
    "no lead-conversion champion is registered: train and promote one with "
    "`funnelcast train --promote` (or `make demo` for the synthetic funnel), then "
    "POST /v1/admin/reload"
)


@dataclass(frozen=True)
class Loaded:
    """One consistent set of models, swapped as a whole."""

    champions: Champions
    scorer: LeadScorer | None
    generation: int


class ScoringService:
    """The worker's models (see the module docstring)."""

    def __init__(
        self,
        engine: sa.Engine,
        tracking_uri: str,
        models_dir: Path,
        compiled_cache: Path | None = None,
    ) -> None:
        self.engine = engine
        self.tracking_uri = tracking_uri
        self.models_dir = models_dir
        self.compiled_cache = compiled_cache
        self.loaded = Loaded(Champions(), None, 0)
        self._lock = threading.Lock()

    def load(self) -> Loaded:
        """Resolve the aliases and load the champions (blocking; run it off the event loop)."""
        with self._lock:
            previous = self.loaded.champions.versions()
            generation = reload_generation(self.engine)
            champions = load_champions(self.tracking_uri, self.models_dir)
            scorer = lead_scorer(champions)
            # Compiled before the swap: a loaded set predicts one way for its whole life.
            started = time.perf_counter()
            compiled = compile_scorer(scorer, self.compiled_cache)
            if compiled:
                log.info(
                    "compiled trees: %s boosters in %.1f s", compiled, time.perf_counter() - started
                )
            loaded = Loaded(champions, scorer, generation)
            self.loaded = loaded  # one assignment: requests see the old set or the new
        versions = champions.versions()
        show_versions(previous, versions)
        log.info("models loaded (generation %s): %s", generation, versions or "none")
        for problem in champions.degraded:
            log.warning("%s", problem)
        return loaded

    async def watch(self, interval_seconds: float) -> None:
        """Reload whenever the store's reload generation moves (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                current = await run_in_threadpool(reload_generation, self.engine)
                if current != self.loaded.generation:
                    await run_in_threadpool(self.load)
            except Exception:  # a store hiccup must not end the watch
                log.exception("reload check failed; trying again in %s s", interval_seconds)

    def problems(self) -> list[str]:
        champions = self.loaded.champions
        missing = [f"{name}: {why}" for name, why in champions.missing.items()]
        return [*champions.degraded, *missing]
