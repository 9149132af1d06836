"""Load and faults: fixed-rate single-lead scoring against `funnelcast serve --workers 2`.

    .venv/bin/python bench/load.py [--seconds 60] [--rate 200] [--kill-seconds 30] [--home DIR]

Needs no `make demo`: it builds its own small home (in a temporary folder, or in `--home`,
kept and reused by later runs): `funnelcast generate --leads 5000`, `ingest`, `train --models
lead-conversion,deal-cycle,deal-value --promote` (SQLite MLflow in the home), then, on every
run, one more lead-conversion version trained with another seed and registered but not
promoted: the candidate. Keys come from `funnelcast keys create` (integration, admin).

Then `funnelcast serve --workers 2 --no-access-log` on 127.0.0.1 and two phases of open-loop
load (every request is sent at its scheduled time, whether or not earlier ones have answered;
latency counts from that time, so a stall is not hidden), one lead per request, over
`--connections` keep-alive connections (a minimal HTTP/1.1 client: httpx took most of a core
at 200 requests/s, on the cores the server needs); once a second a request asks for its
connection to be closed and a new one replaces it (so connections spread over both workers,
and reach a restarted one):

1. reload (`--seconds`, default 60 s at `--rate`, default 200 requests/s): at a third of the
   phase the `champion` alias moves to the candidate with the MLflow client (only the alias
   moves), then `POST /v1/admin/reload`. With `--promote-with cli` it is `funnelcast promote
   lead-conversion/<candidate>` instead, started at a quarter of the phase (`--force` if the
   gate refuses): its gate evaluates both versions on the store, 10-30 s of a core competing
   with the workers. Reported: errors (target
   0), p50/p99 before, while promoting, and after the reload, and the time from the reload
   until every response (of each worker) names the new version;
2. kill (`--kill-seconds`, default 30 s): at a third of the phase one uvicorn worker (a child of
   the serve process) gets SIGKILL. Reported: errors (requests in flight on the killed worker
   fail with it), p50/p99, answers in the seconds after the kill, and when the supervisor's
   replacement worker was started, ready (its "Application startup complete.") and first
   answered.

Which worker answered is read from the kernel, not from the app: each response's client port
is matched with the server-side sockets of each worker process (psutil), sampled twice a
second. Prints figures; passes or fails nothing. The client shares the machine's cores with
the two workers (and with `funnelcast promote` while it runs): the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from scoring.settings import Settings
from scoring.store import FunnelStore

_VENV_BIN = Path(sys.executable).parent
# One line of `ss -Htnp`: state-less columns, then local and peer address, then the process.
_SS_LINE = re.compile(
    r"\S+:(?P<local>\d+)\s+\S+:(?P<peer>\d+)\s+users:\(\(\"[^\"]*\",pid=(?P<pid>\d+)"
)
SCORE_ROUTE = "/v1/leads/score"
FUNNELCAST = str(_VENV_BIN / "funnelcast")
MODEL = "lead-conversion"
SCORING_MODELS = "lead-conversion,deal-cycle,deal-value"


# -- set-up -------------------------------------------------------------------------------------


def _environment(home: Path) -> dict[str, str]:
    """The home's own SQLite stores, whatever the caller's environment points at."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"FUNNELCAST_DATABASE_URL", "FUNNELCAST_MLFLOW_TRACKING_URI"}
        and not k.startswith("MLFLOW_")
    }
    return env | {"FUNNELCAST_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true"}


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [FUNNELCAST, *args], env=_environment(home), cwd=home, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"funnelcast {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def prepare_home(home: Path, leads: int) -> str:
    """Champions in `home` (built once), and a fresh candidate version; returns its version."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "funnel.db").is_file():
        started = time.monotonic()
        _cli(home, "generate", "--out", str(home / "data"), "--leads", str(leads), "--seed", "11")
        _cli(home, "ingest", "--data-dir", str(home / "data"))
        _cli(home, "train", "--models", SCORING_MODELS, "--promote")
        print(f"home built in {time.monotonic() - started:.0f} s: {leads} synthetic leads, "
              f"champions of {SCORING_MODELS}")  # fmt: skip
    seed = str(int(time.time()) % 10_000 + 1)
    report = _cli(home, "train", "--models", MODEL, "--seed", seed)
    found = re.search(rf"{MODEL}/(\d+)", report)
    if found is None:
        sys.exit(f"no version in the training report:\n{report}")
    return found.group(1)


def lead_bodies(home: Path, count: int) -> list[bytes]:
    """One request body per lead: the most recent stored leads, their attributes as sent."""
    store = FunnelStore.open(Settings(home=home).store_url)
    try:
        funnel = store.load()
    finally:
        store.close()
    bodies = []
    for row in funnel.leads.tail(count).to_dict("records"):
        attributes = {
            f: (row[f].item() if isinstance(row[f], np.generic) else row[f])
            for f in funnel.features
            if pd.notna(row[f])
        }
        lead = {
            "lead_id": str(row["lead_id"]),
            "created_at": pd.Timestamp(row["created_at"]).isoformat(),
            "attributes": attributes,
        }
        bodies.append(json.dumps({"leads": [lead]}).encode())
    return bodies


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`funnelcast serve --workers 2`, returned once both workers have finished starting."""
    offset = log.stat().st_size if log.is_file() else 0
    with log.open("ab") as output:
        process = subprocess.Popen(
            [FUNNELCAST, "serve", "--port", str(port), "--workers", "2", "--no-access-log"],
            env=_environment(home), cwd=home, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"funnelcast serve exited with {process.returncode}; see {log}")
        with log.open("rb") as text:
            text.seek(offset)
            started = text.read().decode(errors="replace").count("Application startup complete.")
        if started >= 2 and len(workers(process.pid)) == 2:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return process
            except OSError:
                pass
        time.sleep(0.5)
    stop_server(process)
    sys.exit(f"funnelcast serve did not become ready; see {log}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the serve process's own group (it and its workers), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def workers(serve_pid: int) -> list[int]:
    """The uvicorn worker processes: the serve process's multiprocessing children."""
    try:
        children = psutil.Process(serve_pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child.pid)
        except psutil.Error:
            continue
    return sorted(found)


# -- load ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    due: float  # scheduled send time, seconds from the phase's start
    lag: float  # how late the client actually sent it
    done: float
    status: int | str  # HTTP status, or the exception's name
    version: str | None
    port: int | None  # the client's port: which connection, hence which worker

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def latency_ms(self) -> float:
        return (self.done - self.due) * 1000


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # event -> seconds from the start
    notes: dict[str, Any] = field(default_factory=dict)


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.port = int(writer.get_extra_info("sockname")[1])


class RawClient:
    """POSTs to one route over a pool of keep-alive connections, for a fraction of httpx's CPU
    per request (the client shares the two cores with the server it measures).

    The pool keeps at least `size` connections open: they are used oldest first, so each stays
    busy and none idles into the server's keep-alive timeout, and one that closes (a request
    sent with `Connection: close`, a worker killed) is replaced at once, in the background, by
    a new connection that any live worker may accept. One found closed by the server is dropped
    before use. At most 64 requests are in flight; past that they wait, and their latency,
    counted from the scheduled time, says so.
    """

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str], size: int):
        self.host, self.port, self.size = host, port, size
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.head = "\r\n".join(lines).encode()
        self.idle: deque[Connection] = deque()
        self.count = 0  # connections open, idle or busy
        self.slots = asyncio.Semaphore(64)
        self.background: set[asyncio.Task[None]] = set()

    async def _connect(self) -> Connection:
        self.count += 1
        try:
            return Connection(*await asyncio.open_connection(self.host, self.port))
        except BaseException:
            self.count -= 1
            raise

    def _drop(self, connection: Connection) -> None:
        connection.writer.close()
        self.count -= 1
        if self.count < self.size:
            task = asyncio.create_task(self._replenish())
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def _replenish(self) -> None:
        with contextlib.suppress(OSError):
            self.idle.append(await self._connect())

    async def fill(self) -> None:
        while self.count < self.size:
            self.idle.append(await self._connect())

    async def post(self, body: bytes, close: bool = False) -> tuple[int, bytes, int]:
        """(status, body, the client port of the connection that carried it)."""
        async with self.slots:
            connection = None
            while self.idle and connection is None:
                candidate = self.idle.popleft()
                if candidate.reader.at_eof():
                    self._drop(candidate)
                else:
                    connection = candidate
            if connection is None:
                connection = await self._connect()
            extra = b"\r\nConnection: close" if close else b""
            length = f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            try:
                connection.writer.write(self.head + extra + length + body)
                async with asyncio.timeout(10):
                    status, content, closing = await self._answer(connection.reader)
            except BaseException:
                self._drop(connection)
                raise
            if close or closing:
                self._drop(connection)
            else:
                self.idle.append(connection)
            return status, content, connection.port

    @staticmethod
    async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, closing = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                closing = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                raise ValueError("chunked answers are not expected from this route")
        return status, await reader.readexactly(length), closing

    def close(self) -> None:
        self.size = 0
        for task in self.background:
            task.cancel()
        while self.idle:
            self.idle.popleft().writer.close()


class Load:
    """Open-loop load on the scoring route, and which worker answered each request."""

    def __init__(
        self, port: int, key: str, bodies: list[bytes], serve_pid: int, connections: int
    ) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.client = RawClient("127.0.0.1", port, SCORE_ROUTE, headers, connections)
        self.bodies = bodies
        self.serve_pid = serve_pid
        self.port = port
        self.port_pid: dict[int, int] = {}  # client port -> worker pid
        self.ss = shutil.which("ss")

    def close(self) -> None:
        self.client.close()

    async def _sample_ports(self) -> None:
        """Which worker holds each of the server's connections: `ss` when there is one (it
        runs outside this process, whose event loop paces the load), else psutil (its Linux
        connection table is parsed in Python: tens of milliseconds holding the GIL)."""
        if self.ss is None:
            await asyncio.to_thread(self._sample_ports_psutil)
            return
        ss = await asyncio.create_subprocess_exec(
            self.ss, "-Htnp", "state", "established", f"( sport = :{self.port} )",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        output, _ = await ss.communicate()
        for line in output.decode(errors="replace").splitlines():
            found = _SS_LINE.search(line)
            if found and int(found["local"]) == self.port:
                self.port_pid[int(found["peer"])] = int(found["pid"])

    def _sample_ports_psutil(self) -> None:
        for pid in workers(self.serve_pid):
            try:
                connections = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            for connection in connections:
                if connection.laddr and connection.laddr.port == self.port and connection.raddr:
                    self.port_pid[connection.raddr.port] = pid

    async def _watch_ports(self) -> None:
        while True:
            await self._sample_ports()
            await asyncio.sleep(0.5)

    async def _one(self, body: bytes, due: float, t0: float, close: bool) -> Sample:
        lag = time.perf_counter() - t0 - due
        status: int | str
        version = port = None
        try:
            status, content, port = await self.client.post(body, close)
            if status == 200:
                version = str(json.loads(content)["models"][MODEL])
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
            status = type(error).__name__
        return Sample(due, lag, time.perf_counter() - t0, status, version, port)

    async def run(
        self,
        phase: Phase,
        seconds: float,
        rate: float,
        events: dict[float, Callable[[Phase, float], Coroutine[Any, Any, None]]],
    ) -> Phase:
        """Send `rate` requests a second for `seconds`; run each event at its offset."""
        t0 = time.perf_counter()  # uvloop's clock has millisecond steps; latencies need finer
        cpu = time.process_time()
        helpers = [asyncio.create_task(self._watch_ports())]
        pending = sorted(events.items())
        actions: list[asyncio.Task[None]] = []
        requests: list[asyncio.Task[Sample]] = []
        for i in range(int(seconds * rate)):
            due = i / rate
            while pending and pending[0][0] <= due:
                _, action = pending.pop(0)
                actions.append(asyncio.create_task(action(phase, t0)))
            delay = t0 + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = self.bodies[i % len(self.bodies)]
            # Once a second a request asks the server to close its connection after answering:
            # the client's next request opens a new one, which any (live) worker may accept.
            close = i % max(int(rate), 1) == int(rate) - 1
            requests.append(asyncio.create_task(self._one(body, due, t0, close)))
        phase.samples = list(await asyncio.gather(*requests))
        phase.notes["client cpu"] = (time.process_time() - cpu) / (time.perf_counter() - t0)
        await asyncio.gather(*actions)
        await self._sample_ports()
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        return phase

    def worker_of(self, sample: Sample) -> int | None:
        return self.port_pid.get(sample.port) if sample.port is not None else None


# -- events -------------------------------------------------------------------------------------


async def _cli_async(home: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        FUNNELCAST, *args, env=_environment(home), cwd=home,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return int(process.returncode or 0), output.decode(errors="replace")


def alias_mover(home: Path) -> Callable[[str], str]:
    """What moves `champion` to a version with the MLflow client (only the alias moves; no gate
    run). Built before the load starts: importing MLflow and opening its store take seconds of
    CPU that would otherwise land in the measurements."""
    import mlflow  # here, not at the top: only this path needs it

    uri = Settings(home=home).tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.get_registered_model(MODEL)  # opens the store now

    def move(version: str) -> str:
        client.set_registered_model_alias(MODEL, "champion", version)
        return f"alias moved with the MLflow client (no gate run): champion -> {MODEL}/{version}"

    return move


def promote_and_reload(
    home: Path, candidate: str, url: str, admin_key: str, move: Callable[[str], str] | None
) -> Callable[[Phase, float], Coroutine[Any, Any, None]]:
    """The alias moves (`move`, or `funnelcast promote` when None), then the admin reload."""

    async def action(phase: Phase, t0: float) -> None:
        phase.marks["promote started"] = time.perf_counter() - t0
        reference = f"{MODEL}/{candidate}"
        if move is None:
            code, output = await _cli_async(home, "promote", reference)
            phase.notes["gate"] = output.strip().splitlines()[0] if output.strip() else ""
            if code == 3:  # the gate refused: this bench moves the alias anyway
                code, output = await _cli_async(
                    home, "promote", reference, "--force", "--reason", "bench/load.py"
                )
                phase.notes["forced"] = True
            if code != 0:
                raise RuntimeError(f"funnelcast promote failed ({code}): {output[-1000:]}")
        else:
            phase.notes["gate"] = await asyncio.to_thread(move, candidate)
        phase.marks["alias moved"] = time.perf_counter() - t0
        async with httpx.AsyncClient(base_url=url, timeout=60) as admin:
            phase.marks["reload sent"] = time.perf_counter() - t0
            answer = await admin.post(
                "/v1/admin/reload", headers={"Authorization": f"Bearer {admin_key}"}
            )
            phase.marks["reload answered"] = time.perf_counter() - t0
        phase.notes["reload"] = f"{answer.status_code} {answer.json().get('message', '')}"

    return action


def kill_a_worker(serve_pid: int, log: Path) -> Callable[[Phase, float], Coroutine[Any, Any, None]]:
    async def action(phase: Phase, t0: float) -> None:
        before = workers(serve_pid)
        victim = before[0]
        offset = log.stat().st_size
        os.kill(victim, signal.SIGKILL)  # a worker of the serve process this bench started
        phase.marks["worker killed"] = time.perf_counter() - t0
        phase.notes["killed"] = victim
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            now = workers(serve_pid)
            new = [pid for pid in now if pid not in before]
            if new and "replacement started" not in phase.marks:
                phase.marks["replacement started"] = time.perf_counter() - t0
                phase.notes["replacement"] = new[0]
            with log.open("rb") as text:
                text.seek(offset)
                tail = text.read().decode(errors="replace")
            if new and "Application startup complete." in tail:
                phase.marks["replacement ready"] = time.perf_counter() - t0
                return

    return action


# -- report -------------------------------------------------------------------------------------


def server_histogram(url: str) -> dict[float, float]:
    """The scoring route's in-app latency histogram over every worker (cumulative counts by
    bucket bound, from /metrics): the time inside the app, without the client and the queue."""
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        if family.name != "funnelcast_request_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("route") == SCORE_ROUTE:
                counts[float(sample.labels["le"])] = sample.value
    return counts


def _server_side(phase: Phase) -> str:
    before, after = phase.notes.get("server before", {}), phase.notes.get("server after", {})
    delta = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = delta[-1][1] if delta else 0.0
    if not total:
        return "in-app latency: no samples"

    def bound(q: float) -> str:
        found = next(b for b, count in delta if count >= q * total)
        return f"{found * 1000:g} ms" if np.isfinite(found) else "over the last bucket"

    return (
        f"in-app latency (all workers, /metrics histogram bounds): p50 <= {bound(0.5)}, "
        f"p99 <= {bound(0.99)} ({total:.0f} requests)"
    )


def _row(label: str, samples: list[Sample]) -> str:
    if not samples:
        return f"{label:<34} {0:>8}"
    latencies = np.array([s.latency_ms for s in samples if s.ok])
    errors = sum(not s.ok for s in samples)
    p50, p99, top = np.percentile(latencies, [50, 99, 100]) if latencies.size else (np.nan,) * 3
    return f"{label:<34} {len(samples):>8} {errors:>7} {p50:>8.1f} {p99:>8.1f} {top:>8.1f}"


def _lag(samples: list[Sample]) -> str:
    """How late the client sent its requests: when this grows, the client (not the server) is
    the bottleneck, and the latencies include its delay."""
    lags = np.array([s.lag for s in samples]) * 1000
    return f"client send lag p99 {np.percentile(lags, 99):.1f} ms, max {lags.max():.1f} ms"


def _client_line(phase: Phase) -> str:
    return (
        f"client: {_lag(phase.samples)}; its CPU {phase.notes.get('client cpu', 0):.0%} of a core"
    )


def _header() -> str:
    return f"{'':<34} {'requests':>8} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"


def report_reload(phase: Phase, load: Load, old: str, new: str) -> list[str]:
    marks, samples = phase.marks, phase.samples
    print(f"\n== reload: {len(samples)} requests over {samples[-1].due:.0f} s ==")
    for name, offset in marks.items():
        print(f"  {name:<18} at {offset:6.2f} s")
    print(
        f"  gate: {phase.notes.get('gate', '')}"
        + ("  (forced)" if phase.notes.get("forced") else "")
    )
    print(f"  reload answer: {phase.notes.get('reload', '-')}")
    errors = Counter(str(s.status) for s in samples if not s.ok)
    print(f"  errors: {sum(errors.values())} {dict(errors) if errors else ''}")
    print(f"  {_client_line(phase)}")
    print(f"  {_server_side(phase)}")
    rows = []
    start, moved = marks.get("promote started", np.inf), marks.get("reload sent", np.inf)
    if moved >= samples[-1].due:
        print("  WARNING: the reload came after the load ended (the promote took long): the "
              "switch is not measured; run with a longer --seconds")  # fmt: skip
    rows.append(_row("reload: all", samples))
    rows.append(_row("reload: before promote", [s for s in samples if s.due < start]))
    rows.append(_row("reload: while promoting", [s for s in samples if start <= s.due < moved]))
    rows.append(_row("reload: after reload sent", [s for s in samples if s.due >= moved]))
    versions = Counter(s.version for s in samples if s.ok)
    print(f"  versions answered: {dict(versions)} (old {old}, new {new})")
    stale = [s for s in samples if s.ok and s.version == old and s.due >= moved]
    last_old = max((s.done for s in samples if s.version == old), default=np.nan)
    first_new = min((s.done for s in samples if s.version == new), default=np.nan)
    print(f"  first response with v{new}: {first_new - moved:+.3f} s after the reload was sent")
    print(f"  last response with v{old}:  {last_old - moved:+.3f} s after the reload was sent "
          f"({len(stale)} requests sent after the reload were answered by v{old})")  # fmt: skip
    switched = last_old if np.isfinite(last_old) else moved
    by_worker: dict[int | None, list[Sample]] = {}
    for s in samples:
        by_worker.setdefault(load.worker_of(s), []).append(s)
    for pid, mine in sorted(by_worker.items(), key=lambda item: item[0] or 0):
        ok = [s for s in mine if s.ok]
        olds = [s.done - moved for s in ok if s.version == old and s.done >= moved]
        news = [s.done - moved for s in ok if s.version == new]
        after = [s for s in ok if s.due >= switched]
        name = f"worker {pid}" if pid else "worker unknown (port not sampled)"
        print(
            f"  {name}: {len(mine)} answers; v{old} until {max(olds, default=-np.inf):+.3f} s, "
            f"v{new} from {min(news, default=np.nan):+.3f} s; after the switch "
            f"{sum(s.version == new for s in after)}/{len(after)} answers v{new}"
        )
    rows.append(f"{'switch (reload -> last v' + old + ')':<34} {last_old - moved:>8.3f} s")
    return rows


def report_kill(phase: Phase, load: Load) -> list[str]:
    marks, samples = phase.marks, phase.samples
    print(f"\n== kill: {len(samples)} requests over {samples[-1].due:.0f} s ==")
    for name, offset in marks.items():
        print(f"  {name:<20} at {offset:6.2f} s")
    killed = marks.get("worker killed", np.inf)
    failed = [s for s in samples if not s.ok]
    errors = Counter(str(s.status) for s in failed)
    print(f"  errors: {len(failed)} {dict(errors) if errors else ''}")
    print(f"  {_client_line(phase)}")
    print(f"  {_server_side(phase)}")
    if failed:
        print(f"  failed requests were sent between {min(s.due for s in failed) - killed:+.3f} s "
              f"and {max(s.due for s in failed) - killed:+.3f} s of the kill")  # fmt: skip
    for window in (1.0, 5.0):
        answered = [s for s in samples if killed <= s.due < killed + window]
        good = sum(s.ok for s in answered)
        print(f"  in the {window:.0f} s after the kill: {good}/{len(answered)} answered 200")
    replacement = phase.notes.get("replacement")
    served = [s for s in samples if s.ok and replacement and load.worker_of(s) == replacement]
    if "replacement ready" in marks:
        started, ready = marks["replacement started"] - killed, marks["replacement ready"] - killed
        print(f"  replacement worker {replacement}: started {started:.2f} s, "
              f"ready {ready:.2f} s after the kill")  # fmt: skip
    if served:
        first = min(s.done for s in served)
        print(f"  replacement worker answered {len(served)} requests, the first "
              f"{first - killed:.2f} s after the kill")  # fmt: skip
    per_worker = Counter(load.worker_of(s) for s in samples if s.ok)
    print(f"  answers per worker: {dict(per_worker)}")
    rows = [
        _row("kill: all", samples),
        _row("kill: before the kill", [s for s in samples if s.due < killed]),
        _row("kill: after the kill", [s for s in samples if s.due >= killed]),
    ]
    if "replacement ready" in marks:
        rows.append(
            f"{'worker back (ready) after':<34} {marks['replacement ready'] - killed:>8.2f} s"
        )
    return rows


def server_log_summary(log: Path, started: int) -> str:
    """What uvicorn's supervisor and the app said that matters here: worker processes started
    and died, errors and tracebacks (the first lines of each)."""
    with log.open("rb") as text:
        text.seek(started)
        lines = text.read().decode(errors="replace").splitlines()
    keep = re.compile(r"Started server process|died|Terminated|ERROR|Traceback|Error:|WARNING")
    shown = [line for line in lines if keep.search(line)]
    if len(shown) > 40:
        shown = [*shown[:20], f"... ({len(shown) - 40} more) ...", *shown[-20:]]
    died = sum("died" in line for line in lines)
    head = f"  worker processes that died: {died} (this bench killed 1)"
    return "\n".join([head, *(f"  {line}" for line in shown)])


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


async def _phases(args: argparse.Namespace, context: dict[str, Any]) -> list[str]:
    load = Load(
        context["port"], context["key"], context["bodies"], context["serve"].pid, args.connections
    )
    try:
        url = context["url"]
        await load.client.fill()
        await load.run(Phase("warm-up"), 3, args.rate, {})
        reload_phase = Phase("reload")
        reload_phase.notes["server before"] = await asyncio.to_thread(server_histogram, url)
        await load.run(
            reload_phase, args.seconds, args.rate,
            {args.seconds / (4 if args.promote_with == "cli" else 3): promote_and_reload(
                context["home"], context["candidate"], url, context["admin"],
                context["move"])},
        )  # fmt: skip
        reload_phase.notes["server after"] = await asyncio.to_thread(server_histogram, url)
        rows = report_reload(reload_phase, load, context["champion"], context["candidate"])
        kill_phase = Phase("kill")
        kill_phase.notes["server before"] = reload_phase.notes["server after"]
        await load.run(
            kill_phase, args.kill_seconds, args.rate,
            {args.kill_seconds / 3: kill_a_worker(context["serve"].pid, context["log"])},
        )  # fmt: skip
        kill_phase.notes["server after"] = await asyncio.to_thread(server_histogram, url)
        rows += report_kill(kill_phase, load)
    finally:
        load.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60, help="reload phase, seconds")
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--kill-seconds", type=float, default=30, help="kill phase, seconds")
    parser.add_argument("--connections", type=int, default=8, help="client connections")
    parser.add_argument(
        "--promote-with",
        choices=("client", "cli"),
        default="client",
        help="move the alias with the MLflow client (default), or `funnelcast promote` (its "
        "gate evaluates both versions on the store while the load runs)",
    )
    parser.add_argument("--leads", type=int, default=5000, help="synthetic leads in a new home")
    parser.add_argument("--home", type=Path, help="home to build once and reuse (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="funnelcast-load-") as scratch:
        home = (args.home or Path(scratch) / "home").resolve()
        print(f"home {home}; {os.cpu_count()} cores; load average {_load_average()} (1, 5, 15 min)")
        candidate = prepare_home(home, args.leads)
        stamp = int(time.time())
        key = _cli(home, "keys", "create", "--role", "integration", "--name", f"load-{stamp}")
        admin = _cli(home, "keys", "create", "--role", "admin", "--name", f"load-admin-{stamp}")
        port = _free_port()
        log = (home if args.home else Path(scratch)) / "load-serve.log"
        log_offset = log.stat().st_size if log.is_file() else 0
        serve = start_server(home, port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url) as probe:
                champion = str(probe.get("/readyz").json()["models"][MODEL])
            print(f"serving {MODEL}/{champion} (candidate {MODEL}/{candidate}) on {url}, "
                  f"workers {workers(serve.pid)}; {args.rate:.0f} requests/s, one lead each, "
                  f"{args.connections} connections (one reopened every second)")  # fmt: skip
            context = {
                "home": home, "url": url, "port": port, "key": key.strip(),
                "admin": admin.strip(), "bodies": lead_bodies(home, 500), "serve": serve,
                "log": log, "candidate": candidate, "champion": champion,
                "move": alias_mover(home) if args.promote_with == "client" else None,
            }  # fmt: skip
            # uvloop: the client's own overhead per request is what limits how evenly it paces.
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                rows = runner.run(_phases(args, context))
            alive = serve.poll() is None
        finally:
            stop_server(serve)
        print(
            f"\n== the server's log ({log if args.home else 'deleted with the temporary home'}) =="
        )
        print(server_log_summary(log, started=log_offset))
        print("\n== summary ==")
        print(_header())
        for row in rows:
            print(row)
        print(f"serve process alive at the end: {alive}; load average {_load_average()}")


if __name__ == "__main__":
    main()
