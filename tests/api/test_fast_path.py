"""The fast path for score and rank (serve/fast_path.py) answers exactly as the routes do.

Two apps run over one copy of the trained home: one as `create_app` builds it, one with the
fast path taken out, so FastAPI's routes answer everything. Every request, well-formed or not,
must get the same status, headers and bytes from both. The key ring refreshes once an hour
here (the other API tests refresh every 50 ms, which sends most of their requests the long
way), so that well-formed requests really take the fast path: a test checks that they do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import serve.fast_path
import serve.lead_scoring
import serve.routes.leads
from serve.app import create_app
from serve.fast_path import ScoreFastPath
from tests.api.conftest import (
    Api,
    TrainedHome,
    add_keys,
    clean_environment,
    copy_home,
    home_settings,
)

MAX_BODY = 200_000
JSON = "application/json"


def _app_pair(home: Path) -> Iterator[tuple[Api, Api]]:
    settings = home_settings(home, key_refresh_seconds=3600, max_body_bytes=MAX_BODY)
    fast = create_app(settings)
    routed = create_app(settings)
    routed.user_middleware = [
        m for m in routed.user_middleware if getattr(m, "cls", None) is not ScoreFastPath
    ]
    assert len(routed.user_middleware) == len(fast.user_middleware) - 1
    with (
        TestClient(fast, raise_server_exceptions=False) as fast_client,
        TestClient(routed, raise_server_exceptions=False) as routed_client,
    ):
        keys = add_keys(fast)  # one store: both apps know these keys
        for app in (fast, routed):  # load them now: the first request must not wait for it
            app.state.keyring.refresh(force=True)
        yield Api(fast, fast_client, settings, keys), Api(routed, routed_client, settings, keys)


@pytest.fixture(scope="module")
def apps(
    trained_home: TrainedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, Api]]:
    with pytest.MonkeyPatch.context() as patch:
        clean_environment(patch)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        home = copy_home(trained_home.home, tmp_path_factory.mktemp("fast"))
        yield from _app_pair(home)


@pytest.fixture
def answered_fast(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of leads in each request the fast path answered (none reach the routes)."""
    answered: list[int] = []
    answer = serve.lead_scoring.scored

    async def counted(scorer: Any, recorder: Any, request: Any, ignored: list[str]) -> bytes:
        answered.append(len(request.leads))
        return await answer(scorer, recorder, request, ignored)

    monkeypatch.setattr(serve.fast_path, "scored", counted)
    return answered


def _same_answer(apps: tuple[Api, Api], path: str, **request: Any) -> httpx.Response:
    """Send one request to both apps; assert the answers are equal; return the fast one."""
    fast: httpx.Response = apps[0].client.post(path, **request)
    routed: httpx.Response = apps[1].client.post(path, **request)
    assert fast.status_code == routed.status_code, (fast.text, routed.text)
    assert fast.headers == routed.headers
    assert fast.content == routed.content
    return fast


def _auth(apps: tuple[Api, Api], role: str = "integration") -> dict[str, str]:
    return apps[0].headers(role)


def _odd(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unseen = {**leads[0], "lead_id": "FP-ODD-1"}
    unseen["attributes"] = {**leads[0]["attributes"], "industry": "space_mining", "color": "red"}
    nulls = {**leads[1], "lead_id": "FP-ODD-2"}
    nulls["attributes"] = {name: None for name in leads[1]["attributes"]}
    bare = {"lead_id": "FP-ODD-3", "created_at": "2024-03-01", "attributes": {}}
    return [unseen, nulls, bare]


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/leads/score", {}),
        ("/v1/leads/score", {"explain": True}),
        ("/v1/leads/rank", {}),
        ("/v1/leads/rank", {"top_k": 3, "explain": True}),
    ],
)
def test_well_formed_requests_get_the_routes_answer(
    apps: tuple[Api, Api],
    leads: list[dict[str, Any]],
    path: str,
    extra: dict[str, Any],
    answered_fast: list[int],
) -> None:
    batches = ([leads[0]], [*leads[:7], *_odd(leads)])
    for batch in batches:
        answer = _same_answer(apps, path, headers=_auth(apps), json={"leads": batch, **extra})
        assert answer.status_code == 200
        assert len(answer.json()["results"]) == min(len(batch), extra.get("top_k", len(batch)))
    assert answered_fast == [len(batch) for batch in batches]


def test_a_batch_scored_on_a_worker_thread_gets_the_routes_answer(
    apps: tuple[Api, Api], leads: list[dict[str, Any]], answered_fast: list[int]
) -> None:
    batch = [{**lead, "lead_id": f"FP-BIG-{i}"} for i, lead in enumerate(leads + leads[:50])]
    assert len(batch) > serve.lead_scoring.INLINE_LEADS
    answer = _same_answer(apps, "/v1/leads/rank", headers=_auth(apps), json={"leads": batch})
    assert [r["rank"] for r in answer.json()["results"]] == list(range(1, len(batch) + 1))
    assert answered_fast == [len(batch)]


def test_well_formed_requests_do_not_reach_the_routes(
    apps: tuple[Api, Api], leads: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def routed(*_: Any, **__: Any) -> bytes:
        raise AssertionError("the route answered")

    monkeypatch.setattr(serve.routes.leads, "scored", routed)
    fast, slow = apps
    for path in ("/v1/leads/score", "/v1/leads/rank"):
        body = {"leads": leads[:3]}
        assert fast.client.post(path, headers=_auth(apps), json=body).status_code == 200
        assert slow.client.post(path, headers=_auth(apps), json=body).status_code == 500


def _raw(body: str, headers: dict[str, str] | None = None, **more: str) -> dict[str, Any]:
    return {"content": body.encode(), "headers": {**(headers or {}), **more}}


def test_requests_it_does_not_take_get_the_routes_answer(
    apps: tuple[Api, Api], leads: list[dict[str, Any]], answered_fast: list[int]
) -> None:
    good = json.dumps({"leads": [leads[0]]})
    auth = _auth(apps)
    as_json = {"Content-Type": JSON}
    wrong_type = {**leads[0], "attributes": {**leads[0]["attributes"], "employees": "many"}}
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("no key", _raw(good, as_json), 401),
        ("unknown key", _raw(good, as_json, Authorization="Bearer nope"), 401),
        ("other scheme", _raw(good, as_json, Authorization=f"Basic {auth['Authorization']}"), 401),
        ("viewer key", _raw(good, {**as_json, **_auth(apps, "viewer")}), 403),
        ("malformed JSON", _raw(good[:-1], {**as_json, **auth}), 400),
        ("empty body", _raw("", {**as_json, **auth}), 422),
        ("not declared JSON", _raw(good, {**auth, "Content-Type": "text/plain"}), 422),
        ("JSON with charset", _raw(good, {**auth, "Content-Type": f"{JSON}; charset=utf-8"}), 200),
        ("wrong attribute type", {"headers": auth, "json": {"leads": [wrong_type]}}, 422),
        ("no lead_id", {"headers": auth, "json": {"leads": [{"attributes": {}}]}}, 422),
        ("extra field", {"headers": auth, "json": {"leads": [leads[0]], "colour": 1}}, 422),
        ("no leads", {"headers": auth, "json": {"leads": []}}, 422),
        (
            "NaN",
            _raw('{"leads": [{"lead_id": "x", "attributes": {"a": NaN}}]}', {**as_json, **auth}),
            422,
        ),
        ("lone surrogate", _raw('{"leads": [{"lead_id": "\\ud800"}]}', {**as_json, **auth}), 422),
        ("too large", _raw(" " * (MAX_BODY + 1) + good, {**as_json, **auth}), 413),
    ]
    for name, request, status in cases:
        answer = _same_answer(apps, "/v1/leads/score", **request)
        assert answer.status_code == status, (name, answer.text)
    assert answered_fast == [1]  # the charset case only
    query = _same_answer(apps, "/v1/leads/score?top=1", headers=auth, json={"leads": leads[:1]})
    assert query.status_code == 422 and "top" in query.json()["error"]["message"]
    assert answered_fast == [1]


def test_a_chunked_upload_is_answered_by_the_route(
    apps: tuple[Api, Api], leads: list[dict[str, Any]], answered_fast: list[int]
) -> None:
    body = json.dumps({"leads": leads[:2]}).encode()
    headers = {**_auth(apps), "Content-Type": "application/json"}
    answers = [
        api.client.post("/v1/leads/score", headers=headers, content=iter([body[:50], body[50:]]))
        for api in apps
    ]
    assert "content-length" not in answers[0].request.headers
    assert answers[0].status_code == answers[1].status_code == 200
    assert answers[0].content == answers[1].content
    assert answered_fast == []
