"""Model references and registry access: resolve `NAME`, `NAME@alias` or `NAME/version` to a
registered MLflow model and load the funnelcast object inside it.

Models are resolved by identity (an alias or a version), never "the latest file" (STYLE §4).
Importing this module does not touch MLflow's configuration; callers pass the tracking URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from scoring.errors import FunnelcastInputError

CHAMPION = "champion"
MODEL_NAMES = ("lead-conversion", "deal-cycle", "deal-value", "lead-volume", "churn")
_REFERENCE = re.compile(
    r"^(?P<name>[a-z][a-z0-9-]*)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))?$"
)


class FramePredictor(Protocol):
    """What a funnelcast model object offers: canonical lead columns in, a frame out."""

    def predict_frame(self, leads: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class ModelReference:
    """A registered model by name and, optionally, alias or version (default: the champion)."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelReference:
        match = _REFERENCE.match(text.strip())
        if match is None:
            raise FunnelcastInputError(
                f"model reference {text!r} must be NAME, NAME@alias or NAME/version, "
                f"for example lead-conversion@champion or lead-conversion/3"
            )
        name = match["name"]
        if name not in MODEL_NAMES:
            raise FunnelcastInputError(f"unknown model {name!r}; models: {', '.join(MODEL_NAMES)}")
        if match["alias"] is None and match["version"] is None:
            return cls(name, alias=CHAMPION)
        return cls(name, alias=match["alias"], version=match["version"])

    @property
    def uri(self) -> str:
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}@{self.alias or CHAMPION}"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias or CHAMPION}"


def load_model(reference: ModelReference, tracking_uri: str) -> tuple[Any, str]:
    """Load the funnelcast object behind a reference; returns it and its registry version."""

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if reference.version is not None:
            version = client.get_model_version(reference.name, reference.version).version
        else:
            version = client.get_model_version_by_alias(
                reference.name, reference.alias or CHAMPION
            ).version
    except MlflowException as error:
        raise FunnelcastInputError(
            f"no registered model {reference} ({error.message.splitlines()[0]}); "
            "train one with `funnelcast train`"
        ) from None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{reference.name}/{version}")
    return loaded.unwrap_python_model().model, str(version)
