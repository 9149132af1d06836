"""The dashboard's read-only panels: KPI history with its forecast, the funnel, who to target
and the best open leads. Each is built from the same scoring functions, with the same
parameters, as the API route that answers the same question, so the numbers agree:

- KPI forecasts: `scoring.forecast.forecast` as `GET /v1/forecast` runs it (draws, seed, the
  end of the data as as_of); history: `scoring.kpis.compute_kpis` per period;
- the funnel: stage reach and `overall_kpis`' stage conversions over every lead of the segment;
- who to target: `GET /v1/segments` (`serve.routes.segments.segments_response`);
- best open leads: the worker's `LeadScorer`, as `POST /v1/leads/score` scores a lead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from scoring.errors import FunnelcastInputError
from scoring.forecast import Forecast, ForecastModels, forecast
from scoring.forecast_kpis import FORECAST_KPIS
from scoring.funnel import Funnel
from scoring.goals_report import figure
from scoring.kpis import STAGE_CONVERSION_PREFIX, compute_kpis, overall_kpis
from scoring.lead_scores import LeadScorer
from scoring.periods import Freq
from scoring.segments import segment_mask
from scoring.stage_reach import conversion_stages, furthest_stage, reached
from scoring.svg_charts import Formatter, bar_chart, fan_chart, short_number
from scoring.target_segments import default_segment_columns
from serve.deps import NO_FORECAST_MODELS
from serve.forecast_schemas import DEFAULT_DRAWS
from serve.routes.segments import DEFAULT_MIN_LEADS, SegmentsResponse, segments_response

SEED = 0
# Periods of history shown, and periods forecast, per frequency (within the API's limits).
PERIODS: dict[Freq, tuple[int, int]] = {"week": (26, 8), "month": (12, 3), "quarter": (8, 2)}
KPI_TITLES = {
    "lead_count": "New leads",
    "conversion_rate": "Conversion rate",
    "win_rate": "Win rate",
    "avg_deal_size": "Average deal size",
    "sales_cycle_days": "Sales cycle (median days)",
    "won_revenue": "Won revenue",
    "won_deals": "Won deals",
    "pipeline_value": "Pipeline value",
    "churn_rate": "Churn rate",
}
SEGMENT_OPTION_COLUMNS = 3
MAX_SEGMENT_LEVELS = 12
SHOWN_SEGMENTS = 10
SHOWN_LEADS = 10


def _percent(value: float) -> str:
    return f"{value:.0%}"


def axis_format(kpi: str) -> Formatter:
    """Axis labels in the KPI's unit (percent for rates)."""
    return _percent if kpi.endswith("_rate") else short_number


def segment_text(segment: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in segment.items())


def segment_options(funnel: Funnel) -> list[str]:
    """`column=value` choices for the segment picker: the levels of a few text columns."""
    options = []
    for column in default_segment_columns(funnel, SEGMENT_OPTION_COLUMNS):
        levels = funnel.leads[column].dropna().astype(str).value_counts()
        options += [f"{column}={level}" for level in sorted(levels.index[:MAX_SEGMENT_LEVELS])]
    return options


# -- KPIs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiChart:
    kpi: str
    title: str
    chart: Markup
    latest: str  # the last full period's actual, as people read it
    next_p50: str
    next_range: str
    note: str = ""


@dataclass(frozen=True)
class KpiPanel:
    freq: Freq
    periods: int
    draws: int
    seed: int
    segment: dict[str, str]
    as_of: str
    charts: list[KpiChart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str = ""


def run_forecast(
    funnel: Funnel, models: ForecastModels, freq: Freq, segment: Mapping[str, str]
) -> Forecast:
    """The forecast `GET /v1/forecast?freq=...&periods=...&segment=...` answers (default
    draws and seed, as of the end of the data)."""
    return forecast(
        funnel,
        models,
        freq=freq,
        periods=PERIODS[freq][1],
        segment=dict(segment),
        draws=DEFAULT_DRAWS,
        seed=SEED,
    )


def _history(
    funnel: Funnel, freq: Freq, segment: Mapping[str, str], before: date | None
) -> pd.DataFrame:
    """The last periods of history; a period the forecast covers (it began before the end of
    the data) is left to the forecast, which holds its actuals so far."""
    frame = compute_kpis(funnel, freq, segment=dict(segment))
    if before is not None:
        frame = frame[pd.to_datetime(frame["period_start"]).dt.date < before]
    return frame.tail(PERIODS[freq][0])


def _value(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def kpi_panel(
    funnel: Funnel,
    freq: Freq,
    segment: Mapping[str, str],
    result: Forecast | None,
) -> KpiPanel:
    """Every forecast KPI's history and forecast (`result`: `run_forecast`'s, None without
    forecast models)."""
    end = funnel.observed_until or funnel.leads["created_at"].max()
    panel = KpiPanel(
        freq,
        PERIODS[freq][1],
        DEFAULT_DRAWS,
        SEED,
        dict(segment),
        pd.Timestamp(end).date().isoformat(),
    )
    records = result.records() if result is not None else []
    first = date.fromisoformat(str(records[0]["period_start"])) if records else None
    history = _history(funnel, freq, segment, first)
    if result is None:
        panel.notes.append(f"No forecast: {NO_FORECAST_MODELS}")
    else:
        panel.notes.extend(result.notes)
    for kpi in FORECAST_KPIS:
        rows = [r for r in records if r["kpi"] == kpi]
        points = [
            (str(start)[:10], _value(value))
            for start, value in zip(history["period_start"], history[kpi], strict=True)
        ]
        fan = [
            (str(r["period_start"]), _value(r["p10"]), _value(r["p50"]), _value(r["p90"]))
            for r in rows
        ]
        note = ""
        if kpi == "conversion_rate" and "conversion_mature" in history:
            young = int((history["conversion_mature"] == False).sum())  # noqa: E712
            if young:
                note = (
                    f"the last {young} cohort(s) are younger than the {funnel.horizon_days}-day "
                    "horizon: their rate is the share won so far, not final"
                )
        latest = next((v for _, v in reversed(points) if v is not None), None)
        title = KPI_TITLES.get(kpi, kpi)
        chart = fan_chart(
            points,
            fan,
            width=400,
            height=170,
            label=f"{title}: history and forecast",
            formatter=axis_format(kpi),
        )
        panel.charts.append(
            KpiChart(
                kpi=kpi,
                title=title,
                chart=Markup(chart),  # noqa: S704 - built by svg_charts, which escapes text
                latest=figure(kpi, latest),
                next_p50=figure(kpi, fan[0][2]) if fan else "–",
                next_range=f"{figure(kpi, fan[0][1])} – {figure(kpi, fan[0][3])}" if fan else "",
                note=note,
            )
        )
    return panel


# -- the funnel ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelPanel:
    stages: list[str]
    counts: list[int]
    conversions: list[float | None]  # from the stage before; None for the first stage
    chart: Markup
    leads_from: str
    leads_until: str
    problem: str = ""


def funnel_panel(funnel: Funnel, segment: Mapping[str, str]) -> FunnelPanel:
    """Leads that reached each stage, and the conversion from the stage before (DESIGN §2's
    `stage_conversion.<stage>` over every lead of the segment)."""
    leads = funnel.leads
    if segment:
        leads = leads[segment_mask(leads, segment)]
    created = leads["created_at"].dropna() if "created_at" in leads else pd.Series(dtype=object)
    leads_from = pd.Timestamp(created.min()).date().isoformat() if len(created) else "–"
    leads_until = pd.Timestamp(created.max()).date().isoformat() if len(created) else "–"
    later = conversion_stages(funnel)
    conversions: list[float | None]
    won = leads["outcome"].eq("won").to_numpy(dtype=bool, na_value=False)
    if not later or funnel.stage_events is None:
        stages, counts = ["lead", "won"], [len(leads), int(won.sum())]
        conversions = [None, counts[1] / counts[0] if counts[0] else None]
        problem = "this data set has no stage events: only leads and wins are counted"
    else:
        order = list(funnel.stages)
        stages = [order[order.index(later[0]) - 1], *later]
        furthest = furthest_stage(funnel.stage_events, order, leads["lead_id"], won)
        counts = [int(reached(furthest, won, order, stage).sum()) for stage in stages]
        overall = overall_kpis(funnel, dict(segment)).iloc[0]
        conversions = [None]
        conversions += [_value(overall.get(STAGE_CONVERSION_PREFIX + stage)) for stage in later]
        problem = ""
    notes = ["" if c is None else f"{c:.1%}" for c in conversions]
    chart = bar_chart(
        stages,
        [float(c) for c in counts],
        notes=notes,
        width=380,
        label_width=80,
        label="leads reaching each stage, and the conversion from the stage before",
        formatter=lambda v: f"{v:,.0f}",
    )
    return FunnelPanel(
        stages,
        counts,
        conversions,
        Markup(chart),  # noqa: S704 - built by svg_charts, which escapes text
        leads_from,
        leads_until,
        problem,
    )


# -- who to target --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentsPanel:
    ranking: SegmentsResponse | None
    candidates: list[str]
    chart: Markup
    problem: str = ""


def segments_panel(funnel: Funnel, columns: Sequence[str]) -> SegmentsPanel:
    """`GET /v1/segments?columns=...` as a chart of the best segments and a table."""
    candidates = default_segment_columns(funnel, 100)
    try:
        ranking = segments_response(funnel, list(columns), DEFAULT_MIN_LEADS)
    except FunnelcastInputError as error:
        return SegmentsPanel(None, candidates, Markup(""), str(error))
    best = ranking.segments[:SHOWN_SEGMENTS]
    by_value = ranking.ranked_by == "expected_value_per_lead"
    chart = bar_chart(
        [" · ".join(s.segment.values()) for s in best],
        [s.expected_value_per_lead if by_value else s.conversion_rate for s in best],
        low=[s.expected_value_p10 if by_value else s.conversion_p10 for s in best],
        high=[s.expected_value_p90 if by_value else s.conversion_p90 for s in best],
        notes=[f"{s.conversion_rate:.1%}" for s in best],
        label="segments by expected value per lead, P10-P90",
        width=460,
        label_width=170,
        formatter=(lambda v: f"{v:,.0f}") if by_value else (lambda v: f"{v:.1%}"),
    )
    problem = "" if ranking.segments else "no segment has enough decided leads"
    return SegmentsPanel(ranking, candidates, Markup(chart), problem)  # noqa: S704


# -- best open leads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadRow:
    lead_id: str
    created: str
    owner: str
    stage: str
    probability: float
    score: int
    grade: str
    expected_value: float | None
    reasons: list[str]
    against: list[str]


def best_open_leads(funnel: Funnel, scorer: LeadScorer, limit: int = SHOWN_LEADS) -> list[LeadRow]:
    """The open leads of the stored funnel with the highest probability, with reasons."""
    leads = funnel.leads[funnel.leads["outcome"] == "open"].reset_index(drop=True)
    if leads.empty:
        return []
    scores = scorer.score(leads, explain=True)
    order = sorted(
        range(len(leads)), key=lambda i: (-scores.probability[i], str(leads.at[i, "lead_id"]))
    )
    rows = []
    for i in order[:limit]:
        positive, negative = scores.reasons[i] if scores.reasons is not None else ([], [])
        created: Any = leads.at[i, "created_at"] if "created_at" in leads else None
        rows.append(
            LeadRow(
                lead_id=str(leads.at[i, "lead_id"]),
                created=pd.Timestamp(created).date().isoformat() if pd.notna(created) else "–",
                owner=_text(leads, i, "owner"),
                stage=_text(leads, i, "stage"),
                probability=float(scores.probability[i]),
                score=int(scores.score[i]),
                grade=scores.grade[i],
                expected_value=_value(scores.expected_value[i]),
                reasons=[r.text for r in positive[:3]],
                against=[r.text for r in negative[:2]],
            )
        )
    return rows


def _text(frame: pd.DataFrame, row: int, column: str) -> str:
    if column not in frame:
        return "–"
    value = frame.at[row, column]
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
