"""The champions a running service scores with, and their local copies in `models/`.

At start-up and on every reload each model's `champion` alias is resolved in the MLflow
registry, the version's files are copied into `models/<name>/<version>/` (once per version)
and loaded from there, and `models/<name>/champion.json` records which version that is, with
its metrics and training data. When the registry cannot be reached the service starts from
those copies and says it is degraded; a registry that answers "no champion" means there is
no model, whatever copies lie around.

Only folders this module wrote under the configured `models/` are ever loaded: model files
are pickles, and a pickle from an arbitrary path would run arbitrary code. No caller of the
API or the CLI can name a path here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from scoring.lead_scores import LeadScorer
from scoring.registry import CHAMPION, MODEL_NAMES

log = logging.getLogger(__name__)

RECORD = "champion.json"
# Run tags worth showing with a model: what data it learned from and how it was judged.
_TAGS = ("dataset", "split", "data_fingerprint", "data_from", "data_until", "code_version")


@dataclass(frozen=True)
class ChampionRecord:
    """What `champion.json` says of a loaded version (also what `GET /v1/models` shows)."""

    name: str
    version: str
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    registered_at: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    record: ChampionRecord
    model: Any
    source: Literal["registry", "local copy"]


@dataclass
class Champions:
    """The loaded champions by name, and what is wrong, in words."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # name -> why there is no model
    degraded: list[str] = field(default_factory=list)

    def versions(self) -> dict[str, str]:
        return {name: loaded.record.version for name, loaded in self.models.items()}


class RegistryUnreachable(Exception):  # noqa: N818 - a state, raised and handled here
    """The registry did not answer (as opposed to answering "no such model")."""


def _not_found(error: MlflowException) -> bool:
    return error.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}


def _resolve(client: mlflow.MlflowClient, name: str) -> ChampionRecord | None:
    """The champion's record from the registry; None when it has no champion."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if _not_found(error):
            return None
        raise RegistryUnreachable(str(error).splitlines()[0]) from None
    except Exception as error:  # connection refused, timeouts, a broken database file
        raise RegistryUnreachable(f"{type(error).__name__}: {error}") from None
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
            metrics = {k: float(v) for k, v in run.data.metrics.items()}
            tags = {k: v for k, v in run.data.tags.items() if k in _TAGS or k.startswith("rows.")}
        except Exception as error:  # the run is a nicety; the model still serves
            log.warning("run %s of %s/%s not readable: %s", version.run_id, name, version, error)
    registered = (
        datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat()
        if version.creation_timestamp
        else None
    )
    return ChampionRecord(name, str(version.version), version.run_id, metrics, tags, registered)


def _copy_version(
    client: mlflow.MlflowClient, name: str, version: str, models_dir: Path, tracking_uri: str
) -> Path:
    """The version's MLflow model folder under `models_dir`, downloaded once (atomically, so
    several workers starting together never see half a copy)."""
    target = models_dir / name / version
    if (target / "MLmodel").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        try:
            # The version's storage location, not models:/..., whose resolution would read
            # the process-wide registry URI rather than this one.
            location = client.get_model_version_download_uri(name, version)
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=str(staging), tracking_uri=tracking_uri
            )
        except Exception as error:  # the artifact store is down, or the files are gone
            raise RegistryUnreachable(f"copying {name}/{version}: {error}") from None
        found = next(staging.rglob("MLmodel"), None)
        if found is None:
            raise RegistryUnreachable(f"{name}/{version} has no MLmodel file in the registry")
        try:
            found.parent.replace(target)
        except OSError:
            if not (target / "MLmodel").is_file():  # another worker won the race, or not
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _load_folder(folder: Path) -> Any:
    loaded = mlflow.pyfunc.load_model(str(folder))
    return loaded.unwrap_python_model().model


def _write_record(record: ChampionRecord, models_dir: Path) -> None:
    path = models_dir / record.name / RECORD
    # A private staging file for each writer: workers (processes) and, in one process, two
    # services loading at once (a reload racing the reload watch) all write here.
    handle, name = tempfile.mkstemp(prefix=f".{RECORD}.", suffix=".tmp", dir=path.parent)
    staging = Path(name)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(json.dumps(asdict(record), indent=2))
        staging.replace(path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _read_record(name: str, models_dir: Path) -> ChampionRecord | None:
    path = models_dir / name / RECORD
    if not path.is_file():
        return None
    try:
        return ChampionRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        log.warning("%s is unreadable (%s); ignoring the local copy", path, error)
        return None


def load_champions(
    tracking_uri: str, models_dir: Path, names: Iterable[str] = MODEL_NAMES
) -> Champions:
    """Load each model's champion: from the registry (keeping a local copy), else from the copy."""
    # No mlflow.set_tracking_uri: it would also set MLFLOW_TRACKING_URI for the whole process.
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    champions = Champions()
    unreachable: str | None = None
    for name in names:
        if unreachable is None:
            try:
                record = _resolve(client, name)
                if record is None:
                    champions.missing[name] = "no champion registered"
                    continue
                folder = _copy_version(client, name, record.version, models_dir, tracking_uri)
                champions.models[name] = LoadedModel(record, _load_folder(folder), "registry")
                _write_record(record, models_dir)
                continue
            except RegistryUnreachable as error:
                unreachable = str(error)
        local = _read_record(name, models_dir)
        folder = models_dir / name / local.version if local else models_dir
        if local is None or not (folder / "MLmodel").is_file():
            champions.missing[name] = "registry unreachable and no local copy"
            continue
        champions.models[name] = LoadedModel(local, _load_folder(folder), "local copy")
    if unreachable is not None:
        champions.degraded.append(
            f"model registry at {_safe_uri(tracking_uri)} unreachable ({unreachable}); "
            "serving the local copies in models/"
        )
    return champions


def _safe_uri(uri: str) -> str:
    """The URI without credentials, for messages and logs."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


SCORING_MODELS = ("lead-conversion", "deal-cycle", "deal-value")


def lead_scorer(champions: Champions) -> LeadScorer | None:
    """The scorer the loaded champions make (API, batch scoring): None without lead-conversion;
    deal-cycle and deal-value are optional."""
    models = champions.models
    if "lead-conversion" not in models:
        return None
    return LeadScorer(
        models["lead-conversion"].model,
        models["deal-cycle"].model if "deal-cycle" in models else None,
        models["deal-value"].model if "deal-value" in models else None,
        {name: m.record.version for name, m in models.items() if name in SCORING_MODELS},
    )


def compile_scorer(scorer: LeadScorer | None, cache_dir: Path | None) -> int:
    """Compile the LightGBM trees `scorer` predicts with (`scoring.compiled_trees`), loading
    them from `cache_dir` when compiled before; nothing when `cache_dir` is None (compiling is
    off) or there is no scorer. Returns how many boosters are compiled in this process.

    One lead with no attributes is scored first, so that every booster the scorer uses (some
    are built on first use) has predicted and is known."""
    if scorer is None or cache_dir is None:
        return 0
    from scoring.compiled_trees import compile_boosters, recording_use

    now = np.array([int(datetime.now(UTC).timestamp() * 1e9)], dtype=np.int64)
    with recording_use() as used:
        scorer.score([{}], now)
    return compile_boosters(used, cache_dir)
