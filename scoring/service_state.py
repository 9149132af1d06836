"""Small counters the API's worker processes share through the store.

The reload generation goes up by one each time an admin asks the API to reload its models; every
worker polls it (one primary-key read) and reloads when it sees a number it has not loaded.
"""

from __future__ import annotations

import sqlalchemy as sa

from scoring import store_schema as schema

RELOAD_GENERATION = "reload_generation"
_INSERT_ATTEMPTS = 3


def reload_generation(engine: sa.Engine) -> int:
    """The current reload generation; 0 when no reload was ever asked for."""
    return _read(engine, RELOAD_GENERATION)


def bump_reload_generation(engine: sa.Engine) -> int:
    """Add one to the reload generation and return the new value; safe across processes."""
    return _increment(engine, RELOAD_GENERATION)


def _read(engine: sa.Engine, key: str) -> int:
    table = schema.service_state
    with engine.connect() as connection:
        value = connection.execute(sa.select(table.c.value).where(table.c.key == key)).scalar()
    return int(value) if value is not None else 0


def _increment(engine: sa.Engine, key: str) -> int:
    table = schema.service_state
    for _ in range(_INSERT_ATTEMPTS):
        try:
            with engine.begin() as connection:
                # Writing first takes the lock (SQLite's write lock, PostgreSQL's row lock), so
                # the read below sees this transaction's own increment and no one else's.
                updated = connection.execute(
                    table.update().where(table.c.key == key).values(value=table.c.value + 1)
                ).rowcount
                if updated == 0:
                    connection.execute(table.insert().values(key=key, value=1))
                    return 1
                return int(
                    connection.execute(
                        sa.select(table.c.value).where(table.c.key == key)
                    ).scalar_one()
                )
        except sa.exc.IntegrityError:
            continue  # another process inserted the first row meanwhile; now it is an update
    raise RuntimeError(f"could not increment service state {key!r}")
