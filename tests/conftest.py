"""Shared fixtures: an isolated FUNNELCAST_HOME, and the real data sets when configured."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.realdata import DATA_FOLDERS

DATA_ENV = "FUNNELCAST_DATA_DIR"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FUNNELCAST_HOME, with no database URL leaking in from the environment."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("FUNNELCAST_HOME", str(folder))
    monkeypatch.delenv("FUNNELCAST_DATABASE_URL", raising=False)
    # `mlflow.set_tracking_uri` exports this for the whole process: a fresh home must not see
    # the registry of an earlier one.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder holding ../shared/data's data sets.

    Skips when FUNNELCAST_DATA_DIR is unset; fails when it is set but the data is not there, so
    CI (where `make test` sets it) cannot go green by skipping.
    """
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; `make test` sets it to ../shared/data when present")
    folder = Path(value)
    missing = [name for name in DATA_FOLDERS.values() if not (folder / name).is_dir()]
    if missing:
        pytest.fail(f"{DATA_ENV}={folder} is set but lacks {missing}")
    return folder
