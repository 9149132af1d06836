"""What a worker keeps between dashboard views: results that are expensive to compute (the
forecast engine runs for a second or more) and that a key of their inputs fully determines.

Keys hold the funnel's revision (the last ingest) and the champion versions, so a new ingest, a
pushed lead or a model reload is never served stale; entries leave oldest first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")
MAX_ENTRIES = 128


class ResultCache:
    """A small least-recently-used map from input keys to results, safe across threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, result) when `key` is kept, else (False, None)."""
        with self._lock:
            if key not in self._entries:
                return False, None
            self._entries.move_to_end(key)
            return True, self._entries[key]

    def put(self, key: Hashable, result: Any) -> None:
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        """The kept result, or `make()`'s, kept (two threads may both make it: no harm)."""
        found, result = self.get(key)
        if found:
            kept: T = result
            return kept
        made = make()
        self.put(key, made)
        return made


def worker_cache(request: Request) -> ResultCache:
    """The worker's cache, made on first use (on the event loop: no two requests make one)."""
    state = request.app.state
    cache: ResultCache | None = getattr(state, "dashboard_cache", None)
    if cache is None:
        cache = state.dashboard_cache = ResultCache()
    return cache
