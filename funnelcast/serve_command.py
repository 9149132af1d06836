"""`funnelcast serve`: the scoring API under uvicorn, one process per worker."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from funnelcast.cli_support import err, friendly_errors, load_settings, open_store
from scoring.errors import FunnelcastInputError
from scoring.settings import Settings

# A registry that is down should cost seconds at start-up, not MLflow's default minutes of
# retries: the service then starts from its local model copies (and says it is degraded).
_MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# With --workers N, uvicorn's supervisor pings each worker every half second and kills one that
# has not answered within this many seconds. A worker is spawned: before it can answer at all it
# re-imports the `funnelcast` command (pandas, the CLI: about 5 s on two idle cores, several
# times that on busy ones). At uvicorn's default of 5 s every new worker was killed as "hung"
# and replaced, over and over, while the survivors took all the traffic. A worker that dies is
# still replaced at once; only a hung one now takes this long to be found.
WORKER_HEALTHCHECK_SECONDS = 60


def prepare_environment(settings: Settings) -> None:
    """What every worker inherits: an empty folder for the multiprocess Prometheus samples
    (stale files from an earlier run would add old counts), and MLflow's HTTP limits."""
    folder = settings.home / ".prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    for name, value in _MLFLOW_HTTP.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def run_server(host: str, port: int, workers: int, access_log: bool = True) -> None:
    import uvicorn

    uvicorn.run(
        "serve.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
        # The app answers malformed requests itself; uvicorn's own limits stay generous.
        timeout_keep_alive=30,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log one line per request (method, path, status).")
    ] = True,
) -> None:
    """Start the scoring API (FastAPI under uvicorn). Keys: `funnelcast keys create`."""
    settings = load_settings()
    if host not in {"127.0.0.1", "localhost", "::1"}:
        err.print(
            f"[yellow]note:[/yellow] listening on {host}: the API uses bearer keys over plain "
            "HTTP; put it behind TLS (a reverse proxy) before exposing it beyond this machine"
        )
    # Migrate the store once here, so that workers starting together do not race to do it.
    open_store(settings).close()
    prepare_environment(settings)
    try:
        run_server(host, port, workers, access_log)
    except OSError as error:
        raise FunnelcastInputError(f"cannot listen on {host}:{port}: {error}") from None
