"""Every /v1 route needs a key with the right role: 401 without a valid key, 403 for the wrong
role, and the key itself never shows up in a response or a log line."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from scoring.api_keys import ROLES, revoke_key
from tests.api.conftest import Api

# (method, path, roles allowed): roles nest viewer ⊂ manager ⊂ admin, integration is separate.
ROUTES = [
    ("POST", "/v1/leads/score", {"integration"}),
    ("POST", "/v1/leads/rank", {"integration"}),
    ("GET", "/v1/leads/L0000001/scores", {"integration"}),
    ("GET", "/v1/models", {"viewer", "manager", "admin"}),
    ("POST", "/v1/admin/reload", {"admin"}),
]


def _call(api: Api, method: str, path: str, headers: dict[str, str], lead: dict[str, Any]) -> Any:
    body = {"leads": [lead]} if path.startswith("/v1/leads/") and method == "POST" else None
    return api.client.request(method, path, headers=headers, json=body)


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES, ids=[r[1] for r in ROUTES])
def test_each_role_gets_200_or_403(
    shared_api: Api, leads: list[dict[str, Any]], method: str, path: str, allowed: set[str]
) -> None:
    api = shared_api  # statuses only: one app for these cases
    for role in ROLES:
        response = _call(api, method, path, api.headers(role), leads[0])
        if role in allowed:
            assert response.status_code == 200, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            error = response.json()["error"]
            assert error["code"] == "forbidden"
            assert role in error["message"]  # says which role the key has


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES, ids=[r[1] for r in ROUTES])
def test_no_key_or_a_wrong_key_is_401_with_a_challenge(
    shared_api: Api, leads: list[dict[str, Any]], method: str, path: str, allowed: set[str]
) -> None:
    api = shared_api  # statuses only: one app for these cases
    wrong = "fck_" + "x" * 43
    for headers in (
        {},
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {api.keys['admin']}"},
    ):
        response = _call(api, method, path, headers, leads[0])
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"


def test_a_revoked_key_stops_working(api: Api, leads: list[dict[str, Any]]) -> None:
    body = {"leads": leads[:1]}
    assert api.post("/v1/leads/score", json=body).status_code == 200
    revoke_key(api.app.state.store.engine, api.keys["integration"])
    time.sleep(3 * api.settings.key_refresh_seconds)  # the key ring rereads the store
    response = api.post("/v1/leads/score", json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "revoked" in response.json()["error"]["message"]


def test_keys_never_appear_in_responses_or_logs(
    api: Api, leads: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = api.keys["integration"][:-1] + ("A" if api.keys["integration"][-1] != "A" else "B")
    revoked = api.keys["manager"]
    revoke_key(api.app.state.store.engine, revoked)
    time.sleep(3 * api.settings.key_refresh_seconds)
    texts = []
    for key in (*api.keys.values(), wrong):
        headers = {"Authorization": f"Bearer {key}"}
        for method, path, _ in ROUTES:
            texts.append(_call(api, method, path, headers, leads[0]).text)
        texts.append(api.client.post("/v1/leads/score", headers=headers, content=b"{").text)
    secrets = [*api.keys.values(), wrong]
    assert caplog.records  # the app did log (model loads, reloads): the check is not vacuous
    for secret in secrets:
        assert not any(secret in text for text in texts)
        assert secret not in caplog.text
        assert secret[4:] not in caplog.text  # not even without its prefix
