"""GET /v1/forecast: the engine's figures for viewers, the CLI's parameters checked as 422s
naming the parameter, and 503s that say how to train when there is nothing to forecast with."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any

import httpx
import pandas as pd
import pytest

from scoring.api_keys import ROLES
from scoring.forecast import forecast, forecast_models
from tests.api.conftest import Api, ApiFactory, TrainedHome, copy_home

DRAWS = 200


def _get(api: Api, query: str, role: str | None = "viewer") -> httpx.Response:
    headers = api.headers(role) if role else {}
    response: httpx.Response = api.client.get(f"/v1/forecast?{query}", headers=headers)
    return response


def _in_process(api: Api, trained_home: TrainedHome, **options: Any) -> list[dict[str, object]]:
    """The same forecast computed here, on the stored funnel and the app's champions."""
    champions = api.app.state.service.loaded.champions
    loaded = {name: model.model for name, model in champions.models.items()}
    models = forecast_models(loaded, champions.versions())
    return forecast(trained_home.funnel, models, **options).records()


@pytest.mark.parametrize(
    ("query", "options"),
    [
        ("freq=month&periods=2&draws=200&seed=3", {"freq": "month", "periods": 2, "seed": 3}),
        (
            "freq=quarter&periods=1&segment=region=Nordics&as_of=2026-05-15&draws=200",
            {
                "freq": "quarter",
                "periods": 1,
                "segment": {"region": "Nordics"},
                "as_of": pd.Timestamp("2026-05-15"),
            },
        ),
    ],
)
def test_the_forecast_is_the_engines(
    shared_full_api: Api, trained_home: TrainedHome, query: str, options: dict[str, Any]
) -> None:
    response = _get(shared_full_api, query)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == _in_process(shared_full_api, trained_home, draws=DRAWS, **options)
    assert body["models"] == trained_home.full_versions
    assert body["segment"] == options.get("segment", {})
    assert (body["freq"], body["periods"], body["draws"]) == (
        options["freq"],
        options["periods"],
        DRAWS,
    )
    day = options.get("as_of", trained_home.funnel.observed_until)
    assert day is not None
    assert datetime.fromisoformat(body["as_of"]).date() == pd.Timestamp(day).date()
    kpis = {row["kpi"] for row in body["rows"]}
    assert {"lead_count", "won_revenue", "win_rate", "churn_rate"} <= kpis
    assert isinstance(body["notes"], list)


def test_viewers_and_up_read_forecasts_integrations_do_not(shared_full_api: Api) -> None:
    query = "periods=1&draws=100"
    for role in ROLES:
        expected = 403 if role == "integration" else 200
        assert _get(shared_full_api, query, role).status_code == expected, role
    missing = _get(shared_full_api, query, role=None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    wrong = shared_full_api.client.get(
        f"/v1/forecast?{query}", headers={"Authorization": "Bearer not-a-key"}
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("query", "parameter", "code"),
    [
        ("freq=year", "freq", "invalid_request"),
        ("periods=0", "periods", "invalid_request"),
        ("periods=105", "periods", "invalid_request"),
        ("draws=99", "draws", "invalid_request"),
        ("draws=100001", "draws", "invalid_request"),
        ("seed=-1", "seed", "invalid_request"),
        ("as_of=2026-13-01", "as_of", "invalid_request"),
        ("as_of=2026-02-30", "as_of", "invalid_request"),
        ("as_of=15.05.2026", "as_of", "invalid_request"),
        ("as_of=2020-01-01", "as_of", "invalid_request"),  # before the first lead
        ("as_of=2030-01-01", "as_of", "invalid_request"),  # after the end of the data
        ("segment=Nordics", "segment", "invalid_request"),
        ("segment=planet=Mars", "segment", "invalid_request"),
        ("segment=region=Nordics&segment=region=APAC", "segment", "invalid_request"),
        ("draws=100&draws=200", "draws", "invalid_request"),  # which one?
        ("freq=quarter&periods=9", "periods", "forecast_too_large"),  # 27 months
        ("periods=3&draws=5000", "draws", "forecast_too_large"),
    ],
)
def test_bad_parameters_are_422s_naming_the_parameter(
    shared_full_api: Api, query: str, parameter: str, code: str
) -> None:
    response = _get(shared_full_api, query)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert parameter in error["message"]
    assert ["query", parameter] in [detail["location"][:2] for detail in error["details"]]


def test_an_unknown_segment_key_lists_the_lead_columns(shared_full_api: Api) -> None:
    error = _get(shared_full_api, "segment=planet=Mars&draws=100").json()["error"]
    assert "planet" in error["message"] and "region" in error["message"]


def test_without_champions_it_is_503_saying_how_to_train(empty_api: Api) -> None:
    response = _get(empty_api, "draws=100")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_model"
    assert "funnelcast train --promote" in error["message"]


def test_without_data_it_is_503_saying_how_to_load_it(
    start_api: ApiFactory, trained_home: TrainedHome, tmp_path: Any
) -> None:
    home = copy_home(trained_home.full, tmp_path)
    shutil.copy2(trained_home.empty / "funnel.db", home / "funnel.db")  # champions, no funnel
    response = _get(start_api(home=home), "draws=100")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_data"
    assert "funnelcast ingest" in error["message"]


def test_a_pushed_lead_is_in_the_next_forecast(full_api: Api) -> None:
    before = _get(full_api, "periods=1&draws=100").json()
    lead = {"created_at": "2026-06-30T09:30:00Z", "attributes": {"region": "Nordics"}}
    pushed = full_api.client.put(
        "/v1/leads/CRM-forecast", json=lead, headers=full_api.headers("integration")
    )
    assert pushed.status_code in (200, 201), pushed.text

    after = _get(full_api, "periods=1&draws=100").json()

    # A push moves the end of the data to now: the worker reloaded the funnel.
    assert after["as_of"] > before["as_of"]
