"""MLflow tracking and registry: runs with params, metrics, plots, tags and a model card; each
model logged as a pyfunc with signature, input example and explicit pip requirements, then
registered under its name. The `champion` alias moves only through the gate (training.gate).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.utils.logging_utils import disable_logging

from scoring.pyfunc import FunnelPyfunc
from scoring.registry import CHAMPION, FramePredictor
from scoring.settings import Settings

EXPERIMENT = "funnelcast"
_REQUIREMENTS = ("lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "mlflow")


@dataclass
class Candidate:
    """A trained model and everything its run records."""

    name: str
    model: FramePredictor
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    input_example: pd.DataFrame | None = None
    card: str = ""


def configure(settings: Settings) -> mlflow.MlflowClient:
    """Point MLflow at funnelcast's tracking store; artifacts go to `mlartifacts/` in the home."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    _quiet_mlflow()
    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        experiment_id = mlflow.create_experiment(
            EXPERIMENT, artifact_location=_artifact_location(settings)
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return mlflow.MlflowClient()


def _artifact_location(settings: Settings) -> str | None:
    """Where a new experiment keeps its artifacts: `mlartifacts/` in the home for a local
    tracking store; for a tracking server, wherever the server is configured to keep them
    (its `--artifacts-destination`), so that every client and server reaches the same files
    rather than a folder on the machine that happened to train first."""
    if settings.tracking_uri.partition("://")[0].lower() in {"http", "https"}:
        return None
    return settings.artifacts_dir.as_uri()


def _quiet_mlflow() -> None:
    """Keep MLflow's notices out of the training report, and its errors in.

    MLflow prints events ("Successfully registered model ...", "Created version ...") to its
    own logging stream, which its loggers write to as well; its INFO/WARNING lines (cloudpickle
    notice, schema validation) would drown the report. The stream is switched off, and the
    `mlflow` logger gets a stderr handler of its own for ERROR and above. Failures raise
    `MlflowException` whatever the stream says.
    """
    disable_logging()  # type: ignore[no-untyped-call]
    logger = logging.getLogger("mlflow")
    logger.setLevel(logging.ERROR)
    if not any(isinstance(h, _MlflowErrors) for h in logger.handlers):
        logger.addHandler(_MlflowErrors())


class _MlflowErrors(logging.StreamHandler):  # type: ignore[type-arg]
    """MLflow's ERROR records on stderr, while MLflow's own stream is switched off."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setLevel(logging.ERROR)
        self.setFormatter(logging.Formatter("mlflow %(levelname)s: %(message)s"))


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """The signature of `example` → `output`. MLflow hints that integer columns cannot hold
    missing values: the example's integer columns are already declared float, and the integer
    outputs (lead counts) are never missing, so the hint is noise here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer column", category=UserWarning
        )
        return infer_signature(example, output)


def pip_requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short content hash of a table, so a run names the exact data it saw."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return f"{int(hashes.sum(dtype='uint64')):016x}-{len(frame)}"


def _flat_metrics(metrics: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if v == v}  # drop NaN


def log_candidate(candidate: Candidate, run_name: str | None = None) -> str:
    """Log a run for the candidate, register its model, and return the new version."""
    with mlflow.start_run(run_name=run_name or candidate.name):
        mlflow.set_tags({"model": candidate.name, **candidate.tags})
        mlflow.log_params({k: str(v)[:500] for k, v in candidate.params.items()})
        mlflow.log_metrics(_flat_metrics(candidate.metrics))
        for baseline, metrics in candidate.baselines.items():
            mlflow.log_metrics(_flat_metrics(metrics, f"baseline.{baseline}."))
        for path, figure in candidate.figures.items():
            mlflow.log_figure(figure, f"plots/{path}")
        if candidate.card:
            mlflow.log_text(candidate.card, "model_card.md")
        example = candidate.input_example
        if example is not None:
            # Integer columns in a signature reject missing values at scoring time.
            ints = example.select_dtypes("integer").columns
            example = example.astype(dict.fromkeys(ints, "float64"))
        signature = None
        if example is not None:
            signature = _signature(example, candidate.model.predict_frame(example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=FunnelPyfunc(candidate.model),
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )
    version = mlflow.register_model(info.model_uri, candidate.name)
    client = mlflow.MlflowClient()
    if candidate.card:
        client.update_model_version(candidate.name, version.version, description=candidate.card)
    return str(version.version)


def champion_version(client: mlflow.MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def set_champion(
    client: mlflow.MlflowClient, name: str, version: str, forced_reason: str | None = None
) -> None:
    """Move the champion alias; a forced move records its reason on the version."""
    if forced_reason is not None:
        client.set_model_version_tag(name, version, "gate_override", forced_reason)
    client.set_registered_model_alias(name, CHAMPION, version)
