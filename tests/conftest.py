"""Shared fixtures: an isolated FUNNELCAST_HOME, and the real data sets when configured."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import subset as postgres_subset
from tests.postgres.server import SERVER_ENV, PostgresServer, StoreRedirect
from tests.realdata import DATA_FOLDERS

DATA_ENV = "FUNNELCAST_DATA_DIR"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FUNNELCAST_HOME, with no database URL leaking in from the environment."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("FUNNELCAST_HOME", str(folder))
    monkeypatch.delenv("FUNNELCAST_DATABASE_URL", raising=False)
    # `mlflow.set_tracking_uri` exports this for the whole process: a fresh home must not see
    # the registry of an earlier one.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder holding ../shared/data's data sets.

    Skips when FUNNELCAST_DATA_DIR is unset; fails when it is set but the data is not there, so
    CI (where `make test` sets it) cannot go green by skipping.
    """
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; `make test` sets it to ../shared/data when present")
    folder = Path(value)
    missing = [name for name in DATA_FOLDERS.values() if not (folder / name).is_dir()]
    if missing:
        pytest.fail(f"{DATA_ENV}={folder} is set but lacks {missing}")
    return folder


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The server in FUNNELCAST_TEST_POSTGRES_URL (`make test` starts a throwaway one).

    Skips when the variable is unset; fails when it is set and the server does not answer, so a
    PostgreSQL pass that was asked for cannot go green by skipping.
    """
    url = os.environ.get(SERVER_ENV)
    if not url:
        pytest.skip(f"{SERVER_ENV} is not set; `make test` starts a PostgreSQL cluster and sets it")
    server = PostgresServer(url)
    try:
        server.check()
    except Exception as error:
        pytest.fail(f"{SERVER_ENV} is set but the server does not answer: {error}")
    yield server
    server.close()


@pytest.fixture(scope="module", autouse=True)
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """`sqlite`, or `postgresql` for the PostgreSQL variants of tests/postgres/subset.py's tests:
    then every store opened from a SQLite URL is a fresh database on `postgres_server`."""
    backend: str = getattr(request, "param", "sqlite")
    if backend != "postgresql":
        yield backend
        return
    redirect = StoreRedirect(request.getfixturevalue("postgres_server"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            redirect.install(patch, getattr(request, "module", None))
            yield backend
    finally:
        redirect.drop_all()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    postgres_subset.parametrize(metafunc)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a server to run them on, the PostgreSQL variants are left out (one line in the
    header says so, rather than a skip line per test)."""
    if os.environ.get(SERVER_ENV):
        return
    left_out = [item for item in items if item.get_closest_marker("postgres") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.get_closest_marker("postgres") is None]


def pytest_report_header() -> str:
    if os.environ.get(SERVER_ENV):
        return f"PostgreSQL pass: on the server in {SERVER_ENV}"
    return f"PostgreSQL pass: left out ({SERVER_ENV} is not set; `make test` sets it)"


def pytest_configure(config: pytest.Config) -> None:
    """One cache of compiled trees for the whole session (`scoring.compiled_trees`): the many
    homes the tests build hold the same few models, and the cache is keyed by their content."""
    if "FUNNELCAST_COMPILED_TREES_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="funnelcast-trees-")
        os.environ["FUNNELCAST_COMPILED_TREES_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
