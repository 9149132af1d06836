"""What every model's training and evaluation hand to the pipeline (MLflow logging, the gate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scoring.registry import FramePredictor


@dataclass
class Evaluation:
    """A model's metrics on an evaluation slice, next to its baselines on the same slice."""

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    split: str = ""  # how the evaluation slice was chosen, in words
    rows: dict[str, int] = field(default_factory=dict)  # e.g. train, test, excluded


@dataclass
class TrainingResult:
    """A trained candidate: the model object, its evaluation, and what its run should record."""

    name: str  # registered model name, e.g. "deal-value"
    model: FramePredictor
    evaluation: Evaluation
    params: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # "roc.png" -> matplotlib Figure
    limits: list[str] = field(default_factory=list)  # caveats for the model card
    tags: dict[str, str] = field(default_factory=dict)  # e.g. cutoff, validation date


class ModelSkipped(Exception):  # noqa: N818 - a reason, not an error
    """The data lacks what a model needs (no dates, amounts or customers): skip with a message."""
