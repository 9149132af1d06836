"""Bad requests get the one error shape with a status and a message that says what to fix;
nothing a client sends produces a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Api, ApiFactory

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def api(shared_api: Api) -> Api:
    """Bad requests change nothing: one app serves the whole module."""
    return shared_api


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("body", [b"{", b'{"leads": [', b"leads=1", b'{"leads": [}'])
def test_malformed_json_is_400(api: Api, body: bytes) -> None:
    response = api.post(
        "/v1/leads/score", content=body, headers={**api.headers("integration"), **JSON}
    )
    error = _error(response, 400)
    assert error["code"] == "malformed_json"
    assert "JSON" in error["message"]


def test_json_sent_without_a_json_content_type_is_explained(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    body = json.dumps({"leads": leads[:1]}).encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = api.headers("integration")
        if content_type:
            headers["Content-Type"] = content_type
        error = _error(api.client.post("/v1/leads/score", content=body, headers=headers), 422)
        assert "application/json" in error["message"]


def _invalid(api: Api, body: object, path: str = "/v1/leads/score") -> dict[str, Any]:
    error = _error(api.post(path, json=body), 422)
    assert error["details"], error
    return error


def test_a_lead_id_that_is_not_text_is_named(api: Api, leads: list[dict[str, Any]]) -> None:
    error = _invalid(api, {"leads": [leads[0], {**leads[1], "lead_id": 5}]})
    [detail] = error["details"]
    assert detail["location"] == ["body", "leads", 1, "lead_id"]
    assert "lead_id" in error["message"]


def test_a_missing_lead_id_is_named(api: Api, leads: list[dict[str, Any]]) -> None:
    missing = {k: v for k, v in leads[1].items() if k != "lead_id"}
    error = _invalid(api, {"leads": [leads[0], missing]})
    [detail] = error["details"]
    assert detail["location"] == ["body", "leads", 1, "lead_id"]


@pytest.mark.parametrize(
    "created_at",
    [12, "last tuesday", "2026-13-45", True, "2263-01-01T00:00:00Z", "0058-04-07", "9999-12-31"],
)
def test_a_bad_created_at_names_the_lead_and_field(
    api: Api, leads: list[dict[str, Any]], created_at: object
) -> None:
    lead = {**leads[1], "created_at": created_at}
    error = _invalid(api, {"leads": [leads[0], lead]})
    [detail] = error["details"]
    assert detail["location"][:4] == ["body", "leads", 1, "created_at"]
    assert detail["lead_id"] == lead["lead_id"]
    assert lead["lead_id"] in error["message"] and "created_at" in error["message"]


@pytest.mark.parametrize(
    "created_at", ["2026-05-01", "2026-05-01T09:30:00Z", "2026-05-01T11:30:00+02:00"]
)
def test_iso_dates_are_accepted(api: Api, leads: list[dict[str, Any]], created_at: str) -> None:
    response = api.post("/v1/leads/score", json={"leads": [{**leads[0], "created_at": created_at}]})
    assert response.status_code == 200, response.text


def test_a_zone_is_converted_not_dropped(api: Api, leads: list[dict[str, Any]]) -> None:
    def days(created_at: str) -> float:
        lead = {**leads[0], "created_at": created_at}
        result = api.post("/v1/leads/score", json={"leads": [lead]}).json()["results"][0]
        value: float = result["p_won_30d"]
        return value

    # The same instant written in two zones is the same lead.
    assert days("2026-03-31T23:30:00-02:00") == days("2026-04-01T01:30:00Z")


@pytest.mark.parametrize("leads_value", ["x", 3, {"lead_id": "a"}, None])
def test_leads_that_are_not_a_list(api: Api, leads_value: object) -> None:
    error = _invalid(api, {"leads": leads_value})
    assert error["details"][0]["location"][:2] == ["body", "leads"]


@pytest.mark.parametrize(
    "change",
    [
        {"explain": "yes"},
        {"explain": 1},
        {"extra_field": 1},
    ],
)
def test_no_silent_coercion_or_extra_fields(
    api: Api, leads: list[dict[str, Any]], change: dict[str, Any]
) -> None:
    _invalid(api, {"leads": leads[:1], **change})


def test_rank_top_k_must_be_a_positive_integer(api: Api, leads: list[dict[str, Any]]) -> None:
    for top_k in (0, -1, "3", 2.5):
        _invalid(api, {"leads": leads[:2], "top_k": top_k}, "/v1/leads/rank")


def test_a_wrong_type_on_a_known_attribute_names_lead_and_attribute(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    bad = {**leads[2], "attributes": {**leads[2]["attributes"], "employees": "forty"}}
    error = _error(api.post("/v1/leads/score", json={"leads": [leads[0], bad]}), 422)
    assert bad["lead_id"] in error["message"] and "employees" in error["message"]
    [detail] = error["details"]
    assert detail["lead_id"] == bad["lead_id"]
    assert detail["location"] == ["body", "leads", 1, "attributes", "employees"]


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}])
def test_an_attribute_value_must_be_a_scalar(
    api: Api, leads: list[dict[str, Any]], value: object
) -> None:
    bad = {**leads[1], "attributes": {**leads[1]["attributes"], "industry": value}}
    error = _invalid(api, {"leads": [leads[0], bad]})
    assert all(
        d["location"][:5] == ["body", "leads", 1, "attributes", "industry"]
        for d in error["details"]
    )
    assert error["details"][0]["lead_id"] == bad["lead_id"]


def test_numbers_given_as_text_for_a_category_are_refused_or_scored_not_500(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    # A categorical attribute given a number: refused with a 422 that names it.
    bad = {**leads[1], "attributes": {**leads[1]["attributes"], "industry": 7}}
    error = _invalid(api, {"leads": [bad]})
    assert "industry" in error["message"]


def test_zero_leads_and_too_many_leads_are_422(api: Api, leads: list[dict[str, Any]]) -> None:
    error = _invalid(api, {"leads": []})
    assert error["details"][0]["location"] == ["body", "leads"]
    many = [{"lead_id": f"L{i}"} for i in range(10_001)]
    error = _invalid(api, {"leads": many})
    assert "10000" in error["message"].replace(",", "")
    assert api.post("/v1/leads/score", json={"leads": many[:10_000]}).status_code == 200


def test_explain_is_limited_to_1000_leads(api: Api) -> None:
    many = [{"lead_id": f"L{i}"} for i in range(1_001)]
    error = _invalid(api, {"leads": many, "explain": True})
    assert "1000" in error["message"].replace(",", "")
    _invalid(api, {"leads": many, "explain": True}, "/v1/leads/rank")
    response = api.post("/v1/leads/score", json={"leads": many[:1_000], "explain": True})
    assert response.status_code == 200


def test_a_body_over_the_limit_is_413(start_api: ApiFactory, leads: list[dict[str, Any]]) -> None:
    api = start_api(max_body_bytes=2_000)
    small = api.post("/v1/leads/score", json={"leads": leads[:2]})
    assert small.status_code == 200
    error = _error(api.post("/v1/leads/score", json={"leads": leads[:40]}), 413)
    assert error["code"] == "payload_too_large"
    # Streamed without a Content-Length, the limit holds too.
    body = json.dumps({"leads": leads[:40]}).encode()
    chunks = (body[i : i + 500] for i in range(0, len(body), 500))
    streamed = api.client.post(
        "/v1/leads/score", content=chunks, headers={**api.headers("integration"), **JSON}
    )
    _error(streamed, 413)


@pytest.mark.parametrize(
    "nested",
    ["[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000, "[" * 500 + "]" * 500],
    ids=["lists", "objects", "shallower"],
)
def test_deeply_nested_json_is_a_client_error(api: Api, nested: str) -> None:
    body = '{"leads": [{"lead_id": "deep", "attributes": {"x": ' + nested + "}}]}"
    response = api.post("/v1/leads/score", content=body.encode(), headers=JSON)
    assert 400 <= response.status_code < 500, response.text
    _error(response, response.status_code)


def test_no_model_is_503_saying_how_to_train_one(
    empty_api: Api, leads: list[dict[str, Any]]
) -> None:
    for path in ("/v1/leads/score", "/v1/leads/rank"):
        error = _error(empty_api.post(path, json={"leads": leads[:1]}), 503)
        assert error["code"] == "no_model"
        assert "funnelcast train" in error["message"]
    models = empty_api.get("/v1/models", role="viewer")
    assert models.status_code == 200
    assert models.json()["models"] == []


def test_unknown_routes_and_methods_use_the_error_shape(api: Api) -> None:
    assert _error(api.client.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert _error(api.client.get("/v1/leads/score"), 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "role", "name"),
    [
        ("/v1/goals?ownr=ana", "viewer", "ownr"),
        ("/v1/models?verbose=1", "viewer", "verbose"),
        ("/v1/leads/L1/scores?since=2026-01-01", "integration", "since"),
        ("/v1/segments?min_lead=5", "viewer", "min_lead"),
    ],
)
def test_an_unknown_query_parameter_is_named(api: Api, path: str, role: str, name: str) -> None:
    error = _error(api.get(path, role), 422)
    assert error["message"].startswith(f"{name}: not a parameter of this endpoint")
    assert error["details"][0]["location"] == ["query", name]


def test_an_unknown_query_parameter_on_a_post_is_named(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    response = api.post("/v1/leads/score?explain=true", json={"leads": leads[:1]})
    error = _error(response, 422)
    assert error["message"] == "explain: not a parameter of this endpoint; it takes none"


def test_declared_query_parameters_still_work(api: Api) -> None:
    assert api.get("/v1/goals?owner=ana", "viewer").status_code == 200
    assert api.get("/v1/segments?columns=industry&min_leads=5", "viewer").status_code == 200
