"""The models a worker serves, and reloading them: admin only, atomic under load, and followed
by every worker of the same home."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mlflow

from tests.api.conftest import Api, ApiFactory, TrainedHome


def _promote(api: Api, version: str) -> None:
    """Move lead-conversion's champion alias in the app's registry (as `funnelcast promote`)."""
    uri = api.settings.tracking_uri  # both URIs: a client's registry is otherwise the global one
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("lead-conversion", "champion", version)


def test_models_lists_versions_metrics_and_training_data(
    api: Api, trained_home: TrainedHome
) -> None:
    response = api.get("/v1/models", role="viewer")
    assert response.status_code == 200
    body = response.json()
    models = {m["name"]: m for m in body["models"]}
    assert {name: m["version"] for name, m in models.items()} == trained_home.versions
    assert all(m["source"] == "registry" for m in models.values())
    assert 0.5 < models["lead-conversion"]["metrics"]["roc_auc"] <= 1.0
    training = models["lead-conversion"]["training"]
    assert training["dataset"] == "synthetic"
    assert training["split"]
    assert int(training["rows.train"]) > 0
    assert set(body["missing"]) == {"lead-volume", "churn"}
    assert body["degraded"] == []
    assert body["reload_generation"] == 0


def test_reload_is_for_admins(api: Api) -> None:
    for role in ("viewer", "manager", "integration"):
        assert api.post("/v1/admin/reload", role=role).status_code == 403
    first = api.post("/v1/admin/reload", role="admin")
    assert first.status_code == 200
    assert "no version changed" in first.json()["message"]
    second = api.post("/v1/admin/reload", role="admin").json()
    assert second["reload_generation"] == first.json()["reload_generation"] + 1


def test_reload_picks_up_a_promoted_version(api: Api, trained_home: TrainedHome) -> None:
    spare = trained_home.spare_conversion
    _promote(api, spare)
    # Moving the alias alone changes nothing a worker serves until it is asked to reload.
    models = api.get("/v1/models", role="viewer").json()["models"]
    assert {m["name"]: m["version"] for m in models}["lead-conversion"] == "1"
    response = api.post("/v1/admin/reload", role="admin")
    assert response.status_code == 200
    assert response.json()["models"]["lead-conversion"] == spare
    assert f"1 -> {spare}" in response.json()["message"]
    assert api.client.get("/readyz").json()["models"]["lead-conversion"] == spare


def test_reload_under_concurrent_requests_loses_none(
    api: Api, trained_home: TrainedHome, leads: list[dict[str, Any]]
) -> None:
    spare = trained_home.spare_conversion
    served: list[tuple[str, int, str | None]] = []  # (phase when sent, status, version)
    phase = ["before"]
    stop = threading.Event()

    def fire(worker: int) -> None:
        path = "/v1/leads/rank" if worker % 2 else "/v1/leads/score"
        batch = leads[worker * 10 : worker * 10 + 1 + worker * 3]
        while not stop.is_set():
            sent_in = phase[0]
            response = api.post(path, json={"leads": batch, "explain": worker == 3})
            version = response.json().get("models", {}).get("lead-conversion")
            served.append((sent_in, response.status_code, version))

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(fire, worker) for worker in range(4)]
        time.sleep(0.5)
        for target in (spare, "1", spare):
            _promote(api, target)
            phase[0] = "reloading"
            reload = api.post("/v1/admin/reload", role="admin")
            assert reload.status_code == 200, reload.text
            assert reload.json()["models"]["lead-conversion"] == target
            phase[0] = f"after {target}"
            time.sleep(0.3)
        stop.set()
        for worker in workers:
            worker.result()

    failed = [(phase, status) for phase, status, _ in served if status != 200]
    assert failed == [], failed
    assert {v for p, _, v in served if p == "before"} == {"1"}
    last = [v for p, _, v in served if p == f"after {spare}"]
    assert len(last) > 4 and set(last) == {spare}
    during = [v for p, _, v in served if p == "reloading"]
    assert len(during) > 4, "no request overlapped a reload"
    assert set(during) <= {"1", spare}


def test_another_worker_follows_the_reload_generation(
    start_api: ApiFactory, trained_home: TrainedHome, leads: list[dict[str, Any]]
) -> None:
    spare = trained_home.spare_conversion
    first = start_api(reload_poll_seconds=0.1)
    second = start_api(home=first.settings.home, reload_poll_seconds=0.1)

    def version_of(api: Api) -> str:
        body = api.post("/v1/leads/score", json={"leads": leads[:1]}).json()
        version: str = body["models"]["lead-conversion"]
        return version

    _promote(first, spare)
    time.sleep(0.5)  # several polls: an alias moving is not a reload
    assert version_of(second) == "1"

    asked = time.monotonic()
    generation = first.post("/v1/admin/reload", role="admin").json()["reload_generation"]
    reload_seconds = time.monotonic() - asked  # what loading the models takes on this machine
    assert version_of(first) == spare
    # The second worker notices within a poll interval, then loads as the first did: allow a
    # few polls and a few loads (the machine running the tests may be busy).
    deadline = 5 * 0.1 + 3 * reload_seconds + 1.0
    while version_of(second) != spare:
        waited = time.monotonic() - asked
        assert waited < deadline, (
            f"no reload after {waited:.1f} s (a reload takes {reload_seconds:.1f} s)"
        )
        time.sleep(0.05)
    models = second.get("/v1/models", role="viewer").json()
    assert models["reload_generation"] == generation
    assert models["degraded"] == []  # loaded from the registry, not fallen back to a copy
