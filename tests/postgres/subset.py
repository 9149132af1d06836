"""Which tests run against PostgreSQL as well as SQLite.

The modules below test the store, goals, API keys, the score history, goal checks and the API
routes that write to the store. Their tests that can open a store (those using a temporary
folder or an app) are parametrized by the module-scoped fixture `store_backend`:
`[sqlite]` as always, and `[postgresql]` (marked `postgres`), where every store opened from a
SQLite URL is a fresh PostgreSQL database (tests/postgres/server.py). `pytest -m postgres`
selects the PostgreSQL pass alone; `pytest -m "not postgres"` the SQLite suite alone.

Left out on purpose: schemathesis, forecasts and goal attainment (slow, and they only read the
store), and the tests below that are about SQLite itself.
"""

from __future__ import annotations

import pytest

MODULES = (
    "tests/code/test_store.py",
    "tests/code/test_goals.py",
    "tests/code/test_api_keys.py",
    "tests/code/test_score_history.py",
    "tests/code/test_goals_check.py",
    "tests/api/test_lead_events.py",
    "tests/api/test_goals.py",
    "tests/api/test_auth.py",
    "tests/api/test_dashboard_sessions.py",
    "tests/api/test_scores.py",
)

# Tests of those modules that check SQLite's own behaviour, with the reason.
SQLITE_ONLY = {
    "tests/code/test_store.py::test_sqlite_store_uses_wal": "SQLite's journal mode",
    "tests/code/test_api_keys.py::test_store_never_holds_the_plaintext_key": (
        "reads the SQLite files byte by byte"
    ),
    "tests/code/test_goals.py::test_the_goals_migration_downgrades_and_upgrades": (
        "drives Alembic on a SQLite engine of its own (tests/postgres does it on PostgreSQL)"
    ),
    "tests/code/test_score_history.py::test_rows_from_two_processes_all_arrive": (
        "its worker processes open the SQLite URL (tests/postgres does it on PostgreSQL)"
    ),
    "tests/code/test_score_history.py::test_a_locked_store_is_retried_then_the_loss_is_logged": (
        "SQLite's write lock"
    ),
    "tests/code/test_score_history.py::test_a_briefly_locked_store_loses_nothing": (
        "SQLite's write lock"
    ),
}

# Modules whose other tests only read a shared app: just these get the PostgreSQL variant.
ONLY = {
    "tests/api/test_scores.py": {"test_history_grows_with_each_score_and_shows_the_trend"},
}

# A test that uses one of these may open a store.
STORE_FIXTURES = frozenset({"tmp_path", "tmp_path_factory"})
# Module-scoped apps: parametrized too, so that the PostgreSQL variants get their own.
SHARED_APPS = ("shared_api", "shared_full_api")

BACKENDS = ("sqlite", "postgresql")


def backends(metafunc: pytest.Metafunc) -> tuple[str, ...] | None:
    """The backends a test runs on, or None when it is not in a PostgreSQL subset module."""
    module = metafunc.definition.nodeid.split("::", 1)[0]
    if module not in MODULES:
        return None
    name = metafunc.function.__name__
    wanted = ONLY.get(module)
    if (
        f"{module}::{name}" in SQLITE_ONLY
        or (wanted is not None and name not in wanted)
        or not STORE_FIXTURES & set(metafunc.fixturenames)
    ):
        # Still parametrized (one value): every test of the module then keys the module-scoped
        # fixtures alike, and none of them runs between the PostgreSQL ones on a torn-down store.
        return BACKENDS[:1]
    return BACKENDS


def parametrize(metafunc: pytest.Metafunc) -> None:
    """Parametrize `store_backend` (and the shared apps the test uses) by backend."""
    chosen = backends(metafunc)
    if chosen is None:
        return
    names = ["store_backend", *(n for n in SHARED_APPS if n in metafunc.fixturenames)]
    values = [
        pytest.param(
            *[backend] * len(names),
            id=backend,
            marks=[pytest.mark.postgres] if backend == "postgresql" else [],
        )
        for backend in chosen
    ]
    metafunc.parametrize(names, values, indirect=True, scope="module")
