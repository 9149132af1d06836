"""Scoring API throughput and latency: `funnelcast serve` against MLflow's own model server.

    make demo                      # (once) trains and promotes champions in demo-home/
    .venv/bin/python bench/serve.py [--home demo-home] [--seconds 15] [--workers 1,2] [--rounds 3]

For each worker count, starts `funnelcast serve` and `mlflow models serve -m
models:/lead-conversion@champion --env-manager local` (the registered model notebooks and
batch users load) on 127.0.0.1 and drives them in turn with wrk: 8 connections, `--seconds`
a run, one lead per request and 100 leads per request (the same leads for both servers). Only
the server under load works; the other sits idle. Each round runs every load once, so that
each funnelcast run has an MLflow run within a minute of it to compare with: this machine's
speed drifts by tens of percent from minute to minute, and one run is a poor judge of a bar.
Prints every run (requests/s, leads/s, p50 and p99 latency, errors), the ratios funnelcast /
MLflow round by round, and the targets judged on the medians, with how many rounds met each.
Needs `wrk` (apt-get install wrk).

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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
    # The distribution's own lines: "99%" also ends a "+/- Stdev" figure such as "99.99%".
    p50 = _to_ms(re.search(r"^\s+50%\s+(\S+)", report, re.M).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"^\s+99%\s+(\S+)", report, re.M).group(1))  # type: ignore[union-attr]
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


@contextmanager
def _funnelcast(home: Path, workers: int, key: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`funnelcast serve` running (warmed up): its score URL and the request headers."""
    port = _free_port()
    env = {**os.environ, "FUNNELCAST_HOME": str(home)}
    process = subprocess.Popen(
        [
            str(_VENV_BIN / "funnelcast"), "serve", "--port", str(port),
            "--workers", str(workers), "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}/v1/leads/score", {"Authorization": f"Bearer {key}"}
    finally:
        _stop(process)


@contextmanager
def _mlflow(home: Path, workers: int) -> Iterator[tuple[str, dict[str, str]]]:
    """`mlflow models serve` of the lead-conversion champion: its URL and (no) headers."""
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
        yield f"http://127.0.0.1:{port}/invocations", {}
    finally:
        _stop(process)


Rounds = dict[tuple[str, int], list[LoadResult]]


def _measure(
    home: Path,
    workers: int,
    bodies: dict[str, dict[int, str]],
    key: str,
    seconds: int,
    rounds: int,
) -> Rounds:
    """Both servers up at once (the one not under load sits idle), driven in turn: each round
    runs every (server, leads per request) load once, so each comparison is of two runs a
    minute apart at most. The machine's speed drifts by tens of percent over minutes."""
    results: Rounds = {}
    with _funnelcast(home, workers, key) as ours, _mlflow(home, workers) as theirs:
        servers = {"funnelcast": ours, "mlflow": theirs}
        for name, (url, headers) in servers.items():
            _wrk(url, bodies[name][1], headers, 2, 1)  # warm-up
        for _ in range(rounds):
            for n in (1, 100):
                for name, (url, headers) in servers.items():
                    result = _wrk(url, bodies[name][n], headers, seconds, n)
                    results.setdefault((name, n), []).append(result)
    return results


def _print(workers: int, results: Rounds) -> None:
    print(f"\n== {workers} worker(s) ==")
    header = ("server", "leads/req", "round", "req/s", "leads/s", "p50 ms", "p99 ms", "errors")
    print("{:<11} {:>9} {:>5} {:>9} {:>10} {:>8} {:>8} {:>7}".format(*header))
    for (name, n), runs in results.items():
        for index, r in enumerate(runs, start=1):
            figures = (r.requests_per_s, r.leads_per_s, r.p50_ms, r.p99_ms, r.errors)
            print(
                "{:<11} {:>9} {:>5} {:>9.1f} {:>10.0f} {:>8.2f} {:>8.2f} {:>7}".format(
                    name, n, index, *figures
                )
            )
    for n in (1, 100):
        ratios = [
            ours.leads_per_s / theirs.leads_per_s if theirs.leads_per_s else float("inf")
            for ours, theirs in zip(results["funnelcast", n], results["mlflow", n], strict=True)
        ]
        print(
            f"funnelcast / mlflow at {n} lead(s) per request, round by round: "
            + ", ".join(f"{r:.1f}x" for r in ratios)
            + f" (median {statistics.median(ratios):.1f}x)"
        )
    if workers == 1:
        _print_targets(results)


def _print_targets(results: Rounds) -> None:
    """Issue 4's 1-worker targets, judged on each round and on the medians."""
    one, hundred = results["funnelcast", 1], results["funnelcast", 100]
    theirs_one, theirs_hundred = results["mlflow", 1], results["mlflow", 100]
    checks = [
        ("1 lead/req >= 500 req/s", [r.requests_per_s for r in one], 500.0, True),
        ("1 lead/req p99 <= 25 ms", [r.p99_ms for r in one], 25.0, False),
        (
            "1 lead/req >= 10x mlflow req/s",
            [a.requests_per_s / b.requests_per_s for a, b in zip(one, theirs_one, strict=True)],
            10.0,
            True,
        ),
        (
            "100 leads/req >= 3x mlflow leads/s",
            [a.leads_per_s / b.leads_per_s for a, b in zip(hundred, theirs_hundred, strict=True)],
            3.0,
            True,
        ),
    ]
    if any(r.requests_per_s == 0 for r in theirs_one + theirs_hundred):
        print("targets (1 worker): not judged, an MLflow run answered nothing")
        return
    print("targets (1 worker):")
    for label, values, bar, at_least in checks:
        passed = sum((v >= bar) if at_least else (v <= bar) for v in values)
        median = statistics.median(values)
        verdict = "met" if ((median >= bar) if at_least else (median <= bar)) else "MISSED"
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"  {label}: median {median:.1f} {verdict} "
            f"(rounds: {shown}; met in {passed} of {len(values)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path("demo-home"))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each load, in turn")
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
    bodies = {
        "funnelcast": {
            1: _funnelcast_body(leads.head(1), features),
            100: _funnelcast_body(leads, features),
        },
        "mlflow": {1: _mlflow_body(leads.head(1)), 100: _mlflow_body(leads)},
    }
    print(
        f"home {home}; {os.cpu_count()} cores; wrk: 1 thread, 8 connections, {args.seconds} s "
        f"a run; {args.rounds} rounds"
    )
    for workers in (int(w) for w in args.workers.split(",")):
        _print(workers, _measure(home, workers, bodies, key, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
