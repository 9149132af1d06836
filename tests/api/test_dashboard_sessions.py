"""Dashboard sign-in, sessions and form posts, in-process (the browser test drives the pages):
the cookie holds no key, posts need the session's CSRF token and this site's origin, a wrong or
integration key is refused, revoking a key or signing out ends the session."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from scoring.api_keys import revoke_key
from scoring.dashboard_sessions import find_key, find_session, start_session
from tests.api.conftest import Api

PROBE = "/dashboard/goals/new"  # a page that needs a session and is quick to render
GOAL = {
    "name": "Q3 revenue",
    "kpi": "won_revenue",
    "direction": "at_least",
    "target": "100000",
    "period_start": "2026-07-01",
    "period_end": "2026-09-30",
    "segment": "region=Nordics",
    "owner": "",
}


def _field(page: httpx.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def _sign_in(client: TestClient, key: str, **headers: str) -> httpx.Response:
    form = client.get("/dashboard/sign-in")
    token = _field(form, "sign_in_token")
    response: httpx.Response = client.post(
        "/dashboard/sign-in",
        data={"key": key, "sign_in_token": token},
        headers=headers,
        follow_redirects=False,
    )
    return response


def _client(api: Api) -> TestClient:
    return TestClient(api.app, base_url="http://127.0.0.1:8000")


def test_signing_in_sets_an_opaque_http_only_cookie(api: Api) -> None:
    client = _client(api)
    assert client.get(PROBE, follow_redirects=False).headers["location"] == "/dashboard/sign-in"

    response = _sign_in(client, api.keys["manager"])

    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "funnelcast_session=" in c)
    token = cookie.split(";")[0].split("=", 1)[1]
    assert api.keys["manager"] not in cookie and len(token) >= 40
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/dashboard", "Max-Age=28800"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1
    assert client.get(PROBE).status_code == 200
    session = find_session(api.app.state.store.engine, token)
    assert session is not None and session.role == "manager"


def test_the_cookie_is_secure_over_https(api: Api) -> None:
    client = TestClient(api.app, base_url="https://dashboard.example")

    response = _sign_in(client, api.keys["viewer"])

    cookie = next(c for c in response.headers.get_list("set-cookie") if "funnelcast_session=" in c)
    assert "Secure" in cookie


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("fck_not-a-key", 401, "unknown or revoked"),
        ("", 401, "unknown or revoked"),
        ("integration", 403, "cannot open the dashboard"),
    ],
)
def test_a_wrong_key_gets_a_message_and_no_session(
    api: Api, key: str, status: int, message: str
) -> None:
    client = _client(api)

    response = _sign_in(client, api.keys.get(key, key))

    assert response.status_code == status
    assert message in response.text
    assert "funnelcast_session" not in response.cookies
    assert client.get(PROBE, follow_redirects=False).status_code == 303


def test_a_sign_in_needs_the_forms_own_token_and_origin(api: Api) -> None:
    client = _client(api)
    client.get("/dashboard/sign-in")

    forged = client.post(
        "/dashboard/sign-in",
        data={"key": api.keys["viewer"], "sign_in_token": "guessed"},
        follow_redirects=False,
    )
    cross_site = _sign_in(client, api.keys["viewer"], origin="https://evil.example")

    assert forged.status_code == 400 and "expired" in forged.text
    assert cross_site.status_code == 403
    assert client.get(PROBE, follow_redirects=False).status_code == 303


def test_goal_posts_need_the_csrf_token_and_this_origin(api: Api) -> None:
    client = _client(api)
    _sign_in(client, api.keys["manager"])
    csrf = _field(client.get(PROBE), "csrf_token")

    without = client.post("/dashboard/goals", data=GOAL, follow_redirects=False)
    wrong = client.post("/dashboard/goals", data={**GOAL, "csrf_token": "x" * 43})
    cross_site = client.post(
        "/dashboard/goals",
        data={**GOAL, "csrf_token": csrf},
        headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert [r.status_code for r in (without, wrong, cross_site)] == [403, 403, 403]
    assert api.get("/v1/goals", role="viewer").json()["goals"] == []

    added = client.post(
        "/dashboard/goals",
        data={**GOAL, "csrf_token": csrf},
        headers={"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert added.status_code == 303
    goals = api.get("/v1/goals", role="viewer").json()["goals"]
    assert added.headers["location"] == f"/dashboard#goal-{goals[0]['id']}"
    assert goals[0]["segment"] == {"region": "Nordics"} and goals[0]["owner"] is None


def test_the_goal_form_shows_each_problem_at_its_field(api: Api) -> None:
    client = _client(api)
    _sign_in(client, api.keys["manager"])
    csrf = _field(client.get(PROBE), "csrf_token")

    response = client.post(
        "/dashboard/goals",
        data={**GOAL, "csrf_token": csrf, "name": "", "target": "lots", "segment": "Nordics"},
    )

    assert response.status_code == 422
    fields = dict(re.findall(r'field-error" data-field="(\w+)">([^<]+)<', response.text))
    assert set(fields) == {"name", "target", "segment"}
    assert "must look like column=value" in fields["segment"]
    assert 'value="lots"' in response.text  # what was typed stays in the form
    assert api.get("/v1/goals", role="viewer").json()["goals"] == []


def test_a_viewer_gets_no_goal_form(api: Api) -> None:
    client = _client(api)
    _sign_in(client, api.keys["viewer"])
    page = client.get("/dashboard/goals/new")
    csrf = _field(page, "csrf_token")  # the sign-out form's

    posted = client.post("/dashboard/goals", data={**GOAL, "csrf_token": csrf})

    assert page.status_code == 403 and "Managers only" in page.text
    assert posted.status_code == 403
    assert api.get("/v1/goals", role="viewer").json()["goals"] == []


def test_signing_out_and_revoking_the_key_end_sessions(api: Api) -> None:
    first, second = _client(api), _client(api)
    _sign_in(first, api.keys["viewer"])
    _sign_in(second, api.keys["viewer"])
    csrf = _field(first.get(PROBE), "csrf_token")

    signed_out = first.post(
        "/dashboard/sign-out", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert signed_out.headers["location"] == "/dashboard/sign-in"
    assert first.get(PROBE, follow_redirects=False).status_code == 303
    assert second.get(PROBE).status_code == 403  # still signed in: a viewer, refused the form

    revoke_key(api.app.state.store.engine, api.keys["viewer"])
    assert second.get(PROBE, follow_redirects=False).status_code == 303


def test_an_expired_session_opens_nothing(api: Api) -> None:
    engine = api.app.state.store.engine
    identity = find_key(engine, api.keys["admin"])
    assert identity is not None and identity.role == "admin"

    token, _ = start_session(engine, identity, lifetime=dt.timedelta(seconds=-1))

    assert find_session(engine, token) is None


def test_pages_forbid_outside_resources_and_static_files_are_served(api: Api) -> None:
    client = _client(api)
    page = client.get("/dashboard/sign-in")
    css = client.get("/dashboard/static/dashboard.css")

    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".status-on_track{background:#1a7f37}" in css.text
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/..%2Fsession.py").status_code == 404
    assert "http" not in re.sub(r"https?://www\.w3\.org/[^\"']*", "", page.text)
