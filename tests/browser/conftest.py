"""A real `funnelcast serve` on 127.0.0.1 over a copy of the trained home (every model's
champion), keys for each role, and headless Chromium driven by Playwright.

The browser is Debian's /usr/bin/chromium (the Makefile installs it); Playwright never downloads
one. Without it the tests skip, saying so. Screenshots go to tests/output/browser/.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from scoring.api_keys import create_key
from scoring.funnel import Funnel
from scoring.store import FunnelStore
from tests.api.conftest import (  # noqa: F401 - trained_home is the session's trained home
    TrainedHome,
    copy_home,
    home_settings,
    trained_home,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = Path(__file__).resolve().parents[1] / "output" / "browser"
HOST = "127.0.0.1"
START_SECONDS = 90
_LOCATIONS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PROMETHEUS_MULTIPROC_DIR")


@dataclass
class Server:
    """The running server: its address, its home, a key per role and its store's funnel."""

    base_url: str
    home: Path
    keys: dict[str, str]
    funnel: Funnel
    log: Path
    process: subprocess.Popen[bytes]

    def api(self, role: str = "viewer") -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.keys[role]}"},
            timeout=120,
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(home: Path) -> dict[str, str]:
    """This process's environment without any funnelcast or MLflow location in it."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FUNNELCAST_") and name not in _LOCATIONS
    }
    environment.update(
        FUNNELCAST_HOME=str(home),
        FUNNELCAST_KEY_REFRESH_SECONDS="0.2",
        MLFLOW_DISABLE_TELEMETRY="true",
        NO_PROXY="127.0.0.1",
    )
    return environment


def _wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"funnelcast serve exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"funnelcast serve did not get ready in {START_SECONDS} s:\n{log.read_text()}")


_FUNNELCAST = str(Path(sys.executable).with_name("funnelcast"))


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make test` installs it; by hand: apt-get install -y chromium)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def server(
    chromium: Path,
    trained_home: TrainedHome,  # noqa: F811 - the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """`funnelcast serve` on a free port of 127.0.0.1 over a copy of the full trained home."""
    home = copy_home(trained_home.full, tmp_path_factory.mktemp("browser-home"))
    store = FunnelStore.open(home_settings(home).store_url)  # migrates: the sessions table too
    try:
        keys = {role: create_key(store.engine, role, f"browser-{role}") for role in
                ("viewer", "manager", "integration")}  # fmt: skip
        funnel = store.load()
    finally:
        store.close()
    port = _free_port()
    log = home / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [_FUNNELCAST, "serve", "--host", HOST, "--port", str(port)],
            cwd=home,
            env=_environment(home),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://{HOST}:{port}"
    try:
        _wait_until_ready(base_url, process, log)
        yield Server(base_url, home, keys, funnel, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Watch:
    """What the browser did that a test must check: console errors, page errors, requests
    that tried to leave 127.0.0.1 (aborted), and every URL requested."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # console errors a test provoked

    @contextlib.contextmanager
    def refusal(self, page: Any, status: int) -> Iterator[None]:
        """A step whose page the server answers with `status` (Chromium logs each 4xx page
        as "Failed to load resource"): exactly that message is allowed, once, for the step."""
        before = len(self.errors)
        yield
        for _ in range(40):  # console events arrive while Playwright talks to the browser
            if len(self.errors) > before:
                break
            page.wait_for_timeout(50)
        provoked = self.errors[before:]
        message = f"the server responded with a status of {status}"
        assert len(provoked) == 1 and message in provoked[0], provoked
        self.expected.append(self.errors.pop())

    def clean(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.outside == [], f"requests left 127.0.0.1: {self.outside}"


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """`open_page(width, height)`: a new browser context and page with a `Watch` on it."""
    contexts: list[Any] = []

    def open_one(width: int = 1366, height: int = 768) -> tuple[Any, Watch]:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        watch = Watch()

        def route(request_route: Any) -> None:
            url = request_route.request.url
            watch.urls.append(url)
            if urlsplit(url).hostname != HOST:
                watch.outside.append(url)
                request_route.abort()
            else:
                request_route.continue_()

        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
        return page, watch

    yield open_one
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def output_folder() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT
