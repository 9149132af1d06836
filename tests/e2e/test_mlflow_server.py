"""funnelcast against an MLflow tracking server that goes away and comes back.

One scenario, as an operator lives it, every piece a real process on 127.0.0.1:

1. `mlflow server` (SQLite backend, proxied artifacts, one worker, no job runner) starts while
   a small synthetic funnel (2,000 leads, as `funnelcast generate` makes) is ingested into a
   fresh FUNNELCAST_HOME;
2. `funnelcast train --models lead-conversion --promote` trains, registers and promotes
   version 1 on the server; `funnelcast serve` starts from it while a candidate, version 2, is
   registered (not promoted: the service keeps scoring with version 1);
3. the MLflow server stops: scores keep coming from the local copy in models/; a reload fails
   no request and `/readyz` turns degraded, naming the registry;
4. the server restarts on the same port and backend; `funnelcast promote lead-conversion/2`
   moves the champion; a reload picks up version 2 and `/readyz` is ready again.

Every process is started in a session of its own and stopped (with its children) by the
fixture's finalizer, whatever the outcome. About 60 s on two cores, most of it process start-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest

from scoring.api_keys import create_key
from scoring.settings import Settings
from scoring.store import FunnelStore
from scoring.synthetic import generate_funnel

BIN = Path(sys.executable).parent
FUNNELCAST = str(BIN / "funnelcast")
MLFLOW = str(BIN / "mlflow")
MODEL = "lead-conversion"


_START = time.monotonic()


def _step(what: str) -> None:
    """A timestamped line in the captured output: where the time went, shown on failure."""
    print(f"[{time.monotonic() - _START:6.1f} s] {what}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Long-running processes of one test, each the leader of its own session, so that
    stopping one also stops what it spawned (`mlflow server` runs uvicorn as a child)."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], env: dict[str, str], cwd: Path, log: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            process = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the process's group, SIGKILL after 20 s; waits for the leader."""
        if process not in self.running:
            return
        self.running.remove(process)
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)  # the group is the one this process leads
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        process.poll()

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{_tail(log)}")


def _wait_down(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
        except httpx.ConnectError:
            return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} still answers {timeout} s after the server was stopped")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else ""


class MlflowServer:
    """`mlflow server` on a fixed port over a SQLite backend, startable again after a stop."""

    def __init__(self, processes: Processes, root: Path) -> None:
        self.processes = processes
        self.root = root
        self.port = _free_port()
        self.artifacts = root / "artifacts"
        self.log = root / "mlflow-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.env |= {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = self.processes.start(
            [
                MLFLOW, "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.artifacts),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            self.env, self.root, self.log,
        )  # fmt: skip

    def wait_ready(self) -> None:
        assert self.process is not None
        _wait_for(f"{self.url}/health", self.process, self.log, timeout=90)

    def stop(self) -> None:
        assert self.process is not None
        self.processes.stop(self.process)
        _wait_down(f"{self.url}/health")


class Funnelcast:
    """The `funnelcast` command on one FUNNELCAST_HOME, pointed at the tracking server."""

    def __init__(self, root: Path, tracking_uri: str) -> None:
        self.root = root
        self.home = root / "home"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FUNNELCAST_"))
        }
        self.env |= {
            "FUNNELCAST_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [FUNNELCAST, *args], env=self.env, cwd=self.root, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(
                f"funnelcast {' '.join(args)} exited with {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout


def _lead_bodies(home: Path, count: int) -> list[dict[str, Any]]:
    """Request bodies of one lead each: the most recent stored leads, attributes as sent."""
    store = FunnelStore.open(Settings(home=home).store_url)
    try:
        funnel = store.load()
    finally:
        store.close()
    bodies = []
    for row in funnel.leads.tail(count).to_dict("records"):
        attributes = {
            f: (row[f].item() if hasattr(row[f], "item") else row[f])
            for f in funnel.features
            if pd.notna(row[f])
        }
        lead = {
            "lead_id": str(row["lead_id"]),
            "created_at": pd.Timestamp(row["created_at"]).isoformat(),
            "attributes": attributes,
        }
        bodies.append({"leads": [lead]})
    return bodies


def _funnel_and_keys(home: Path) -> tuple[str, str]:
    """A small synthetic funnel in the home's store (what `funnelcast generate` and `ingest`
    do, without two more process start-ups), and an integration and an admin key."""
    home.mkdir(parents=True, exist_ok=True)
    store = FunnelStore.open(Settings(home=home).store_url)
    try:
        store.ingest(generate_funnel(2000, seed=3).as_funnel(), source="synthetic (e2e)")
        return (
            create_key(store.engine, "integration", "e2e-crm"),
            create_key(store.engine, "admin", "e2e-admin"),
        )
    finally:
        store.close()


def _register_candidate(tracking_uri: str) -> str:
    """A second version of the champion's model files, registered and not promoted: the
    candidate the analyst promotes later (training one more would add 10-20 s, not coverage)."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    source = str(champion.source)  # a logged model, models:/m-<id>, registered once more
    candidate = client.create_model_version(
        MODEL, source, run_id=champion.run_id, model_id=source.removeprefix("models:/")
    )
    return str(candidate.version)


class Api:
    """The scoring API as the CRM (integration key) and the analyst (admin key) call it."""

    def __init__(self, url: str, integration: str, admin: str, bodies: list[dict[str, Any]]):
        self.client = httpx.Client(base_url=url, timeout=30)
        self.integration = {"Authorization": f"Bearer {integration}"}
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.bodies = bodies

    def close(self) -> None:
        self.client.close()

    def score(self, i: int = 0) -> httpx.Response:
        body = self.bodies[i % len(self.bodies)]
        return self.client.post("/v1/leads/score", json=body, headers=self.integration)

    def scored_version(self) -> str:
        answer = self.score()
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["results"]) == 1
        return str(answer.json()["models"][MODEL])

    def reload(self) -> dict[str, Any]:
        """POST /v1/admin/reload while another client keeps scoring: no request may fail."""
        statuses: list[int | str] = []
        stop = threading.Event()

        def keep_scoring() -> None:
            with httpx.Client(base_url=str(self.client.base_url), timeout=30) as other:
                i = 0
                while not stop.is_set():
                    body = self.bodies[i % len(self.bodies)]
                    try:
                        answer = other.post("/v1/leads/score", json=body, headers=self.integration)
                        statuses.append(answer.status_code)
                    except httpx.HTTPError as error:
                        statuses.append(type(error).__name__)
                    i += 1

        scorer = threading.Thread(target=keep_scoring)
        scorer.start()
        try:
            time.sleep(0.2)
            answer = self.client.post("/v1/admin/reload", headers=self.admin)
            time.sleep(0.2)
        finally:
            stop.set()
            scorer.join(timeout=60)
        assert answer.status_code == 200, answer.text
        assert statuses, "no score was sent during the reload"
        assert set(statuses) == {200}, f"requests failed during the reload: {statuses}"
        return dict(answer.json())

    def readiness(self) -> dict[str, Any]:
        answer = self.client.get("/readyz")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def model_source(self) -> str:
        answer = self.client.get("/v1/models", headers=self.admin)
        assert answer.status_code == 200, answer.text
        (model,) = [m for m in answer.json()["models"] if m["name"] == MODEL]
        return str(model["source"])


def test_serving_survives_the_tracking_server_going_away(
    tmp_path: Path, processes: Processes
) -> None:
    global _START
    _START = time.monotonic()
    mlflow_server = MlflowServer(processes, tmp_path)
    mlflow_server.start()
    cli = Funnelcast(tmp_path, mlflow_server.url)
    integration, admin = _funnel_and_keys(cli.home)  # while the tracking server starts
    _step("funnel ingested")
    mlflow_server.wait_ready()
    _step("mlflow server up")

    report = cli.run("train", "--models", MODEL, "--promote")
    _step("version 1 trained and promoted")
    assert f"{MODEL}/1" in report
    # The server keeps the artifacts (proxied), not the home of whoever trained.
    assert any(mlflow_server.artifacts.rglob("MLmodel")), "no model in the server's artifacts"
    assert not (cli.home / "mlartifacts").exists()

    port = _free_port()
    serve_log = tmp_path / "serve.log"
    serve = processes.start(
        [FUNNELCAST, "serve", "--port", str(port), "--workers", "1", "--no-access-log"],
        cli.env, tmp_path, serve_log,
    )  # fmt: skip
    # A candidate, registered while the service starts; not promoted, so not served.
    assert _register_candidate(mlflow_server.url) == "2"
    _step("version 2 registered")
    url = f"http://127.0.0.1:{port}"
    _wait_for(f"{url}/readyz", serve, serve_log, timeout=90)
    _step("funnelcast serve ready")
    with closing(Api(url, integration, admin, _lead_bodies(cli.home, 20))) as api:
        _outage_and_recovery(api, mlflow_server, cli)
    assert serve.poll() is None, _tail(serve_log)


def _outage_and_recovery(api: Api, mlflow_server: MlflowServer, cli: Funnelcast) -> None:

    assert api.scored_version() == "1"
    assert api.readiness()["status"] == "ready"
    assert api.model_source() == "registry"
    assert (cli.home / "models" / MODEL / "1" / "MLmodel").is_file()

    # The registry goes away: scoring goes on from the model in memory, then from the copy.
    mlflow_server.stop()
    _step("mlflow server stopped")
    assert api.scored_version() == "1"
    reloaded = api.reload()
    assert reloaded["models"][MODEL] == "1"
    assert "degraded" in reloaded["message"] and mlflow_server.url in reloaded["message"]
    readiness = api.readiness()
    assert readiness["status"] == "degraded", readiness
    assert readiness["models"][MODEL] == "1"
    assert any(
        "registry" in problem and mlflow_server.url in problem for problem in readiness["problems"]
    ), readiness["problems"]
    assert api.model_source() == "local copy"
    assert all(api.scored_version() == "1" for _ in range(3))

    # The registry is back, with the same backend; the candidate is promoted and picked up.
    _step("degraded checked")
    mlflow_server.start()
    mlflow_server.wait_ready()
    _step("mlflow server up again")
    report = cli.run("promote", f"{MODEL}/2", "--force", "--reason", "e2e: after the outage")
    assert f"champion → {MODEL}/2" in report
    _step("version 2 promoted")
    assert api.scored_version() == "1"  # nothing moves before the reload
    reloaded = api.reload()
    assert reloaded["models"][MODEL] == "2", reloaded
    assert "1 -> 2" in reloaded["message"]
    assert all(api.scored_version() == "2" for _ in range(3))
    readiness = api.readiness()
    assert readiness["status"] == "ready", readiness
    assert not [p for p in readiness["problems"] if "registry" in p], readiness["problems"]
    assert api.model_source() == "registry"
    assert (cli.home / "models" / MODEL / "2" / "MLmodel").is_file()
