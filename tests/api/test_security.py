"""Role boundaries over every route of the OpenAPI schema, and API keys kept out of every log.

The routes come from the app's own OpenAPI document, so a new route is checked the day it is
added: `allowed_roles` says, from DESIGN §1, which roles may call it (viewer ⊂ manager ⊂ admin;
integration separate), and a route no rule covers fails until someone decides.
"""

from __future__ import annotations

import logging
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from scoring.api_keys import PREFIX_LENGTH, ROLES, create_key, revoke_key
from scoring.settings import Settings
from scoring.store import FunnelStore
from serve.app import create_app
from tests.api.conftest import (
    Api,
    TrainedHome,
    clean_environment,
    copy_home,
    home_settings,
    module_api,
)

READERS = frozenset({"viewer", "manager", "admin"})
MANAGERS = frozenset({"manager", "admin"})
ADMINS = frozenset({"admin"})
INTEGRATIONS = frozenset({"integration"})
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapers
METHODS = ("get", "put", "post", "delete", "patch")


def allowed_roles(method: str, path: str) -> frozenset[str] | None:
    """The roles DESIGN §1 lets call `method path`; None: no key needed."""
    if path in PUBLIC and method.upper() == "GET":
        return None
    unknown = AssertionError(f"{method.upper()} {path}: no rule of DESIGN §1 says who may call it")
    if not path.startswith("/v1/"):
        raise unknown
    if path.startswith("/v1/leads"):  # score, rank, push leads and events
        return INTEGRATIONS
    if path.startswith(("/v1/admin/", "/v1/keys")):  # model reload and keys
        return ADMINS
    if method.upper() == "GET":  # KPIs, forecasts, goals, models: anyone who reads
        return READERS
    if path.startswith("/v1/goals"):  # goal writes
        return MANAGERS
    raise unknown


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation of an OpenAPI document."""
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def concrete_path(path: str, operation: dict[str, Any]) -> str:
    """`path` with each parameter filled in with a value of its type."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = "1" if parameter["schema"].get("type") == "integer" else "L0000001"
            path = path.replace("{" + parameter["name"] + "}", value)
    return path


# Creating the app does no I/O; its schema is what the served app documents.
_SCHEMA = create_app(Settings(home=Path(tempfile.gettempdir()))).openapi()
OPERATIONS = operations(_SCHEMA)


@pytest.fixture(scope="module")
def api(trained_home: TrainedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An app with an empty registry: every route answers at once (no model runs), and the
    key checks in front of them are the same."""
    with module_api(trained_home.empty, tmp_path_factory) as running:
        yield running


def _call(
    api: Api, method: str, path: str, operation: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """The request, with an empty JSON object for a body when the route takes one: a caller
    without the right key must hear 401 / 403, never what is wrong with the body."""
    body: dict[str, Any] | None = {} if "requestBody" in operation else None
    response: httpx.Response = api.client.request(
        method, concrete_path(path, operation), headers=headers, json=body
    )
    return response


def secrets_of(keys: dict[str, str]) -> list[str]:
    """The parts of each key that identify it: the whole key, and what `keys list` never shows."""
    return [part for key in keys.values() for part in (key, key[PREFIX_LENGTH:])]


def test_every_route_is_covered_by_a_rule() -> None:
    assert len(OPERATIONS) >= 10
    for method, path, _ in OPERATIONS:
        allowed_roles(method, path)  # raises for a route no rule covers


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_each_role_is_admitted_or_refused_as_design_says(
    api: Api,
    method: str,
    path: str,
    operation: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    allowed = allowed_roles(method, path)
    texts = []
    for role in ROLES:
        response = _call(api, method, path, operation, api.headers(role))
        texts.append(response.text)
        documented = (
            response.status_code < 500 or str(response.status_code) in operation["responses"]
        )
        assert response.status_code != 500 and documented, (role, response.text)
        if allowed is None or role in allowed:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            error = response.json()["error"]
            assert error["code"] == "forbidden"
            assert f"has role {role}" in error["message"]
    wrong = api.keys["admin"][:-2] + ("xy" if not api.keys["admin"].endswith("xy") else "zz")
    for headers in (
        {},
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {api.keys['admin']}"},
        {"Authorization": f"Bearer {api.keys['admin']} {api.keys['admin']}"},
        {"X-API-Key": api.keys["admin"]},
    ):
        response = _call(api, method, path, operation, headers)
        texts.append(response.text)
        if allowed is None:
            assert response.status_code not in (401, 403), (headers, response.text)
            continue
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
    # What the schema tells clients agrees with what the route does.
    declared = "security" in operation
    assert declared == (allowed is not None)
    if declared:
        assert operation["security"] == [{"ApiKey": []}]
        assert {"401", "403"} <= set(operation["responses"])
    for secret in [*secrets_of(api.keys), wrong[PREFIX_LENGTH:]]:
        assert not any(secret in text for text in texts)
        assert secret not in caplog.text


# Words of a name that would let a caller point at something to load.
_LOCATION_WORDS = frozenset(
    {"path", "file", "filename", "uri", "url", "dir", "folder", "location", "artifact", "pickle"}
)


def _points_somewhere(name: str) -> bool:
    return bool(_LOCATION_WORDS & set(re.split(r"[^a-z]+", name.lower())))


def _names(schema: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Every property name in a JSON schema, following $refs into the components."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return
        seen.add(name)
        schema = _SCHEMA["components"]["schemas"][name]
    for key, value in schema.get("properties", {}).items():
        yield key
        yield from _names(value, seen)
    for combined in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(combined, []):
            yield from _names(part, seen)
    for nested in ("items", "additionalProperties"):
        if isinstance(schema.get(nested), dict):
            yield from _names(schema[nested], seen)


def test_no_route_takes_a_file_path_or_uri() -> None:
    """A model is loaded only by its registry alias or version, never from a location a caller
    names: no parameter or body field of any route could carry one."""
    for method, path, operation in OPERATIONS:
        names = [p["name"] for p in operation.get("parameters", [])]
        for content in operation.get("requestBody", {}).get("content", {}).values():
            names += list(_names(content["schema"], set()))
        assert not [n for n in names if _points_somewhere(n)], (method, path, names)
    reload = next(op for m, p, op in OPERATIONS if (m, p) == ("POST", "/v1/admin/reload"))
    assert "requestBody" not in reload and not reload.get("parameters")


@pytest.fixture
def server(
    trained_home: TrainedHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, str], Settings]]:
    """The API under a real uvicorn server on a free local port, logging as much as it can:
    uvicorn at TRACE with its access log (its handlers left to pytest's capture)."""
    clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    home = copy_home(trained_home.home, tmp_path)
    settings = home_settings(home, key_refresh_seconds=0.05)
    app = create_app(settings)
    store = FunnelStore.open(settings.store_url)
    keys = {role: create_key(store.engine, role, f"uvicorn-{role}") for role in ROLES}
    store.close()
    config = uvicorn.Config(app, log_config=None, log_level="trace", access_log=True, lifespan="on")
    served = uvicorn.Server(config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    levels = {
        n: logging.getLogger(n).level for n in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    }
    thread = threading.Thread(target=served.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not served.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", keys, settings
    finally:
        served.should_exit = True
        thread.join(timeout=30)
        listener.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_keys_never_reach_the_server_logs(
    server: tuple[str, dict[str, str], Settings],
    leads: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)  # everything, uvicorn's TRACE included
    url, keys, settings = server
    store = FunnelStore.open(settings.store_url)
    revoke_key(store.engine, keys["manager"])
    store.close()
    time.sleep(3 * settings.key_refresh_seconds)
    wrong = keys["integration"][:-2] + ("xy" if not keys["integration"].endswith("xy") else "zz")
    body = {"leads": leads[:2]}
    statuses = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for key in [*keys.values(), wrong]:
            for scheme in ("Bearer", "bearer", "Basic"):
                headers = {"Authorization": f"{scheme} {key}"}
                statuses.append(
                    client.post("/v1/leads/score", json=body, headers=headers).status_code
                )
                statuses.append(client.get("/v1/models", headers=headers).status_code)
                statuses.append(
                    client.post(
                        "/v1/leads/score",
                        content=b"{",
                        headers={**headers, "Content-Type": "application/json"},
                    ).status_code
                )
                statuses.append(client.get("/v1/goals/1", headers=headers).status_code)
    assert {200, 401, 403, 400} <= set(statuses)
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    # Not vacuous: each request has its access line, and uvicorn logged at TRACE as well.
    assert len(access) == len(statuses)
    assert any('"POST /v1/leads/score HTTP/1.1" 200' in line for line in access)
    assert any('"GET /v1/models HTTP/1.1" 401' in line for line in access)
    assert any(r.name == "uvicorn.asgi" for r in caplog.records)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in [*secrets_of(keys), wrong[PREFIX_LENGTH:]]:
        assert secret not in logged
