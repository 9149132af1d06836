"""A trained FUNNELCAST_HOME built once per session, and apps served in-process over copies of it.

The session trains and promotes every model on a small synthetic funnel once, and keeps two
homes over the same store and artifacts: `full` with the champions of all five models (what the
forecast and goal routes need), and `home` with those of the scoring models only (lead-conversion,
deal-cycle, deal-value; lead-volume and churn registered but without a champion), plus a second,
unpromoted lead-conversion version in both for reload tests. Local copies of the champions are
already in each home's `models/`. A test that changes state (moves an alias, revokes a key,
pushes a lead) gets its own copy of the databases (the MLflow artifacts are shared, read-only);
the tests of a module that only read share one app (`shared_api`, `shared_full_api`).
"""

from __future__ import annotations

import functools
import itertools
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import training.deal_cycle_run
from scoring.api_keys import ROLES, create_key
from scoring.champions import load_champions
from scoring.funnel import Funnel
from scoring.registry import CHAMPION, MODEL_NAMES
from scoring.settings import Settings
from scoring.store import FunnelStore
from scoring.synthetic import generate_funnel
from serve.app import create_app
from training.deal_cycle import CycleParams, train_deal_cycle
from training.pipeline import train_models
from training.tracking import configure

LEADS = 4_000
SCORING_MODELS = ("lead-conversion", "deal-cycle", "deal-value")
FORECAST_ONLY_MODELS = ("lead-volume", "churn")
_HOME_FILES = ("funnel.db", "mlflow.db")
_ENVIRONMENT = (
    "FUNNELCAST_HOME",
    "FUNNELCAST_DATABASE_URL",
    "FUNNELCAST_MLFLOW_TRACKING_URI",
    "FUNNELCAST_MAX_BODY_BYTES",
    "FUNNELCAST_RELOAD_POLL_SECONDS",
    "FUNNELCAST_KEY_REFRESH_SECONDS",
    "FUNNELCAST_GOAL_ON_TRACK",
    "FUNNELCAST_GOAL_AT_RISK",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "PROMETHEUS_MULTIPROC_DIR",
)


@dataclass(frozen=True)
class TrainedHome:
    """The session's homes: champions of the scoring models (`home`) or of every model (`full`),
    and a spare lead-conversion in both."""

    home: Path
    empty: Path  # initialised stores, no model registered
    funnel: Funnel
    versions: dict[str, str]  # the champions of `home`
    spare_conversion: str  # a registered lead-conversion version that is not champion
    full: Path
    full_versions: dict[str, str]  # the champions of `full`: all five models


def home_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for `home`, its tracking URI given explicitly: `mlflow.set_tracking_uri` (which
    loading champions calls) exports MLFLOW_TRACKING_URI, and `Settings()` would follow it to
    the previous home's registry."""
    overrides.setdefault("mlflow_tracking_uri", f"sqlite:///{home / 'mlflow.db'}")
    overrides.setdefault("database_url", None)  # <home>/funnel.db, whatever the environment says
    return Settings(home=home, **overrides)


def clean_environment(patch: pytest.MonkeyPatch) -> None:
    """No configuration from the environment; undoing `patch` restores it, including variables
    MLflow sets meanwhile (set first so that the patch records what to put back)."""
    for name in _ENVIRONMENT:
        patch.setenv(name, "")
        patch.delenv(name)
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    with pytest.MonkeyPatch.context() as patch:
        clean_environment(patch)
        # Deal-cycle trains on 2 threads by default; on this shared 2-core machine one is faster.
        patch.setattr(
            training.deal_cycle_run,
            "train_deal_cycle",
            functools.partial(train_deal_cycle, params=CycleParams(threads=1)),
        )
        empty = tmp_path_factory.mktemp("empty-home")
        settings = home_settings(empty)
        FunnelStore.open(settings.store_url).close()
        mlflow.MlflowClient(settings.tracking_uri).search_experiments()  # the schema, no model

        full = tmp_path_factory.mktemp("full-home")
        shutil.copy2(empty / "mlflow.db", full / "mlflow.db")  # creating the schema takes ~3 s
        settings = home_settings(full)
        store = FunnelStore.open(settings.store_url)
        store.ingest(generate_funnel(LEADS, seed=7).as_funnel(), source="test", replace=True)
        funnel = store.load()
        store.close()
        client = configure(settings)
        outcomes = train_models(funnel, MODEL_NAMES, seed=0, promote=True, threads=1)
        full_versions = {o.name: o.version for o in outcomes if o.version is not None}
        assert set(full_versions) == set(MODEL_NAMES), [o.message for o in outcomes]
        # A second lead-conversion version, not champion, for the reload tests: the same model
        # registered again (what a re-run on unchanged data registers), without training twice.
        first = client.get_model_version("lead-conversion", full_versions["lead-conversion"])
        assert first.source is not None
        spare = client.create_model_version("lead-conversion", first.source, first.run_id)
        champions = load_champions(settings.tracking_uri, settings.models_dir)  # local copies
        assert champions.versions() == full_versions, champions.missing

        # The scoring home: the same registry without the champions of the forecast-only
        # models, and without their local copies (a degraded start would load those).
        home = copy_home(full, tmp_path_factory.mktemp("trained-home"))
        scoring = home_settings(home)
        registry = mlflow.MlflowClient(scoring.tracking_uri, registry_uri=scoring.tracking_uri)
        for name in FORECAST_ONLY_MODELS:
            registry.delete_registered_model_alias(name, CHAMPION)
            shutil.rmtree(scoring.models_dir / name)
        versions = {name: full_versions[name] for name in SCORING_MODELS}
    # The environment and deal-cycle's threads are back as they were for the tests that follow.
    return TrainedHome(home, empty, funnel, versions, str(spare.version), full, full_versions)


_copies = itertools.count()


def copy_home(source: Path, parent: Path, target: Path | None = None) -> Path:
    """A new home (`target`, or a new folder in `parent`) with copies of `source`'s databases
    and model copies; the MLflow artifacts stay where they are, shared and only read."""
    target = target or parent / f"home-{next(_copies)}"
    target.mkdir()
    for name in _HOME_FILES:
        shutil.copy2(source / name, target / name)
    if (source / "models").is_dir():
        shutil.copytree(source / "models", target / "models")
    return target


@dataclass
class Api:
    """One running app (its lifespan entered), its client and a key for each role."""

    app: FastAPI
    client: TestClient
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post(
        self,
        path: str,
        role: str = "integration",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        merged = {**self.headers(role), **(headers or {})}
        response: httpx.Response = self.client.post(path, headers=merged, **kwargs)
        return response

    def get(self, path: str, role: str = "integration") -> httpx.Response:
        response: httpx.Response = self.client.get(path, headers=self.headers(role))
        return response


_key_names = itertools.count()


def add_keys(app: FastAPI) -> dict[str, str]:
    """A fresh key for every role, created in the app's store."""
    engine = app.state.store.engine
    return {role: create_key(engine, role, f"{role}-{next(_key_names)}") for role in ROLES}


ApiFactory = Callable[..., Api]


@contextmanager
def running_api(home: Path, **overrides: Any) -> Iterator[Api]:
    """An app over `home` with its lifespan running, a client and a key per role."""
    settings = home_settings(home, **{"key_refresh_seconds": 0.05, **overrides})
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(app, client, settings, add_keys(app))


@pytest.fixture
def start_api(
    trained_home: TrainedHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiFactory]:
    """Start an app over a home: a copy of the trained one unless `home` is given; settings
    overrides as keyword arguments. Every app started is shut down after the test."""
    clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no stray .env, no files in the checkout
    with ExitStack() as running:

        def start(home: Path | None = None, **overrides: Any) -> Api:
            folder = home or copy_home(trained_home.home, tmp_path)
            return running.enter_context(running_api(folder, **overrides))

        yield start


@contextmanager
def module_api(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An app over a copy of `source`, in a clean environment, for a module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        clean_environment(patch)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        home = copy_home(source, tmp_path_factory.mktemp("shared"))
        with running_api(home) as api:
            yield api


@pytest.fixture(scope="module")
def shared_api(
    trained_home: TrainedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One app for the tests of a module that only read: they score, validate and check
    statuses, and change nothing another test could see (starting an app takes ~0.3 s)."""
    with module_api(trained_home.home, tmp_path_factory) as api:
        yield api


@pytest.fixture(scope="module")
def shared_full_api(
    trained_home: TrainedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """`shared_api` over the home with every model's champion (forecasts, goal attainment)."""
    with module_api(trained_home.full, tmp_path_factory) as api:
        yield api


@pytest.fixture
def api(start_api: ApiFactory) -> Api:
    """The app over a copy of the trained home."""
    return start_api()


@pytest.fixture
def full_api(start_api: ApiFactory, trained_home: TrainedHome, tmp_path: Path) -> Api:
    """The app over a copy of the home with every model's champion."""
    return start_api(home=copy_home(trained_home.full, tmp_path))


@pytest.fixture
def empty_api(start_api: ApiFactory, trained_home: TrainedHome, tmp_path: Path) -> Api:
    """The app over a home whose registry has no model at all."""
    return start_api(home=copy_home(trained_home.empty, tmp_path))


def _json_value(value: Any) -> Any:
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def lead_payload(row: pd.Series, features: tuple[str, ...]) -> dict[str, Any]:
    """A lead as a CRM sends it: id, ISO creation time and the attributes, in JSON types."""
    created: datetime = row["created_at"].to_pydatetime()
    return {
        "lead_id": str(row["lead_id"]),
        "created_at": created.isoformat() + "Z",
        "attributes": {name: _json_value(row[name]) for name in features},
    }


@pytest.fixture(scope="session")
def leads(trained_home: TrainedHome) -> list[dict[str, Any]]:
    """200 leads of the funnel (a spread of scores) as request items."""
    funnel = trained_home.funnel
    sample = funnel.leads.sample(200, random_state=3)
    return [lead_payload(row, funnel.features) for _, row in sample.iterrows()]
