"""Probes and scrapers: liveness, readiness (ready, degraded, not ready) and Prometheus metrics."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest

from tests.api.conftest import Api, ApiFactory, TrainedHome


def test_healthz_needs_no_key(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_the_champions(api: Api, trained_home: TrainedHome) -> None:
    response = api.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["models"] == trained_home.versions
    # Only the models this home never trained are missing; nothing is wrong with the others.
    assert all(p.startswith(("lead-volume:", "churn:")) for p in body["problems"])


def test_readyz_is_503_without_a_model(empty_api: Api) -> None:
    response = empty_api.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["models"] == {}
    assert any("lead-conversion" in problem for problem in body["problems"])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens once the socket is closed


def test_unreachable_registry_serves_the_local_copies_degraded(
    start_api: ApiFactory,
    trained_home: TrainedHome,
    leads: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = start_api()  # a first start resolved the aliases and kept copies in models/
    expected = first.post("/v1/leads/score", json={"leads": leads[:5]}).json()["results"]
    home = first.settings.home

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cut_off = start_api(home=home, mlflow_tracking_uri=f"http://127.0.0.1:{_closed_port()}")

    ready = cut_off.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["models"] == trained_home.versions
    assert any("unreachable" in problem for problem in ready.json()["problems"])
    models = cut_off.get("/v1/models", role="viewer").json()
    assert {m["source"] for m in models["models"]} == {"local copy"}
    assert models["degraded"]

    response = cut_off.post("/v1/leads/score", json={"leads": leads[:5]})
    assert response.status_code == 200
    assert response.json()["models"] == trained_home.versions
    assert response.json()["results"] == expected


# Label values hold braces themselves (route="/v1/leads/{lead_id}/scores").
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def _samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            labels = re.findall(r'(\w+)="([^"]*)"', match["labels"] or "")
            found[frozenset(labels)] = float(match["value"])
    return found


def _count(api: Api, name: str, **labels: str) -> float:
    text = api.client.get("/metrics").text
    wanted = set(labels.items())
    return sum(v for k, v in _samples(text, name).items() if wanted <= k)


def test_metrics_count_requests_by_route_template_and_leads_scored(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    before_score = _count(
        api, "funnelcast_requests_total", route="/v1/leads/score", method="POST", status="200"
    )
    history_route = "/v1/leads/{lead_id}/scores"
    before_history = _count(api, "funnelcast_requests_total", route=history_route)
    before_leads = _count(api, "funnelcast_leads_scored_total", endpoint="score")
    before_errors = _count(api, "funnelcast_errors_total", route="/v1/leads/score", status="401")

    for _ in range(3):
        assert api.post("/v1/leads/score", json={"leads": leads[:4]}).status_code == 200
    api.get(f"/v1/leads/{leads[0]['lead_id']}/scores")
    api.get(f"/v1/leads/{leads[1]['lead_id']}/scores")
    api.client.post("/v1/leads/score", json={"leads": leads[:1]})  # no key: 401

    after = api.client.get("/metrics").text
    assert "funnelcast_request_seconds_bucket" in after
    assert (
        _count(
            api, "funnelcast_requests_total", route="/v1/leads/score", method="POST", status="200"
        )
        == before_score + 3
    )
    assert _count(api, "funnelcast_requests_total", route=history_route) == before_history + 2
    assert not any(leads[0]["lead_id"] in line for line in after.splitlines())
    assert _count(api, "funnelcast_leads_scored_total", endpoint="score") == before_leads + 12
    assert (
        _count(api, "funnelcast_errors_total", route="/v1/leads/score", status="401")
        == before_errors + 1
    )
    versions = _samples(after, "funnelcast_model_version")
    assert versions[frozenset({("model", "lead-conversion"), ("version", "1")})] == 1.0
