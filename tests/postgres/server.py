"""The PostgreSQL pass: fresh databases on the test server, and stores redirected to them.

`make test` starts a throwaway cluster (tests/postgres/cluster.sh) and exports its URL as
FUNNELCAST_TEST_POSTGRES_URL. Each test of the PostgreSQL subset runs its own code unchanged:
every funnel store it (or the product under test) opens from a SQLite URL is opened on a fresh
PostgreSQL database instead, one per SQLite file, created from a template in a few tens of
milliseconds. A template holds either an empty migrated store or, when the SQLite file already
holds a store (the API tests' trained home), a copy of that store's rows.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from scoring import store as store_module
from scoring import store_schema
from scoring.store import FunnelStore

SERVER_ENV = "FUNNELCAST_TEST_POSTGRES_URL"
_create_store_engine = store_module.create_store_engine


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """The test server: creates (and drops) the databases the PostgreSQL pass uses."""

    def __init__(self, url: str) -> None:
        self.url = sa.engine.make_url(url)
        self._admin = sa.create_engine(
            self.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 5},
        )
        # Unique per pytest process, so that two runs against one server do not collide.
        self._prefix = f"fc_{os.getpid()}_"
        self._numbers = itertools.count()
        self._empty: str | None = None
        self._seeded: dict[str, str] = {}

    def check(self) -> None:
        """Raise unless the server answers."""
        with self._admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def new_database(self, template: str | None = None) -> str:
        """A new database: a copy of `template`, or blank (no tables) without one."""
        name = f"{self._prefix}{next(self._numbers)}"
        source = f" TEMPLATE {_quoted(template)}" if template else " TEMPLATE template0"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {_quoted(name)}{source}")
        return name

    def drop(self, database: str) -> None:
        """Drop a database, ending whatever connections an unclosed engine still holds."""
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quoted(database)} WITH (FORCE)")

    def empty_store(self) -> str:
        """The template of an empty store: migrated by `FunnelStore.open`, as at any start."""
        if self._empty is None:
            name = self.new_database()
            FunnelStore.open(self.url_for(name)).close()
            self._empty = name
        return self._empty

    def store_like(self, sqlite_file: Path) -> str:
        """The template of a store holding the rows of this SQLite store (one per content)."""
        digest = hashlib.sha256(sqlite_file.read_bytes()).hexdigest()
        if digest not in self._seeded:
            name = self.new_database(self.empty_store())
            copy_store(sqlite_file, self.url_for(name))
            self._seeded[digest] = name
        return self._seeded[digest]

    def close(self) -> None:
        for name in [*self._seeded.values(), *([self._empty] if self._empty else [])]:
            self.drop(name)
        self._admin.dispose()


def holds_store(sqlite_file: Path) -> bool:
    """Whether a SQLite file exists and holds a migrated funnel store."""
    if not sqlite_file.is_file() or sqlite_file.stat().st_size == 0:
        return False
    engine = sa.create_engine(f"sqlite:///{sqlite_file}", poolclass=NullPool)
    try:
        return sa.inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def copy_store(sqlite_file: Path, url: str) -> None:
    """Copy every row of a SQLite store into the (empty, migrated) store at `url`."""
    source = sa.create_engine(f"sqlite:///{sqlite_file}", poolclass=NullPool)
    target = sa.create_engine(url, poolclass=NullPool)
    try:
        present = set(sa.inspect(source).get_table_names())
        with source.connect() as reading, target.begin() as writing:
            for table in store_schema.metadata.sorted_tables:  # parents before children
                if table.name not in present:
                    continue
                rows = [dict(row) for row in reading.execute(sa.select(table)).mappings()]
                if rows:
                    writing.execute(table.insert(), rows)
                if "id" in table.c:  # rows came with their ids: move the sequence past them
                    writing.execute(
                        sa.text(
                            "SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                            f"COALESCE(MAX(id), 0) + 1, false) FROM {_quoted(table.name)}"
                        ),
                        {"table": table.name},
                    )
    finally:
        source.dispose()
        target.dispose()


class StoreRedirect:
    """Opens every store a test opens from a SQLite URL on a PostgreSQL database instead.

    The same SQLite file always maps to the same database, so a test that writes through the
    API and reads through its own `FunnelStore.open(settings.store_url)` sees one store.
    """

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.databases: dict[Path, str] = {}

    def install(self, patch: pytest.MonkeyPatch, module: ModuleType | None) -> None:
        patch.setattr(store_module, "create_store_engine", self.create_store_engine)
        # A test module that imported the function by name gets the redirect too.
        if module is not None and getattr(module, "create_store_engine", None) is (
            _create_store_engine
        ):
            patch.setattr(module, "create_store_engine", self.create_store_engine)

    def create_store_engine(self, url: str) -> sa.Engine:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return _create_store_engine(url)
        return _create_store_engine(self.server.url_for(self.database_for(Path(parsed.database))))

    def database_for(self, sqlite_file: Path) -> str:
        sqlite_file = sqlite_file.resolve()
        name = self.databases.get(sqlite_file)
        if name is None:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)  # as the SQLite engine does
            template = (
                self.server.store_like(sqlite_file)
                if holds_store(sqlite_file)
                else self.server.empty_store()
            )
            name = self.databases[sqlite_file] = self.server.new_database(template)
        return name

    def drop_all(self) -> None:
        for name in self.databases.values():
            self.server.drop(name)
        self.databases.clear()
