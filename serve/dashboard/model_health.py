"""Model health for the dashboard: each champion's version, its metrics next to its baselines'
(from its training run, as `GET /v1/models` shows them), what it learned from, and the
lead-conversion calibration curve.

The curve is recomputed here from the served model on the stored funnel: on the decided leads
of the champion's evaluation slice (created after its training run's time split) when its run
says where that split was, else on the most recent decided leads, which the page then says may
include leads the model was fitted on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from markupsafe import Markup

from scoring.champions import Champions, LoadedModel
from scoring.funnel import Funnel
from scoring.lead_scores import LeadScorer
from scoring.registry import MODEL_NAMES
from scoring.svg_charts import calibration_chart
from scoring.target_segments import decided_leads

CALIBRATION_BINS = 10  # equal-mass bins, as training's calibration plot
MIN_EVALUATION_LEADS = 200
RECENT_LEADS = 2000
_BASELINE = "baseline."
_SPLIT_DATE = re.compile(r"before (\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?)")


@dataclass(frozen=True)
class MetricRow:
    metric: str
    champion: float | None
    baselines: list[float | None]


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    source: str
    registered_at: str
    run_id: str
    dataset: str
    split: str
    rows: dict[str, str]
    baseline_names: list[str]
    metrics: list[MetricRow]


@dataclass(frozen=True)
class Calibration:
    chart: Markup
    predicted: list[float]
    observed: list[float]
    leads: list[int]
    source: str


@dataclass(frozen=True)
class HealthPanel:
    cards: list[ModelCard]
    missing: dict[str, str]
    degraded: list[str]
    calibration: Calibration | None
    data_from: str
    data_until: str
    problems: list[str] = field(default_factory=list)


def model_card(loaded: LoadedModel) -> ModelCard:
    """A champion's record: metrics in a table with one column per baseline."""
    record = loaded.record
    own = {k: v for k, v in record.metrics.items() if not k.startswith(_BASELINE)}
    baselines: dict[str, dict[str, float]] = {}
    for key, value in record.metrics.items():
        if key.startswith(_BASELINE):
            name, _, metric = key.removeprefix(_BASELINE).partition(".")
            baselines.setdefault(name, {})[metric] = value
    names = sorted(baselines)
    compared = {m for figures in baselines.values() for m in figures}
    order = sorted(own, key=lambda m: (m not in compared, m))
    return ModelCard(
        name=record.name,
        version=record.version,
        source=loaded.source,
        registered_at=(record.registered_at or "")[:16].replace("T", " "),
        run_id=record.run_id or "",
        dataset=record.tags.get("dataset", ""),
        split=record.tags.get("split", ""),
        rows={k.removeprefix("rows."): v for k, v in record.tags.items() if k.startswith("rows.")},
        baseline_names=names,
        metrics=[
            MetricRow(metric, own.get(metric), [baselines[n].get(metric) for n in names])
            for metric in order
        ],
    )


def _split_date(split: str) -> pd.Timestamp | None:
    found = _SPLIT_DATE.search(split)
    return pd.Timestamp(found.group(1)) if found else None


def settled_leads(funnel: Funnel) -> pd.DataFrame:
    """Leads whose conversion label is settled, as training labels them (column `converted`):
    won within the horizon (1), lost, or older than the horizon (0); undated: won or lost."""
    leads = funnel.leads
    won = (leads["outcome"] == "won").to_numpy()
    lost = (leads["outcome"] == "lost").to_numpy()
    if not funnel.dated:
        return leads[won | lost].assign(converted=won[won | lost])
    horizon = pd.Timedelta(days=funnel.horizon_days)
    converted = won & (leads["closed_at"] - leads["created_at"] <= horizon).fillna(False).to_numpy()
    observed = funnel.observed_until or leads[["created_at", "closed_at"]].max().max()
    aged = (leads["created_at"] + horizon <= observed).to_numpy()
    settled = converted | lost | aged
    return leads[settled].assign(converted=converted[settled])


def calibration(funnel: Funnel, scorer: LeadScorer, split: str) -> Calibration | None:
    """The calibration curve of the served lead-conversion model (see the module docstring)."""
    cutoff = _split_date(split) if funnel.dated else None
    chosen = pd.DataFrame()
    if cutoff is not None:
        settled = settled_leads(funnel)
        chosen = settled[settled["created_at"] >= cutoff]
        source = (
            f"the {len(chosen):,} settled leads created since {cutoff:%Y-%m-%d %H:%M}: the "
            "champion's evaluation slice (its training run fitted on earlier leads)"
        )
    if len(chosen) < MIN_EVALUATION_LEADS:
        decided = decided_leads(funnel)
        ordered = decided.sort_values("created_at") if funnel.dated else decided
        chosen = ordered.tail(RECENT_LEADS)
        source = (
            f"the {len(chosen):,} most recent decided leads of the stored funnel; they may "
            "include leads the model was fitted on"
        )
    if len(chosen) < CALIBRATION_BINS:
        return None
    probability = scorer.conversion.probability_of(scorer.conversion.log_odds(chosen))
    won = chosen["converted"].to_numpy(dtype=float)
    order = np.argsort(probability, kind="stable")
    bins = np.empty(len(order), dtype=np.int64)
    bins[order] = (np.arange(len(order)) * CALIBRATION_BINS) // len(order)
    predicted, observed, counts = [], [], []
    for b in range(CALIBRATION_BINS):
        members = bins == b
        predicted.append(float(probability[members].mean()))
        observed.append(float(won[members].mean()))
        counts.append(int(members.sum()))
    chart = calibration_chart(
        predicted, observed, counts, label="lead-conversion calibration: predicted vs observed"
    )
    return Calibration(Markup(chart), predicted, observed, counts, source)  # noqa: S704


def health_panel(
    funnel: Funnel | None, champions: Champions, scorer: LeadScorer | None
) -> HealthPanel:
    """Every champion's card, what is missing, and the calibration curve."""
    cards = [model_card(champions.models[n]) for n in MODEL_NAMES if n in champions.models]
    problems = []
    curve = None
    conversion = champions.models.get("lead-conversion")
    if funnel is not None and scorer is not None and conversion is not None:
        curve = calibration(funnel, scorer, conversion.record.tags.get("split", ""))
        if curve is None:
            problems.append("too few decided leads for a calibration curve")
    data_from = data_until = "–"
    if funnel is not None and funnel.dated:
        data_from = pd.Timestamp(funnel.leads["created_at"].min()).date().isoformat()
        end = funnel.observed_until or funnel.leads["created_at"].max()
        data_until = pd.Timestamp(end).date().isoformat()
    return HealthPanel(
        cards,
        dict(champions.missing),
        list(champions.degraded),
        curve,
        data_from,
        data_until,
        problems,
    )
