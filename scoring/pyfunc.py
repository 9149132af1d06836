"""The MLflow pyfunc wrapper around funnelcast's model objects."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from scoring.registry import FramePredictor


class FunnelPyfunc(PythonModel):
    """The MLflow pyfunc wrapper: preprocessing travels inside `model` (STYLE practice 3)."""

    def __init__(self, model: FramePredictor) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.model.predict_frame(pd.DataFrame(model_input))
