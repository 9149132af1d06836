"""How many threads LightGBM may use to predict, set once per process by its entry point.

LightGBM predicts with every core by default (OpenMP). That suits one big batch on an idle
machine, and nothing else: an API worker scoring one lead per request gains nothing from
threads, and where processes share cores OpenMP's spinning threads made a one-row predict
20 times slower here (1.4 ms against 78 µs). The API sets 1 per worker; batch scoring sets
the cores it may use. Zero means LightGBM's default.
"""

from __future__ import annotations

from typing import Any

_threads = 0


def set_predict_threads(threads: int) -> None:
    """Threads for every LightGBM predict in this process from now on (0: LightGBM's default)."""
    global _threads
    if threads < 0:
        raise ValueError("threads must be 0 (LightGBM's default) or more")
    _threads = threads


def predict_options() -> dict[str, Any]:
    """Keyword arguments for `lightgbm.Booster.predict`."""
    return {"num_threads": _threads} if _threads else {}
