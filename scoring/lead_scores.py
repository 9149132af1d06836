"""A lead's scores, as the API, batch scoring and the forecast engine all serve them.

`LeadScorer` joins the champions of lead-conversion, deal-cycle and deal-value into the columns
of DESIGN §7: `probability` (calibrated P(won within the horizon)), `score` (0-100), `grade`
(A-D), `percentile`, `expected_days_to_close`, `p_won_30d`, `p_won_90d`, `expected_value` and
its P10 / P90.

The scores agree with each other by construction (DESIGN §4): lead-conversion says *whether*
a lead is won within the horizon, deal-cycle says *when*. For `d` days,
`p_won_d = probability × W(d) / W(horizon)`, where `W` is the deal-cycle model's cumulative
incidence of a win for this lead from its creation. `W(d) / W(horizon)` is the share of the
lead's horizon wins that come within `d` days: at most 1 for `d ≤ horizon` and increasing in
`d`, so `p_won_30d ≤ p_won_90d ≤ probability` whenever the horizon is 90 days or more. The
calibrated probability thus stays the one number a lead's chance is judged by, and the cycle
model contributes only timing, which is what it is best at.

`expected_days_to_close` is the mean days from creation to a win, given a win within the
horizon. `expected_value` is `probability ×` the deal-value model's mean amount of the deal if
won; `expected_value_p10` / `_p90` are `probability ×` its P10 / P90 amount.

Grades come from the training leads' probabilities: A is the top 10 % of training leads, B the
next 20 %, C the next 30 %, D the rest, so that "A" means the same share of leads whatever the
base rate of a company's funnel.

Leads come as a frame (batch scoring, the forecast engine) or as records (attribute -> value,
one mapping per lead, as the API receives them); records never touch pandas, which is what
keeps one-lead requests in the tens of microseconds of model time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.conversion import LeadConversionModel
from scoring.cycle import CycleModel, created_ns, mean_close_day
from scoring.deal_value import ValueModel
from scoring.features import shared_codes
from scoring.reasons import Reason, top_reasons

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Leads = pd.DataFrame | Sequence[Mapping[str, object]]

SCORE_COLUMNS = (
    "lead_id",
    "probability",
    "score",
    "grade",
    "percentile",
    "expected_days_to_close",
    "p_won_30d",
    "p_won_90d",
    "expected_value",
    "expected_value_p10",
    "expected_value_p90",
)
GRADES = ("A", "B", "C", "D")
# Share of training leads at or above each grade's lower bound: A top 10 %, B next 20 % ...
GRADE_TOP_SHARES = (0.10, 0.30, 0.60)
SCORED_DAYS = (30, 90)
# Leads scored at once in a frame: bounds the memory of the cycle model's day grid.
CHUNK_LEADS = 20_000


@dataclass
class LeadScores:
    """Score columns for a batch of leads (arrays of equal length; NaN where not known)."""

    probability: FloatArray
    score: IntArray
    grade: list[str]
    percentile: FloatArray
    expected_days_to_close: FloatArray
    p_won_30d: FloatArray
    p_won_90d: FloatArray
    expected_value: FloatArray
    expected_value_p10: FloatArray
    expected_value_p90: FloatArray
    reasons: list[tuple[list[Reason], list[Reason]]] | None = field(default=None)
    # With reasons: the raw score with no attribute effects, and the raw score itself (the
    # base value plus every attribute's effect).
    base_value: FloatArray | None = field(default=None)
    raw_score: FloatArray | None = field(default=None)

    def __len__(self) -> int:
        return len(self.probability)

    def column(self, name: str) -> npt.NDArray[np.generic] | list[str]:
        value: npt.NDArray[np.generic] | list[str] = getattr(self, name)
        return value


class LeadScorer:
    """The champions that score a lead, joined (see the module docstring).

    Args:
        conversion: the lead-conversion model (required: it is what a score is).
        cycle: the deal-cycle model; without it (undated data) timing columns are NaN.
        value: the deal-value model; without it (no amounts) value columns are NaN.
        versions: registry version of each model by name, for the record in every response.
    """

    def __init__(
        self,
        conversion: LeadConversionModel,
        cycle: CycleModel | None = None,
        value: ValueModel | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self.conversion = conversion
        self.cycle = cycle
        self.value = value
        self.versions = dict(versions or {})
        self.horizon_days = conversion.horizon_days
        training = conversion.training_scores_
        self.grade_bounds = (
            np.quantile(training, [1.0 - share for share in GRADE_TOP_SHARES])
            if training.size
            else np.array([0.5, 0.3, 0.1])
        )
        self.attribute_kinds = self._attribute_kinds()
        self.attributes = frozenset(self.attribute_kinds)

    def _attribute_kinds(self) -> dict[str, str]:
        """Every attribute some model reads: "number" or "category" (numeric wins a tie)."""
        specs = [self.conversion.feature_spec]
        for model in (self.cycle, self.value):
            spec = getattr(getattr(model, "design", None), "spec_", None) or getattr(
                model, "feature_spec_", None
            )
            if spec is not None:
                specs.append(spec)
        kinds: dict[str, str] = {}
        for spec in specs:
            for name in spec.feature_names_:
                numeric = name in spec.numeric_features_ or kinds.get(name) == "number"
                kinds[name] = "number" if numeric else "category"
        return kinds

    def grade_of(self, probability: FloatArray) -> list[str]:
        """A-D by the training leads' probabilities (A: top 10 %, B: next 20 %, C: next 30 %).

        A probability within a relative 1e-12 of a bound reaches it (as in `percentile`: the
        compiled trees and LightGBM may differ in the last bits on a lead at the bound)."""
        reached = probability + np.abs(probability) * 1e-12
        below = np.searchsorted(-self.grade_bounds, -reached, side="left")
        return [GRADES[int(i)] for i in below]

    def score(
        self, leads: Leads, created: IntArray | None = None, explain: bool = False
    ) -> LeadScores:
        """Scores of `leads`; `created` is each lead's creation (ns since epoch), taken from the
        frame's `created_at` when not given. Frames are scored in chunks of `CHUNK_LEADS`."""
        if isinstance(leads, pd.DataFrame) and len(leads) > CHUNK_LEADS:
            parts = [
                self.score(leads.iloc[start : start + CHUNK_LEADS], None, explain)
                for start in range(0, len(leads), CHUNK_LEADS)
            ]
            return _concat(parts)
        if created is None and self.cycle is not None:
            created = created_ns(leads) if isinstance(leads, pd.DataFrame) else None
        with shared_codes():  # the models usually encode the leads alike: once for all
            return self._score(leads, created, explain)

    def _score(self, leads: Leads, created: IntArray | None, explain: bool) -> LeadScores:
        raw = self.conversion.log_odds(leads)
        probability = self.conversion.probability_of(raw)
        n = len(probability)
        percentile = (
            self.conversion.percentile(probability)
            if self.conversion.training_scores_.size
            else np.full(n, np.nan)
        )
        timing = self._timing(leads, created, probability)
        value = self._value(leads, probability)
        reasons, base_value = self._reasons(leads, probability) if explain else (None, None)
        return LeadScores(
            probability=probability,
            score=np.rint(100.0 * probability).astype(np.int64),
            grade=self.grade_of(probability),
            percentile=percentile,
            expected_days_to_close=timing[0],
            p_won_30d=timing[1],
            p_won_90d=timing[2],
            expected_value=value[0],
            expected_value_p10=value[1],
            expected_value_p90=value[2],
            reasons=reasons,
            base_value=base_value,
            raw_score=raw if explain else None,
        )

    def _timing(
        self, leads: Leads, created: IntArray | None, probability: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        n = len(probability)
        if self.cycle is None or created is None:
            missing = np.full(n, np.nan)
            return missing, missing.copy(), missing.copy()
        horizon = self.horizon_days
        grid = np.arange(0, max(horizon, *SCORED_DAYS) + 1, dtype=np.float64)
        won, _ = self.cycle.incidence_from_creation(leads, created, grid)
        within_horizon = won[:, horizon]
        share = {
            days: np.divide(
                won[:, days], within_horizon, out=np.zeros(n), where=within_horizon > 1e-12
            )
            for days in SCORED_DAYS
        }
        expected_days = mean_close_day(grid[: horizon + 1], won[:, : horizon + 1])
        return expected_days, probability * share[30], probability * share[90]

    def _value(
        self, leads: Leads, probability: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        if self.value is None:
            missing = np.full(len(probability), np.nan)
            return missing, missing.copy(), missing.copy()
        summary = self.value.value_summary(leads)  # P10, P50, P90, mean amount if won
        return probability * summary[:, 3], probability * summary[:, 0], probability * summary[:, 2]

    def _reasons(
        self, leads: Leads, probability: FloatArray
    ) -> tuple[list[tuple[list[Reason], list[Reason]]], FloatArray]:
        """Each lead's strongest reasons each way, and the base value of its raw score."""
        features = self.conversion.feature_names
        contributions = self.conversion.contribution_array(leads)
        parts = contributions[:, :-1]
        slope = self.conversion.calibration_slope
        rows: Sequence[Mapping[str, object]] = (
            _frame_records(leads, features) if isinstance(leads, pd.DataFrame) else leads
        )
        reasons = [
            top_reasons(features, rows[i], parts[i], float(probability[i]), slope)
            for i in range(len(probability))
        ]
        return reasons, np.asarray(contributions[:, -1], dtype=np.float64)

    def score_frame(self, leads: pd.DataFrame, explain: bool = False) -> pd.DataFrame:
        """The DESIGN §7 `score` columns for a frame of canonical leads (plus `reasons`, JSON
        text, with `explain`)."""
        scores = self.score(leads, explain=explain)
        ids = leads["lead_id"].to_numpy() if "lead_id" in leads.columns else leads.index.to_numpy()
        frame = pd.DataFrame({"lead_id": ids})
        for name in SCORE_COLUMNS[1:]:
            frame[name] = scores.column(name)
        if scores.reasons is not None:
            frame["reasons"] = [reasons_json(*pair) for pair in scores.reasons]
        return frame


def reasons_json(positive: list[Reason], negative: list[Reason]) -> str:
    """The `reasons` column of batch scoring: {"positive": [...], "negative": [...]}."""
    import json

    return json.dumps(
        {
            "positive": [_json_safe(r.as_dict()) for r in positive],
            "negative": [_json_safe(r.as_dict()) for r in negative],
        },
        ensure_ascii=False,
    )


def _json_safe(record: dict[str, object]) -> dict[str, object]:
    value = record["value"]
    if isinstance(value, np.generic):
        record["value"] = value.item()
    if isinstance(record["value"], float) and not math.isfinite(record["value"]):
        record["value"] = None
    return record


def _frame_records(leads: pd.DataFrame, features: Sequence[str]) -> list[dict[str, object]]:
    present = [f for f in features if f in leads.columns]
    return leads[present].astype(object).where(leads[present].notna(), None).to_dict("records")  # type: ignore[return-value]


def _concat(parts: list[LeadScores]) -> LeadScores:
    def stack(name: str) -> FloatArray:
        return np.concatenate([getattr(p, name) for p in parts])

    reasons = None
    base_value = raw_score = None
    if parts and parts[0].reasons is not None:
        reasons = [pair for p in parts for pair in (p.reasons or [])]
        base_value = np.concatenate([p.base_value for p in parts if p.base_value is not None])
        raw_score = np.concatenate([p.raw_score for p in parts if p.raw_score is not None])
    return LeadScores(
        probability=stack("probability"),
        score=np.concatenate([p.score for p in parts]),
        grade=[g for p in parts for g in p.grade],
        percentile=stack("percentile"),
        expected_days_to_close=stack("expected_days_to_close"),
        p_won_30d=stack("p_won_30d"),
        p_won_90d=stack("p_won_90d"),
        expected_value=stack("expected_value"),
        expected_value_p10=stack("expected_value_p10"),
        expected_value_p90=stack("expected_value_p90"),
        reasons=reasons,
        base_value=base_value,
        raw_score=raw_score,
    )
