"""A corpus of bad request bodies against every route that takes one: each gets its documented
4xx in the one error shape, never a 500.

The routes come from the app's OpenAPI document (as in test_security.py), so a new route that
takes a body meets the whole corpus the day it is added. test_errors.py covers the scoring
routes' own cases (field types, dates, lead counts, explain, nesting inside attributes).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from scoring.settings import Settings
from serve.app import error_response
from serve.errors import ApiError, ErrorDetail
from tests.api.conftest import Api
from tests.api.test_security import OPERATIONS, allowed_roles, concrete_path

JSON = {"Content-Type": "application/json"}
BODY_ROUTES = [(method, path, op) for method, path, op in OPERATIONS if "requestBody" in op]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in BODY_ROUTES]

# (body, status, error code); every body here is wrong whatever the route.
CORPUS: dict[str, tuple[bytes, int, str]] = {
    "malformed": (b'{"leads": [', 400, "malformed_json"),
    "cut-off": (b'{"name": "Q1", "kpi": "won_rev', 400, "malformed_json"),
    "not-utf-8": (b'{"name": "Malm\xf6"}', 400, "bad_request"),
    "deeply-nested": (b"[" * 100_000 + b"]" * 100_000, 400, "bad_request"),
    "5000-digit-number": (b'{"target": ' + b"9" * 5_000 + b"}", 400, "bad_request"),
    "array": (b"[]", 422, "invalid_request"),
    "text": (b'"leads"', 422, "invalid_request"),
    "null": (b"null", 422, "invalid_request"),
    "number": (b"42", 422, "invalid_request"),
    "empty": (b"", 422, "invalid_request"),
    "lone-surrogate": (b'{"name": "\\ud800"}', 422, "invalid_request"),
    "nul-character": (b'{"name": "a\\u0000b"}', 422, "invalid_request"),
}


@pytest.fixture
def api(shared_api: Api) -> Api:
    """Bad requests change nothing: one app serves the whole module."""
    return shared_api


def role_for(method: str, path: str) -> str:
    """A role that may call the route, so that what is checked is the body, not the key."""
    roles = allowed_roles(method, path)
    assert roles, (method, path)
    return sorted(roles)[0]


def send(
    api: Api,
    method: str,
    path: str,
    operation: dict[str, Any],
    body: bytes,
    headers: dict[str, str] | None = None,
) -> Any:
    role = role_for(method, path)
    merged = {**api.headers(role), **JSON, **(headers or {})}
    return api.client.request(method, concrete_path(path, operation), content=body, headers=merged)


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_every_write_route_is_in_the_corpus() -> None:
    assert {"POST /v1/leads/score", "PUT /v1/leads/{lead_id}", "POST /v1/goals"} <= set(ROUTE_IDS)


@pytest.mark.parametrize(("body", "status", "code"), CORPUS.values(), ids=CORPUS)
@pytest.mark.parametrize(("method", "path", "operation"), BODY_ROUTES, ids=ROUTE_IDS)
def test_a_bad_body_gets_its_documented_4xx(
    api: Api,
    method: str,
    path: str,
    operation: dict[str, Any],
    body: bytes,
    status: int,
    code: str,
) -> None:
    error = error_of(send(api, method, path, operation, body), status, code)
    assert str(status) in operation["responses"]
    if status == 422:
        assert error["details"] and error["details"][0]["location"][0] == "body"
    if code == "bad_request":
        assert "could not be parsed" in error["message"]
    if body.startswith(b'{"name": "\\ud800'):
        assert "surrogate" in error["message"]
    if b"\\u0000" in body:
        assert "NUL" in error["message"]


@pytest.mark.parametrize(("method", "path", "operation"), BODY_ROUTES, ids=ROUTE_IDS)
def test_a_body_over_the_default_limit_is_413_unread(
    api: Api, method: str, path: str, operation: dict[str, Any]
) -> None:
    limit = api.settings.max_body_bytes
    assert limit == Settings.model_fields["max_body_bytes"].default == 16 * 1024 * 1024
    body = b'{"name": "' + b"x" * limit + b'"}'
    error = error_of(send(api, method, path, operation, body), 413, "payload_too_large")
    assert "FUNNELCAST_MAX_BODY_BYTES" in error["message"]


@pytest.mark.parametrize(("method", "path", "operation"), BODY_ROUTES, ids=ROUTE_IDS)
def test_json_sent_as_another_content_type_is_422(
    api: Api, method: str, path: str, operation: dict[str, Any]
) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/csv"):
        response = send(
            api, method, path, operation, b'{"name": "x"}', {"Content-Type": content_type}
        )
        error = error_of(response, 422, "invalid_request")
        assert "application/json" in error["message"]


NEW_LEAD = '{"created_at": "2026-06-01T09:00:00Z", "attributes": {"industry": "retail"}}'
# Numbers JSON does not have (Python's parser reads NaN and Infinity) or a float cannot hold.
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
# (method, path, role, body with X where the number goes, where the error points)
NUMBER_FIELDS: list[tuple[str, str, str, str, list[Any]]] = [
    (
        "POST",
        "/v1/leads/score",
        "integration",
        '{"leads": [{"lead_id": "L1", "attributes": {"employees": X}}]}',
        ["body", "leads", 0, "attributes", "employees"],
    ),
    (
        "POST",
        "/v1/leads/rank",
        "integration",
        '{"leads": [{"lead_id": "L1", "attributes": {"web_visits": X}}], "top_k": 1}',
        ["body", "leads", 0, "attributes", "web_visits"],
    ),
    (
        "PUT",
        "/v1/leads/CRM-9",
        "integration",
        '{"created_at": "2026-06-01", "amount": X}',
        ["body", "amount"],
    ),
    (
        "PUT",
        "/v1/leads/CRM-9",
        "integration",
        '{"created_at": "2026-06-01", "attributes": {"employees": X}}',
        ["body", "attributes", "employees"],
    ),
    (
        "POST",
        "/v1/leads/CRM-9/events",
        "integration",
        '{"kind": "won", "at": "2026-06-05", "amount": X}',
        ["body", "amount"],
    ),
]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(
    ("method", "path", "role", "template", "location"),
    NUMBER_FIELDS,
    ids=[f"{m} {p} {loc[-1]}" for m, p, _, _, loc in NUMBER_FIELDS],
)
def test_a_number_that_is_not_finite_is_422_at_its_field(
    api: Api, method: str, path: str, role: str, template: str, location: list[Any], number: str
) -> None:
    """Infinity scored as a 500 and was stored as a deal amount; NaN and Infinity are not JSON."""
    response = api.client.request(
        method, path, content=template.replace("X", number), headers={**api.headers(role), **JSON}
    )
    error = error_of(response, 422, "invalid_request")
    found = [d for d in error["details"] if d["location"][: len(location)] == location]
    assert found, error
    assert any("finite number" in d["message"] for d in found)


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        (
            "POST",
            "/v1/leads/score",
            '{"leads": [{"lead_id": "L1", "attributes": {"employees": X}}]}',
        ),
        ("PUT", "/v1/leads/CRM-9", '{"created_at": "2026-06-01", "attributes": {"employees": X}}'),
    ],
)
def test_an_integer_beyond_any_float_is_422(
    api: Api, method: str, path: str, template: str
) -> None:
    """A 400-digit integer made the push a 500 (pandas cannot convert it)."""
    body = template.replace("X", "1" + "0" * 400)
    response = api.client.request(
        method, path, content=body, headers={**api.headers("integration"), **JSON}
    )
    error = error_of(response, 422, "invalid_request")
    assert any("less than or equal to" in d["message"] for d in error["details"])


TEXT_FIELDS = [
    ("POST", "/v1/leads/score", "integration", '{"leads": [{"lead_id": "X"}]}'),
    (
        "POST",
        "/v1/leads/score",
        "integration",
        '{"leads": [{"lead_id": "L1", "attributes": {"X": 1}}]}',
    ),
    (
        "POST",
        "/v1/leads/rank",
        "integration",
        '{"leads": [{"lead_id": "L1", "attributes": {"industry": "X"}}], "explain": true}',
    ),
    ("PUT", "/v1/leads/CRM-9", "integration", '{"created_at": "2026-06-01", "owner": "X"}'),
    (
        "PUT",
        "/v1/leads/CRM-9",
        "integration",
        '{"created_at": "2026-06-01", "attributes": {"X": "y"}}',
    ),
    (
        "POST",
        "/v1/leads/CRM-9/events",
        "integration",
        '{"kind": "stage", "at": "2026-06-02", "stage": "X"}',
    ),
    (
        "POST",
        "/v1/goals",
        "manager",
        '{"name": "Q1", "kpi": "won_revenue", "direction": "at_least", "target": 1, '
        '"period_start": "2026-01-01", "period_end": "2026-03-31", "segment": {"region": "X"}}',
    ),
]


@pytest.mark.parametrize(
    ("text", "says"),
    [("\\ud800", "lone surrogate"), ("a\\u0000b", "NUL character")],
    ids=["surrogate", "nul"],
)
@pytest.mark.parametrize(("method", "path", "role", "template"), TEXT_FIELDS)
def test_text_the_store_cannot_hold_is_422(
    api: Api, method: str, path: str, role: str, template: str, text: str, says: str
) -> None:
    """A lone surrogate escape is valid JSON but not Unicode: in a lead id, an attribute name,
    a stage or a segment it was a 500 (the store, orjson or the error response could not
    encode it). PostgreSQL text cannot hold NUL."""
    response = api.client.request(
        method, path, content=template.replace("X", text), headers={**api.headers(role), **JSON}
    )
    error = error_of(response, 422, "invalid_request")
    assert says in error["message"]
    response.content.decode("utf-8")  # the answer itself is UTF-8


def test_rank_refuses_10_001_leads(api: Api) -> None:
    many = [{"lead_id": f"L{i}"} for i in range(10_001)]
    error = error_of(api.post("/v1/leads/rank", json={"leads": many}), 422, "invalid_request")
    assert "10000" in error["message"].replace(",", "")
    assert error["details"][0]["location"] == ["body", "leads"]


def test_an_error_quoting_unencodable_text_still_renders() -> None:
    """Defence in depth: an error that quotes what a client sent (a lead id, an attribute name)
    is answered even when that text is a lone surrogate."""
    error = ApiError(
        422,
        "invalid_attribute",
        "lead \ud800: attribute \udcff must be a number",
        details=[ErrorDetail(location=["body", "\ud800"], message="m", lead_id="\ud800")],
    )
    body = json.loads(bytes(error_response(error).body))
    assert body["error"]["message"] == "lead \\ud800: attribute \\udcff must be a number"
    assert body["error"]["details"][0]["location"] == ["body", "\\ud800"]
