"""API keys as an admin and the API see them: create, list, revoke, authenticate, roles."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from funnelcast.cli import app as cli_app
from scoring.api_keys import (
    ROLES,
    Caller,
    KeyRing,
    create_key,
    list_keys,
    revoke_key,
    role_allows,
)
from scoring.errors import FunnelcastInputError
from scoring.store import FunnelStore
from serve.auth import Admin, Integration, Manager, Viewer
from serve.errors import ApiError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FunnelStore]:
    opened = FunnelStore.open(f"sqlite:///{tmp_path / 'funnel.db'}")
    yield opened
    opened.close()


@pytest.fixture
def engine(store: FunnelStore) -> sa.Engine:
    return store.engine


def key_queries(engine: sa.Engine) -> list[str]:
    """Statements that read the api_keys table, recorded as they run."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_keys" in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    return seen


# -- keys ---------------------------------------------------------------------------------------


def test_created_key_authenticates_with_its_role(engine: sa.Engine) -> None:
    key = create_key(engine, "manager", "dashboard")
    assert KeyRing(engine).authenticate(key) == Caller(name="dashboard", role="manager")


def test_unknown_and_empty_keys_do_not_authenticate(engine: sa.Engine) -> None:
    key = create_key(engine, "viewer", "wall")
    ring = KeyRing(engine)
    assert ring.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert ring.authenticate("") is None
    assert ring.authenticate(key.removeprefix("fck_")) is None


def test_keys_are_long_random_and_distinct(engine: sa.Engine) -> None:
    first = create_key(engine, "viewer", "one")
    second = create_key(engine, "viewer", "two")
    assert first != second
    for key in (first, second):
        assert re.fullmatch(r"fck_[A-Za-z0-9_-]{43,}", key), key


def test_store_never_holds_the_plaintext_key(tmp_path: Path) -> None:
    store = FunnelStore.open(f"sqlite:///{tmp_path / 'funnel.db'}")
    key = create_key(store.engine, "admin", "ops")
    secret_part = key[12:]
    with store.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT * FROM api_keys").all()
    store.close()
    assert all(key not in str(value) for row in stored for value in row)
    files = list(tmp_path.glob("funnel.db*"))  # the database and its WAL
    assert files
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data
        assert secret_part[:16].encode() not in data


def test_create_refuses_unknown_role_empty_and_duplicate_names(engine: sa.Engine) -> None:
    with pytest.raises(FunnelcastInputError, match=r"unknown role 'owner'.*viewer, manager"):
        create_key(engine, "owner", "x")
    with pytest.raises(FunnelcastInputError, match="needs a name"):
        create_key(engine, "viewer", "   ")
    create_key(engine, "viewer", "crm")
    with pytest.raises(FunnelcastInputError, match="'crm' already exists"):
        create_key(engine, "admin", "crm")
    assert [k.name for k in list_keys(engine)] == ["crm"]


def test_list_shows_names_roles_prefixes_never_keys(engine: sa.Engine) -> None:
    key = create_key(engine, "integration", "crm-sync")
    (listed,) = list_keys(engine)
    assert (listed.name, listed.role, listed.revoked) == ("crm-sync", "integration", False)
    assert key.startswith(listed.prefix)
    assert len(listed.prefix) < 16
    assert key not in repr(listed)


def test_revoked_key_stops_working_within_the_refresh_interval(engine: sa.Engine) -> None:
    clock = FakeClock()
    ring = KeyRing(engine, refresh_seconds=5.0, clock=clock)
    key = create_key(engine, "integration", "crm")
    assert ring.authenticate(key) == Caller("crm", "integration")
    revoke_key(engine, "crm")
    clock.now += 5.0
    assert ring.authenticate(key) is None  # a hit still refreshes once the copy is stale
    assert list_keys(engine)[0].revoked


def test_key_created_after_start_works_within_the_refresh_interval(engine: sa.Engine) -> None:
    clock = FakeClock()
    ring = KeyRing(engine, refresh_seconds=5.0, clock=clock)
    assert ring.authenticate("fck_nothing-yet") is None
    key = create_key(engine, "viewer", "late")
    clock.now += 5.0
    assert ring.authenticate(key) == Caller("late", "viewer")


def test_revoke_by_prefix_or_pasted_key_and_clear_errors(engine: sa.Engine) -> None:
    first = create_key(engine, "viewer", "a")
    second = create_key(engine, "viewer", "b")
    assert revoke_key(engine, first[:12]).name == "a"
    assert revoke_key(engine, second).name == "b"
    with pytest.raises(FunnelcastInputError, match="already revoked"):
        revoke_key(engine, "a")
    with pytest.raises(FunnelcastInputError, match="no key matches 'nobody'"):
        revoke_key(engine, "nobody")


def test_many_misses_read_the_store_once_per_interval(engine: sa.Engine) -> None:
    clock = FakeClock()
    ring = KeyRing(engine, refresh_seconds=5.0, clock=clock)
    queries = key_queries(engine)
    for attempt in range(1000):
        assert ring.authenticate(f"fck_guess-{attempt}") is None
    assert len(queries) == 1
    clock.now += 4.9
    for attempt in range(1000):
        ring.authenticate(f"fck_guess-{attempt}")
    assert len(queries) == 1
    clock.now += 0.1
    for attempt in range(1000):
        ring.authenticate(f"fck_guess-{attempt}")
    assert len(queries) == 2


def test_keyring_repr_shows_no_keys_or_hashes(engine: sa.Engine) -> None:
    key = create_key(engine, "admin", "root")
    ring = KeyRing(engine)
    ring.authenticate(key)
    assert "fck_" not in repr(ring)
    assert not re.search(r"[0-9a-f]{16}", repr(ring))


# -- roles --------------------------------------------------------------------------------------

ALLOWED = {
    ("viewer", "viewer"),
    ("manager", "viewer"),
    ("manager", "manager"),
    ("admin", "viewer"),
    ("admin", "manager"),
    ("admin", "admin"),
    ("integration", "integration"),
}


@pytest.mark.parametrize("held", ROLES)
@pytest.mark.parametrize("needed", ROLES)
def test_role_allows(held: str, needed: str) -> None:
    assert role_allows(held, needed) == ((held, needed) in ALLOWED)


def test_unknown_roles_allow_nothing() -> None:
    assert not role_allows("root", "root")
    assert not role_allows("admin", "root")


# -- the CLI ------------------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_create_prints_only_the_key_and_list_never_shows_it(home: Path) -> None:
    code, stdout, stderr = run("keys", "create", "--role", "integration", "--name", "crm")
    assert code == 0, stderr
    key = stdout.strip()
    assert stdout == key + "\n"
    assert re.fullmatch(r"fck_[A-Za-z0-9_-]{43,}", key)
    assert "not shown again" in stderr
    assert key not in stderr

    code, stdout, stderr = run("keys", "list")
    assert code == 0, stderr
    assert "crm" in stdout and "integration" in stdout
    assert key[:12] in stdout
    assert key not in stdout + stderr
    assert key[12:20] not in stdout + stderr

    store = FunnelStore.open(f"sqlite:///{home / 'funnel.db'}")
    try:
        assert KeyRing(store.engine).authenticate(key) == Caller("crm", "integration")
    finally:
        store.close()


def test_cli_revoke_then_list_marks_it_revoked(home: Path) -> None:
    run("keys", "create", "--role", "viewer", "--name", "wall")
    code, stdout, stderr = run("keys", "revoke", "wall")
    assert code == 0, stderr
    assert "revoked" in stdout
    _, listed, _ = run("keys", "list")
    assert "UTC" in listed.split("wall", 1)[1]  # the revoked column is filled


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "--role", "owner", "--name", "x"), "unknown role 'owner'"),
        (("create", "--role", "viewer", "--name", "taken"), "already exists"),
        (("revoke", "nobody"), "no key matches 'nobody'"),
    ],
)
def test_cli_bad_input_exits_2_with_a_clear_message(
    home: Path, args: tuple[str, ...], message: str
) -> None:
    run("keys", "create", "--role", "viewer", "--name", "taken")
    code, stdout, stderr = run("keys", *args)
    assert code == 2
    assert message in stderr
    assert stdout == ""


# -- the API dependency -------------------------------------------------------------------------


@pytest.fixture
def api(engine: sa.Engine) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.keyring = KeyRing(engine)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.get("/read")
    async def read(caller: Viewer) -> dict[str, str]:
        return {"name": caller.name, "role": caller.role}

    @app.get("/goals")
    async def goals(caller: Manager) -> dict[str, str]:
        return {"name": caller.name}

    @app.get("/reload")
    async def reload(caller: Admin) -> dict[str, str]:
        return {"name": caller.name}

    @app.get("/score")
    async def score(caller: Integration) -> dict[str, str]:
        return {"name": caller.name}

    with TestClient(app) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_api_without_a_key_is_401_with_a_bearer_challenge(api: TestClient) -> None:
    response = api.get("/read")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert api.get("/read", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401


def test_api_with_a_wrong_or_revoked_key_is_401(
    api: TestClient, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = create_key(engine, "viewer", "wall")
    wrong = key[:-4] + "AAAA"
    response = api.get("/read", headers=bearer(wrong))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert wrong not in response.text
    revoke_key(engine, "wall")
    api.app.state.keyring.refresh(force=True)  # type: ignore[attr-defined]
    response = api.get("/read", headers=bearer(key))
    assert response.status_code == 401
    assert key not in response.text and key not in caplog.text
    assert wrong not in caplog.text


def test_api_wrong_role_is_403_and_names_both_roles(
    api: TestClient, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = create_key(engine, "viewer", "wall")
    api.app.state.keyring.refresh(force=True)  # type: ignore[attr-defined]
    response = api.get("/goals", headers=bearer(key))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert "needs role manager" in error["message"] and "role viewer" in error["message"]
    assert key not in response.text and key not in caplog.text


def test_api_right_roles_are_200(api: TestClient, engine: sa.Engine) -> None:
    admin = create_key(engine, "admin", "ops")
    crm = create_key(engine, "integration", "crm")
    api.app.state.keyring.refresh(force=True)  # type: ignore[attr-defined]
    assert api.get("/read", headers=bearer(admin)).json() == {"name": "ops", "role": "admin"}
    assert api.get("/reload", headers=bearer(admin)).status_code == 200
    assert api.get("/score", headers=bearer(crm)).status_code == 200
    assert api.get("/score", headers=bearer(admin)).status_code == 403
    assert api.get("/read", headers=bearer(crm)).status_code == 403


def test_api_documents_the_bearer_scheme(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert schema["paths"]["/read"]["get"]["security"]
