"""Goal attainment over the API: a check is the engine's (`check_goal` in-process gives the same
figures for the same seed), every check is recorded in the goal's history, the roll-up counts
each owner's goals by status, and the status thresholds are the app's settings."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from scoring.api_keys import ROLES
from scoring.attainment import check_goal
from scoring.forecast import forecast_models
from scoring.goal_store import check_history
from scoring.goals import Goal
from serve.app import create_app
from tests.api.conftest import Api, ApiFactory, TrainedHome, copy_home, home_settings

DRAWS = 200
# The data end on 2026-06-30: a quarter under way, one over, one to come.
CURRENT: dict[str, Any] = {
    "name": "Summer win rate",
    "kpi": "win_rate",
    "direction": "at_least",
    "target": 0.2,
    "period_start": "2026-06-01",
    "period_end": "2026-08-31",
    "owner": "team-a",
}
PAST: dict[str, Any] = {
    "name": "Q1 deals",
    "kpi": "won_deals",
    "direction": "at_least",
    "target": 1,
    "period_start": "2026-01-01",
    "period_end": "2026-03-31",
    "owner": "team-a",
}
COMING: dict[str, Any] = {
    "name": "Q3 deals, at most",
    "kpi": "won_deals",
    "direction": "at_most",
    "target": 60,
    "period_start": "2026-07-01",
    "period_end": "2026-09-30",
    "owner": "team-b",
}


def _goal_id(api: Api, fields: dict[str, Any]) -> int:
    response = api.client.post("/v1/goals", json=fields, headers=api.headers("manager"))
    assert response.status_code == 201, response.text
    goal_id: int = response.json()["id"]
    return goal_id


def _get(api: Api, path: str, role: str | None = "viewer") -> httpx.Response:
    headers = api.headers(role) if role else {}
    response: httpx.Response = api.client.get(path, headers=headers)
    return response


def _in_process(api: Api, trained_home: TrainedHome, fields: dict[str, Any]) -> dict[str, Any]:
    """`check_goal` here, on the stored funnel and the app's champions, as the API words it."""
    champions = api.app.state.service.loaded.champions
    loaded = {name: model.model for name, model in champions.models.items()}
    goal = Goal(
        **{
            **fields,
            "period_start": date.fromisoformat(fields["period_start"]),
            "period_end": date.fromisoformat(fields["period_end"]),
        }
    )
    models = forecast_models(loaded, champions.versions())
    record: dict[str, Any] = check_goal(goal, trained_home.funnel, models, draws=DRAWS).as_record()
    return record


def test_a_check_is_the_engines_and_is_recorded(full_api: Api, trained_home: TrainedHome) -> None:
    goal_id = _goal_id(full_api, CURRENT)
    path = f"/v1/goals/{goal_id}/attainment?draws={DRAWS}"

    first = _get(full_api, path)

    assert first.status_code == 200, first.text
    body = first.json()
    expected = _in_process(full_api, trained_home, CURRENT)
    attainment = body["attainment"]
    assert attainment["probability"] == expected["probability"]
    assert attainment["status"] == expected["status"]
    assert attainment["forecast"] == expected["forecast"]
    assert attainment["actual"] == expected["actual"]
    assert attainment["what_it_takes"] == expected["what_it_takes"]
    assert attainment["state"] == "current"
    assert body["goal"]["id"] == goal_id and body["goal"]["name"] == CURRENT["name"]
    (point,) = body["history"]
    assert point["status"] == attainment["status"]
    assert point["probability"] == attainment["probability"]
    assert point["actual"] == attainment["actual"]
    figures = attainment["forecast"]
    assert (point["forecast_p10"], point["forecast_p50"], point["forecast_p90"]) == (
        figures["p10"],
        figures["p50"],
        figures["p90"],
    )

    second = _get(full_api, path).json()

    assert len(second["history"]) == 2
    assert second["history"][0] == point
    assert second["history"][1]["checked_at"] >= point["checked_at"]
    assert second["attainment"]["probability"] == attainment["probability"]  # same seed
    assert len(check_history(full_api.app.state.store.engine, goal_id)) == 2


def test_the_rollup_counts_each_owners_goals_by_status(full_api: Api) -> None:
    goals = {"current": CURRENT, "past": PAST, "coming": COMING}
    ids = {name: _goal_id(full_api, fields) for name, fields in goals.items()}

    team_a = _get(full_api, f"/v1/attainment?owner=team-a&draws={DRAWS}")

    assert team_a.status_code == 200, team_a.text
    body = team_a.json()
    assert {item["goal"]["id"] for item in body["goals"]} == {ids["current"], ids["past"]}
    by_id = {item["goal"]["id"]: item["attainment"] for item in body["goals"]}
    assert by_id[ids["past"]]["status"] == "met" and by_id[ids["past"]]["state"] == "past"
    (rollup,) = body["owners"]
    assert rollup["owner"] == "team-a" and rollup["goals"] == 2 and rollup["not_checked"] == 0
    statuses = [a["status"] for a in by_id.values()]
    assert {s: rollup[s] for s in ("on_track", "at_risk", "off_track", "met", "missed")} == {
        s: statuses.count(s) for s in ("on_track", "at_risk", "off_track", "met", "missed")
    }
    probabilities = [a["probability"] for a in by_id.values()]
    assert rollup["mean_probability"] == pytest.approx(sum(probabilities) / 2)

    everyone = _get(full_api, f"/v1/attainment?draws={DRAWS}").json()

    assert [r["owner"] for r in everyone["owners"]] == ["team-a", "team-b"]
    assert sum(r["goals"] for r in everyone["owners"]) == 3
    engine = full_api.app.state.store.engine
    # Every check was recorded: team-a's goals twice, team-b's once.
    assert [len(check_history(engine, ids[n])) for n in ("current", "past", "coming")] == [2, 2, 1]


def test_a_goal_the_engine_does_not_forecast_is_422_and_listed_unchecked(full_api: Api) -> None:
    stage = {**CURRENT, "kpi": "stage_conversion.qualified", "target": 0.5, "owner": "team-s"}
    goal_id = _goal_id(full_api, stage)

    alone = _get(full_api, f"/v1/goals/{goal_id}/attainment?draws={DRAWS}")

    assert alone.status_code == 422
    assert alone.json()["error"]["code"] == "goal_not_checkable"
    listed = _get(full_api, f"/v1/attainment?owner=team-s&draws={DRAWS}").json()
    (item,) = listed["goals"]
    assert item["attainment"] is None and "not forecast" in item["problem"]
    assert listed["owners"][0]["not_checked"] == 1
    assert listed["owners"][0]["mean_probability"] is None


def test_unknown_goals_are_404s_and_roles_are_the_goals(shared_full_api: Api) -> None:
    error = _get(shared_full_api, "/v1/goals/424242/attainment").json()["error"]
    assert error["code"] == "goal_not_found"
    goal_id = _goal_id(shared_full_api, {**PAST, "owner": "roles"})
    for role in ROLES:
        expected = 403 if role == "integration" else 200
        one = _get(shared_full_api, f"/v1/goals/{goal_id}/attainment", role)
        every = _get(shared_full_api, "/v1/attainment?owner=roles", role)
        assert (one.status_code, every.status_code) == (expected, expected), role
    assert _get(shared_full_api, f"/v1/goals/{goal_id}/attainment", role=None).status_code == 401
    assert _get(shared_full_api, "/v1/attainment", role=None).status_code == 401


@pytest.mark.parametrize(
    ("query", "parameter", "code"),
    [
        ("draws=50", "draws", "invalid_request"),
        ("as_of=2026-02-30", "as_of", "invalid_request"),
        ("as_of=2019-12-31", "as_of", "invalid_request"),
        ("draws=10000", "draws", "forecast_too_large"),  # 3 months x 10,000
        ("seed=1&seed=2", "seed", "invalid_request"),
    ],
)
def test_bad_parameters_are_422s(
    shared_full_api: Api, query: str, parameter: str, code: str
) -> None:
    owner = f"bad-{parameter}-{code}"
    goal_id = _goal_id(shared_full_api, {**COMING, "owner": owner})
    one, every = (
        _get(shared_full_api, f"{path}{query}")
        for path in (f"/v1/goals/{goal_id}/attainment?", f"/v1/attainment?owner={owner}&")
    )
    if code == "forecast_too_large":  # a goal too costly to check is listed with the reason
        (item,) = every.json()["goals"]
        assert item["attainment"] is None and "draws" in item["problem"]
    for response in (one, every) if code != "forecast_too_large" else (one,):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
        assert parameter in response.json()["error"]["message"]


def test_a_goal_too_far_ahead_is_refused(shared_full_api: Api) -> None:
    far = {**COMING, "period_start": "2028-01-01", "period_end": "2028-12-31", "owner": "far"}
    goal_id = _goal_id(shared_full_api, far)

    response = _get(shared_full_api, f"/v1/goals/{goal_id}/attainment")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "forecast_too_large" and "funnelcast" in error["message"]
    assert error["details"][0]["location"] == ["path", "goal_id"]


def test_status_thresholds_are_the_settings(
    start_api: ApiFactory, trained_home: TrainedHome, tmp_path: Path
) -> None:
    lenient = start_api(
        home=copy_home(trained_home.full, tmp_path), goal_on_track=0.0, goal_at_risk=0.0
    )
    goal_id = _goal_id(lenient, {**CURRENT, "target": 0.99})  # about no chance

    attainment = _get(lenient, f"/v1/goals/{goal_id}/attainment?draws={DRAWS}").json()

    assert attainment["attainment"]["probability"] < 0.05
    assert attainment["attainment"]["status"] == "on_track"  # every probability is >= 0


def test_thresholds_out_of_order_fail_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="GOAL_AT_RISK"):
        home_settings(tmp_path, goal_on_track=0.3, goal_at_risk=0.6)
    monkeypatch.setenv("FUNNELCAST_HOME", str(tmp_path))
    monkeypatch.setenv("FUNNELCAST_GOAL_ON_TRACK", "1.5")
    with pytest.raises(ValidationError, match="goal_on_track"):
        create_app()


def test_without_champions_only_periods_over_are_checked(
    start_api: ApiFactory, trained_home: TrainedHome, tmp_path: Path
) -> None:
    home = copy_home(trained_home.empty, tmp_path)
    shutil.copy2(trained_home.full / "funnel.db", home / "funnel.db")  # the data, no models
    api = start_api(home=home)
    past, current = _goal_id(api, PAST), _goal_id(api, CURRENT)

    assert _get(api, f"/v1/goals/{past}/attainment").json()["attainment"]["status"] == "met"
    response = _get(api, f"/v1/goals/{current}/attainment")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_model"
    assert "funnelcast train --promote" in response.json()["error"]["message"]
    assert _get(api, "/v1/attainment").status_code == 503
