"""The goals routes: viewers read, managers (and admins) write, integrations neither; bad goals
are 422s naming the field, unknown ids 404s, all in the one error shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scoring.api_keys import ROLES
from scoring.goal_store import GoalCheck, check_history, record_check
from scoring.kpis import KPI_IDS
from tests.api.conftest import Api

GOAL: dict[str, Any] = {
    "name": "Q1 new revenue, Nordics",
    "kpi": "won_revenue",
    "direction": "at_least",
    "target": 500000,
    "period_start": "2026-01-01",
    "period_end": "2026-03-31",
    "segment": {"region": "Nordics"},
    "owner": "nordics-team",
}
READERS = {"viewer", "manager", "admin"}
WRITERS = {"manager", "admin"}


def call(api: Api, method: str, path: str, role: str | None, body: Any = None) -> httpx.Response:
    headers = api.headers(role) if role else {}
    response: httpx.Response = api.client.request(method, path, headers=headers, json=body)
    return response


def created(api: Api, **changes: Any) -> dict[str, Any]:
    response = call(api, "POST", "/v1/goals", "manager", {**GOAL, **changes})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_a_goal_is_created_read_replaced_and_deleted(api: Api) -> None:
    goal = created(api)
    assert goal["id"] >= 1
    assert {k: goal[k] for k in GOAL} == {**GOAL, "target": 500000.0}
    assert goal["created_at"] == goal["updated_at"]
    path = f"/v1/goals/{goal['id']}"

    read = call(api, "GET", path, "viewer")
    assert read.status_code == 200 and read.json() == goal
    listed = call(api, "GET", "/v1/goals", "viewer")
    assert listed.status_code == 200 and listed.json() == {"goals": [goal]}

    replacement = {**GOAL, "name": "Q1 win rate", "kpi": "win_rate", "target": 0.3}
    del replacement["segment"], replacement["owner"]  # a full replace: these become empty
    put = call(api, "PUT", path, "manager", replacement)
    assert put.status_code == 200, put.text
    replaced = put.json()
    assert replaced["id"] == goal["id"] and replaced["created_at"] == goal["created_at"]
    assert (replaced["kpi"], replaced["target"]) == ("win_rate", 0.3)
    assert (replaced["segment"], replaced["owner"]) == ({}, None)
    assert call(api, "GET", path, "viewer").json() == replaced

    deleted = call(api, "DELETE", path, "manager")
    assert deleted.status_code == 204 and deleted.content == b""
    error_of(call(api, "GET", path, "viewer"), 404, "goal_not_found")
    error_of(call(api, "DELETE", path, "manager"), 404, "goal_not_found")
    assert call(api, "GET", "/v1/goals", "viewer").json() == {"goals": []}


def test_deleting_a_goal_deletes_its_checks(api: Api) -> None:
    goal = created(api)
    engine = api.app.state.store.engine
    record_check(engine, goal["id"], GoalCheck(status="at_risk", probability=0.5))
    assert len(check_history(engine, goal["id"])) == 1
    assert call(api, "DELETE", f"/v1/goals/{goal['id']}", "manager").status_code == 204
    kept = created(api)
    assert kept["id"] == goal["id"] + 1  # ids are not reused
    assert check_history(engine, kept["id"]) == []


def test_goals_are_listed_by_id_and_filtered_by_owner(api: Api) -> None:
    ids = [created(api, owner=owner)["id"] for owner in ("emea", "apac", "emea")]
    created(api, owner=None)
    everyone = call(api, "GET", "/v1/goals", "viewer").json()["goals"]
    assert [g["id"] for g in everyone][:3] == ids and len(everyone) == 4
    emea = call(api, "GET", "/v1/goals?owner=emea", "viewer").json()["goals"]
    assert [g["id"] for g in emea] == [ids[0], ids[2]]
    assert call(api, "GET", "/v1/goals?owner=nobody", "viewer").json() == {"goals": []}


def test_each_role_reads_or_writes_as_allowed(api: Api) -> None:
    goal_id = created(api)["id"]
    for role in ROLES:
        reads = [
            call(api, "GET", "/v1/goals", role),
            call(api, "GET", f"/v1/goals/{goal_id}", role),
        ]
        for response in reads:
            assert response.status_code == (200 if role in READERS else 403), (role, response.text)
        writes = [
            (call(api, "POST", "/v1/goals", role, GOAL), 201),
            (call(api, "PUT", f"/v1/goals/{goal_id}", role, GOAL), 200),
        ]
        for response, success in writes:
            assert response.status_code == (success if role in WRITERS else 403), role
        if role not in WRITERS:
            error = error_of(writes[0][0], 403, "forbidden")
            assert "needs role manager" in error["message"] and role in error["message"]
    for role in ("viewer", "integration", "manager"):
        expected = 204 if role == "manager" else 403
        assert call(api, "DELETE", f"/v1/goals/{goal_id}", role).status_code == expected, role


ROUTES = [
    ("POST", "/v1/goals"),
    ("GET", "/v1/goals"),
    ("GET", "/v1/goals/1"),
    ("PUT", "/v1/goals/1"),
    ("DELETE", "/v1/goals/1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_key_is_401_and_an_integration_key_403(shared_api: Api, method: str, path: str) -> None:
    body = GOAL if method in ("POST", "PUT") else None
    response = call(shared_api, method, path, None, body)
    error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    error_of(call(shared_api, method, path, "integration", body), 403, "forbidden")


def test_unknown_ids_are_404(shared_api: Api) -> None:
    for method in ("GET", "PUT", "DELETE"):
        body = GOAL if method == "PUT" else None
        error = error_of(call(shared_api, method, "/v1/goals/999999", "manager", body), 404,
                         "goal_not_found")  # fmt: skip
        assert error["message"] == "no goal with id 999999"
    error_of(call(shared_api, "GET", "/v1/goals/0", "viewer"), 422, "invalid_request")
    error_of(call(shared_api, "GET", "/v1/goals/abc", "viewer"), 422, "invalid_request")


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"kpi": "revenue"}, "kpi", "unknown KPI 'revenue'"),
        ({"kpi": "win_rate", "target": 40}, "target", "win_rate is a share between 0 and 1"),
        ({"kpi": "stage_conversion.meeting", "target": 1.2}, "target", "share between 0 and 1"),
        ({"target": -1}, "target", "won_revenue cannot be negative"),
        ({"period_end": "2025-12-31"}, "period_end", "2025-12-31 is before period_start"),
        ({"segment": {"country": "SE"}}, "segment", "unknown segment key 'country'"),
        ({"name": "   "}, "name", "the name is empty"),
        ({"period_start": "1850-01-01"}, "period_start", "outside the years 1900-2199"),
    ],
)
def test_a_bad_goal_is_422_naming_the_field(
    shared_api: Api, changes: dict[str, Any], field: str, says: str
) -> None:
    for method, path in (("POST", "/v1/goals"), ("PUT", "/v1/goals/1")):
        response = call(shared_api, method, path, "manager", {**GOAL, **changes})
        error = error_of(response, 422, "invalid_goal")
        assert says in error["message"]
        assert error["details"] == [
            {"location": ["body", field], "message": error["details"][0]["message"]}
        ]
        assert says in error["details"][0]["message"]


def test_an_unknown_kpi_lists_the_valid_ids(shared_api: Api) -> None:
    response = call(shared_api, "POST", "/v1/goals", "manager", {**GOAL, "kpi": "leads"})
    message = error_of(response, 422, "invalid_goal")["message"]
    assert all(kpi in message for kpi in KPI_IDS)


def test_every_problem_of_a_goal_is_a_detail(shared_api: Api) -> None:
    bad = {**GOAL, "kpi": "nope", "period_end": "2025-01-01", "segment": {"x": "y"}}
    error = error_of(call(shared_api, "POST", "/v1/goals", "manager", bad), 422, "invalid_goal")
    assert [d["location"] for d in error["details"]] == [
        ["body", "kpi"],
        ["body", "period_end"],
        ["body", "segment"],
    ]
    assert error["message"].startswith("3 problems")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({k: v for k, v in GOAL.items() if k != "kpi"}, ["body", "kpi"]),
        ({**GOAL, "taget": 5}, ["body", "taget"]),
        ({**GOAL, "direction": "above"}, ["body", "direction"]),
        ({**GOAL, "target": "500000"}, ["body", "target"]),
        ({**GOAL, "target": True}, ["body", "target"]),
        ({**GOAL, "period_end": "31/03/2026"}, ["body", "period_end"]),
        ({**GOAL, "period_end": "2026-02-30"}, ["body", "period_end"]),
        ({**GOAL, "segment": {"employees": 50}}, ["body", "segment", "employees"]),
        ({**GOAL, "name": 7}, ["body", "name"]),
    ],
    ids=[
        "missing",
        "extra",
        "direction",
        "target-text",
        "target-bool",
        "date-format",
        "no-such-day",
        "segment-number",
        "name-number",
    ],
)
def test_a_malformed_goal_is_422_in_the_one_shape(
    shared_api: Api, body: dict[str, Any], location: list[str]
) -> None:
    response = call(shared_api, "POST", "/v1/goals", "manager", body)
    error = error_of(response, 422, "invalid_request")
    assert location in [d["location"] for d in error["details"]]


def test_a_non_finite_target_is_422(shared_api: Api) -> None:
    text = '{"name": "x", "kpi": "won_revenue", "direction": "at_least", "target": NaN, ' \
        '"period_start": "2026-01-01", "period_end": "2026-03-31"}'  # fmt: skip
    response = shared_api.client.post(
        "/v1/goals",
        content=text,
        headers={**shared_api.headers("manager"), "Content-Type": "application/json"},
    )
    error = error_of(response, 422, "invalid_request")
    assert ["body", "target"] in [d["location"] for d in error["details"]]


def test_the_openapi_schema_documents_the_goal_routes(shared_api: Api) -> None:
    paths = shared_api.client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/goals"]) == {"get", "post"}
    assert set(paths["/v1/goals/{goal_id}"]) == {"get", "put", "delete"}
    assert {"201", "401", "403", "422"} <= set(paths["/v1/goals"]["post"]["responses"])
    assert "404" in paths["/v1/goals/{goal_id}"]["delete"]["responses"]
