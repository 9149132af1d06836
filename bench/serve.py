"""Scoring API throughput and latency: `funnelcast serve` against MLflow's own model server.

    make demo                      # (once) trains and promotes champions in demo-home/
    .venv/bin/python bench/serve.py [--home demo-home] [--seconds 15] [--workers 1,2]

For each worker count, starts `funnelcast serve` and `mlflow models serve -m
models:/lead-conversion@champion --env-manager local` (the registered model notebooks and
batch users load), one at a time on 127.0.0.1 so they never share the cores, and drives each
with wrk: 8 connections, `--seconds` each, one lead per request and then 100 leads per request
(the same leads for both servers). Prints requests/s, leads/s, p50 and p99 latency, errors, and
the ratios funnelcast / MLflow. Needs `wrk` (apt-get install wrk).

Targets on the 2-core machine with 1 worker (issue 4): one lead per request at least 500
requests/s with p99 at most 25 ms and at least 10x MLflow's requests/s; 100 leads per request at
least 3x MLflow's leads/s. The client runs on the same machine and takes a core of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.api_keys import create_key
from scoring.settings import Settings
from scoring.store import FunnelStore

_VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    leads_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def _to_ms(text: str) -> float:
    """A wrk latency (`812.00us`, `1.20ms`, `2.50s`, `1.02m`) in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def _wrk(url: str, body: str, headers: dict[str, str], seconds: int, leads: int) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write(f"wrk.body = {json.dumps(body)}\n")
        for name, value in {"Content-Type": "application/json", **headers}.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
    try:
        report = subprocess.run(
            ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-s", script.name, url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"50%\s+(\S+)", report).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"99%\s+(\S+)", report).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    failed = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in failed.groups()) if failed else 0
    return LoadResult(rate, rate * leads, p50, p99, errors)


def _leads(home: Path, count: int) -> pd.DataFrame:
    """Leads the models never saw: the most recent in the store, their attributes as sent."""
    store = FunnelStore.open(Settings(home=home).store_url)
    try:
        funnel = store.load()
    finally:
        store.close()
    columns = ["lead_id", "created_at", *funnel.features]
    return funnel.leads[columns].tail(count).reset_index(drop=True)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _funnelcast_body(leads: pd.DataFrame, features: list[str]) -> str:
    records = []
    for values in leads.to_dict("records"):
        attributes = {f: values[f] for f in features if pd.notna(values[f])}
        records.append(
            {
                "lead_id": str(values["lead_id"]),
                "created_at": pd.Timestamp(values["created_at"]).isoformat(),
                "attributes": {
                    k: (v.item() if hasattr(v, "item") else v) for k, v in attributes.items()
                },
            }
        )
    return json.dumps({"leads": records})


def _mlflow_body(leads: pd.DataFrame) -> str:
    frame = leads.copy()
    frame["created_at"] = frame["created_at"].astype(str)
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})


def _run_funnelcast(
    home: Path, workers: int, bodies: dict[int, str], key: str, seconds: int
) -> dict[int, LoadResult]:
    port = _free_port()
    env = {**os.environ, "FUNNELCAST_HOME": str(home)}
    process = subprocess.Popen(
        [
            str(_VENV_BIN / "funnelcast"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/readyz", process)
        url = f"http://127.0.0.1:{port}/v1/leads/score"
        headers = {"Authorization": f"Bearer {key}"}
        _wrk(url, bodies[1], headers, 2, 1)  # warm-up
        return {n: _wrk(url, body, headers, seconds, n) for n, body in bodies.items()}
    finally:
        _stop(process)


def _run_mlflow(
    home: Path, workers: int, bodies: dict[int, str], seconds: int
) -> dict[int, LoadResult]:
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": Settings(home=home).tracking_uri,
        "PATH": f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    process = subprocess.Popen(
        [
            str(_VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/lead-conversion@champion",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", process)
        url = f"http://127.0.0.1:{port}/invocations"
        _wrk(url, bodies[1], {}, 2, 1)
        return {n: _wrk(url, body, {}, seconds, n) for n, body in bodies.items()}
    finally:
        _stop(process)


def _print(workers: int, ours: dict[int, LoadResult], theirs: dict[int, LoadResult]) -> None:
    print(f"\n== {workers} worker(s) ==")
    header = ("server", "leads/req", "req/s", "leads/s", "p50 ms", "p99 ms", "errors")
    print("{:<11} {:>9} {:>9} {:>10} {:>8} {:>8} {:>7}".format(*header))
    for name, results in (("funnelcast", ours), ("mlflow", theirs)):
        for n, r in results.items():
            figures = (r.requests_per_s, r.leads_per_s, r.p50_ms, r.p99_ms, r.errors)
            print(
                "{:<11} {:>9} {:>9.1f} {:>10.0f} {:>8.2f} {:>8.2f} {:>7}".format(name, n, *figures)
            )
    for n in ours:
        ratio = (
            ours[n].leads_per_s / theirs[n].leads_per_s if theirs[n].leads_per_s else float("inf")
        )
        print(f"funnelcast / mlflow at {n} lead(s) per request: {ratio:.1f}x")
    if workers == 1 and 1 in ours and 100 in ours:
        one, hundred = ours[1], ours[100]
        rate_ok = "met" if one.requests_per_s >= 500 else "MISSED"
        p99_ok = "met" if one.p99_ms <= 25 else "MISSED"
        print(
            "targets (1 worker): "
            f"1 lead/req >= 500 req/s: {one.requests_per_s:.0f} {rate_ok}; "
            f"p99 <= 25 ms: {one.p99_ms:.1f} {p99_ok}; "
            f">= 10x mlflow: {one.requests_per_s / theirs[1].requests_per_s:.1f}x; "
            f"100/req >= 3x mlflow leads/s: {hundred.leads_per_s / theirs[100].leads_per_s:.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path("demo-home"))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    home = args.home.resolve()
    if not (home / "mlflow.db").is_file():
        sys.exit(f"no trained models in {home}: run `make demo` first (or pass --home)")
    leads = _leads(home, 100)
    store = FunnelStore.open(Settings(home=home).store_url)
    try:
        features = list(store.load().features)
        key = create_key(store.engine, "integration", f"bench-serve-{int(time.time())}")
    finally:
        store.close()
    ours_bodies = {
        1: _funnelcast_body(leads.head(1), features),
        100: _funnelcast_body(leads, features),
    }
    their_bodies = {1: _mlflow_body(leads.head(1)), 100: _mlflow_body(leads)}
    print(f"home {home}; {os.cpu_count()} cores; wrk: 1 thread, 8 connections, {args.seconds} s")
    for workers in (int(w) for w in args.workers.split(",")):
        ours = _run_funnelcast(home, workers, ours_bodies, key, args.seconds)
        theirs = _run_mlflow(home, workers, their_bodies, args.seconds)
        _print(workers, ours, theirs)


if __name__ == "__main__":
    main()
