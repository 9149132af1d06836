"""Why a lead scored as it did, in words a sales rep reads: the top attributes that raised and
lowered its chance, from the lead-conversion model's per-feature contributions.

Each contribution is a feature's part of the model's raw log-odds (TreeSHAP for LightGBM, the
coefficient times the value for logistic regression, the likelihood ratio for naive Bayes); the
parts and the base value sum to the raw score. Sales reps think in score points (0-100), so each
effect is also given as approximate points: the probability moves by about
`slope × p × (1 − p)` per unit of raw log-odds near the lead's own probability `p` (the
derivative of the calibrated sigmoid), so a part worth `e` log-odds is worth about
`100 × slope × p × (1 − p) × e` points. It is a local, first-order figure: points of different
reasons add up only approximately, log-odds add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

REASONS_PER_SIDE = 3


@dataclass(frozen=True)
class Reason:
    """One attribute's effect on a lead's score."""

    attribute: str
    value: object
    effect: float  # raw log-odds
    points: float  # approximate score points (see the module docstring)
    text: str

    def as_dict(self) -> dict[str, object]:
        return {
            "attribute": self.attribute,
            "value": self.value,
            "effect": self.effect,
            "points": self.points,
            "text": self.text,
        }


def attribute_label(attribute: str) -> str:
    """`lead_source` -> "Lead source"."""
    words = attribute.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else attribute


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def reason_text(attribute: str, value: object, points: float) -> str:
    """A sentence such as "Lead source is Referral: raises the chance to win (+6 points)"."""
    label = attribute_label(attribute)
    fact = f"{label} not given" if _is_missing(value) else f"{label} is {_shown(value)}"
    direction = "raises" if points >= 0 else "lowers"
    return f"{fact}: {direction} the chance to win ({points:+.0f} points)"


def top_reasons(
    features: Sequence[str],
    values: Mapping[str, object],
    contributions: npt.NDArray[np.float64],
    probability: float,
    slope: float,
    per_side: int = REASONS_PER_SIDE,
) -> tuple[list[Reason], list[Reason]]:
    """The strongest positive and negative reasons of one lead.

    Args:
        features: the model's features, in the order of `contributions`.
        values: the lead's attribute values as given (missing ones absent).
        contributions: the lead's per-feature log-odds parts (the base value excluded).
        probability: the lead's calibrated probability.
        slope: the calibration's slope (raw to calibrated log-odds).
        per_side: reasons kept on each side.

    Returns:
        (positive, negative): strongest first; features with no effect are left out.
    """
    per_point = 100.0 * slope * probability * (1.0 - probability)
    order = np.argsort(-contributions, kind="stable")
    positive = [int(i) for i in order[:per_side] if contributions[i] > 0]
    negative = [int(i) for i in order[::-1][:per_side] if contributions[i] < 0]

    def reason(index: int) -> Reason:
        attribute = features[index]
        value = values.get(attribute)
        value = None if _is_missing(value) else value
        effect = float(contributions[index])
        points = per_point * effect
        return Reason(
            attribute,
            value,
            round(effect, 6),
            round(points, 2),
            reason_text(attribute, value, points),
        )

    return [reason(i) for i in positive], [reason(i) for i in negative]
