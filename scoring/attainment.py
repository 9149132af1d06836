"""Goal attainment (DESIGN §2, §5): how likely a SMART goal is to be met, and what it would take.

A check as of a moment gives: the KPI so far (the days of the period up to `as_of`), the
forecast of the whole period (P10/P50/P90 over the engine's draws, actuals included), the
probability of meeting the target (the share of draws that meet it; a draw where the KPI is
undefined, say no deal closed, does not meet it), a status from that probability, and what it
would take:
- volume and revenue goals (`lead_count`, `won_deals`, `won_revenue`, `pipeline_value`, at least):
  the extra new leads a week, from now to the period's end, that bring the probability to
  `TARGET_PROBABILITY`, found with the engine (same seed, so only the extra leads differ; their
  cycle time is the model's), or "not reachable in time" when even ten times today's weekly
  volume would not do it: leads created now can no longer close inside the period;
- rate goals (`conversion_rate`, `win_rate`, `churn_rate`) and `avg_deal_size`: the rate (or
  deal size) the rest of the period needs, from the actuals so far and the median forecast of
  what is still to come.
A period that is over reports its final actual and `met` / `missed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from scoring.forecast import Forecast, ForecastModels, forecast
from scoring.forecast_actuals import add_actuals
from scoring.forecast_churn import add_churn
from scoring.forecast_draws import FloatArray, Tally
from scoring.forecast_kpis import FORECAST_KPIS, kpi_draws
from scoring.forecast_timeline import build_range_timeline, end_of_day
from scoring.funnel import Funnel
from scoring.goal_store import GoalCheck
from scoring.goals import DEFAULT_AT_RISK, DEFAULT_ON_TRACK, Goal, goal_status
from scoring.segments import segment_customers, segment_mask
from scoring.snapshot import funnel_as_of

TARGET_PROBABILITY = 0.8
VOLUME_KPIS = ("lead_count", "won_deals", "won_revenue", "pipeline_value")
_SEARCH_STEPS = 8
_MAX_VOLUME_FACTOR = 10.0

Takes = Literal[
    "nothing_more",
    "extra_leads_per_week",
    "not_reachable_in_time",
    "rate_needed",
    "deal_size_needed",
    "not_available",
]


@dataclass(frozen=True)
class WhatItTakes:
    kind: Takes
    value: float | None
    message: str


@dataclass(frozen=True)
class Attainment:
    """One goal's check (see the module docstring)."""

    goal: Goal
    as_of: pd.Timestamp
    state: Literal["past", "current", "future"]
    actual: float | None  # to date; the final value once the period is over
    forecast: dict[str, float | None] | None  # mean, p10, p50, p90 of the whole period
    probability: float
    status: str  # on_track / at_risk / off_track, or met / missed once over
    takes: WhatItTakes
    notes: tuple[str, ...] = field(default=())

    def as_record(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "state": self.state,
            "actual": self.actual,
            "forecast": self.forecast,
            "probability": self.probability,
            "status": self.status,
            "what_it_takes": {
                "kind": self.takes.kind,
                "value": self.takes.value,
                "message": self.takes.message,
            },
            "notes": list(self.notes),
        }

    def as_check(self) -> GoalCheck:
        figures = self.forecast or {}
        return GoalCheck(
            status=self.status,
            actual=self.actual,
            forecast_p10=figures.get("p10"),
            forecast_p50=figures.get("p50"),
            forecast_p90=figures.get("p90"),
            probability=self.probability,
            detail={"state": self.state, "what_it_takes": self.as_record()["what_it_takes"]},
        )


def check_goal(
    goal: Goal,
    funnel: Funnel,
    models: ForecastModels | None,
    *,
    as_of: pd.Timestamp | None = None,
    draws: int = 2000,
    seed: int = 0,
    on_track: float = DEFAULT_ON_TRACK,
    at_risk: float = DEFAULT_AT_RISK,
) -> Attainment:
    """Check `goal` against `funnel` as of `as_of` (default: the end of the data)."""
    if goal.kpi not in FORECAST_KPIS:
        raise ValueError(f"{goal.kpi} is not forecast; attainment covers {FORECAST_KPIS}")
    moment = end_of_day(_default_as_of(funnel, as_of))
    last_known = (moment + pd.Timedelta(microseconds=1)).date() - timedelta(days=1)
    if goal.period_end <= last_known:
        final = _actual(goal, funnel, end_of_day(pd.Timestamp(goal.period_end)), goal.period_end)
        met = final is not None and goal.is_met_by(final)
        return Attainment(
            goal,
            moment,
            "past",
            final,
            None,
            1.0 if met else 0.0,
            "met" if met else "missed",
            WhatItTakes("not_available", None, "the period is over"),
        )
    if models is None:
        raise ValueError("a goal whose period is not over needs the forecast models")
    state: Literal["current", "future"] = "current" if goal.period_start <= last_known else "future"
    to_date = _actual(goal, funnel, moment, last_known) if state == "current" else None
    result = _forecast(goal, funnel, models, moment, draws, seed, 0.0)
    values = result.draws[goal.kpi][:, 0]
    probability = _probability(goal, values)
    takes = _what_it_takes(goal, funnel, models, moment, result, probability, draws, seed)
    return Attainment(
        goal,
        moment,
        state,
        to_date,
        _figures(values),
        probability,
        goal_status(probability, on_track, at_risk),
        takes,
        result.notes,
    )


def _default_as_of(funnel: Funnel, as_of: pd.Timestamp | None) -> pd.Timestamp:
    if as_of is not None:
        return pd.Timestamp(as_of)
    if funnel.observed_until is not None:
        return pd.Timestamp(funnel.observed_until)
    return pd.Timestamp(funnel.leads["created_at"].max())


def _forecast(
    goal: Goal,
    funnel: Funnel,
    models: ForecastModels,
    moment: pd.Timestamp,
    draws: int,
    seed: int,
    extra: float,
) -> Forecast:
    return forecast(
        funnel,
        models,
        as_of=moment,
        segment=goal.segment,
        draws=draws,
        seed=seed,
        extra_leads_per_week=extra,
        period=(goal.period_start, goal.period_end),
    )


def _probability(goal: Goal, values: FloatArray) -> float:
    met = np.array([np.isfinite(v) and goal.is_met_by(float(v)) for v in values])
    return float(met.mean())


def _figures(values: FloatArray) -> dict[str, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"mean": None, "p10": None, "p50": None, "p90": None}
    p10, p50, p90 = np.quantile(finite, [0.1, 0.5, 0.9])
    return {"mean": float(finite.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def _actual(goal: Goal, funnel: Funnel, moment: pd.Timestamp, last_day: date) -> float | None:
    """The goal's KPI over its period's days up to `last_day`, from the funnel known then."""
    seen = moment if funnel.observed_until is None else min(moment, funnel.observed_until)
    known = funnel_as_of(funnel, seen)
    if goal.segment:
        matches = segment_mask(known.leads, goal.segment)
        customers = segment_customers(known.customers, known.leads, goal.segment)
        known = known.with_tables(leads=known.leads[matches].reset_index(drop=True))
        known = known.with_tables(customers=customers)
    # The period cut at `last_day`, tallied with the engine's definitions and no draws.
    end = min(goal.period_end, last_day)
    timeline = build_range_timeline(
        end_of_day(pd.Timestamp(goal.period_start)) - pd.Timedelta(days=1),
        goal.period_start,
        end,
    )
    tally = Tally(1, len(timeline.sub_starts))
    add_actuals(tally, known, timeline)
    _open_pipeline(tally, known)
    base = add_churn(tally, known, None, timeline, np.random.default_rng(0), [])
    has_amounts = "amount" in known.leads and bool(known.leads["amount"].notna().any())
    value = float(kpi_draws(tally, timeline, base, has_amounts=has_amounts)[goal.kpi][0, 0])
    return value if np.isfinite(value) else None


def _open_pipeline(tally: Tally, known: Funnel) -> None:
    """Pipeline so far: the amounts of the deals open at the moment the funnel is known."""
    if "amount" not in known.leads:
        return
    open_deals = (known.leads["outcome"] == "open").to_numpy()
    tally.pipeline += float(np.nansum(known.leads["amount"].to_numpy(dtype=float)[open_deals]))


def _what_it_takes(
    goal: Goal,
    funnel: Funnel,
    models: ForecastModels,
    moment: pd.Timestamp,
    result: Forecast,
    probability: float,
    draws: int,
    seed: int,
) -> WhatItTakes:
    if probability >= TARGET_PROBABILITY:
        return WhatItTakes(
            "nothing_more", None, f"already {probability:.0%} likely on the current course"
        )
    if goal.kpi in VOLUME_KPIS and goal.direction == "at_least":
        return _extra_leads(goal, funnel, models, moment, draws, seed)
    if goal.kpi in ("conversion_rate", "win_rate", "churn_rate", "avg_deal_size"):
        return _rate_needed(goal, funnel, moment, result)
    return WhatItTakes("not_available", None, f"no lever is modelled for {goal.kpi}")


def _extra_leads(
    goal: Goal,
    funnel: Funnel,
    models: ForecastModels,
    moment: pd.Timestamp,
    draws: int,
    seed: int,
) -> WhatItTakes:
    search_draws = min(draws, 500)
    weekly = _weekly_volume(goal, funnel, moment)
    high = max(10.0, _MAX_VOLUME_FACTOR * weekly)

    def chance(extra: float) -> float:
        outcome = _forecast(goal, funnel, models, moment, search_draws, seed, extra)
        return _probability(goal, outcome.draws[goal.kpi][:, 0])

    if chance(high) < TARGET_PROBABILITY:
        return WhatItTakes(
            "not_reachable_in_time",
            None,
            f"not reachable in time: even {high:,.0f} more new leads a week (ten times today's "
            "volume) would not bring it to 80 %; leads created now can no longer close in time",
        )
    low = 0.0
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2
        if chance(middle) >= TARGET_PROBABILITY:
            high = middle
        else:
            low = middle
    return WhatItTakes(
        "extra_leads_per_week",
        float(np.ceil(high)),
        f"about {np.ceil(high):,.0f} more new leads a week from now on "
        f"(today about {weekly:,.0f} a week) to make it {TARGET_PROBABILITY:.0%} likely",
    )


def _weekly_volume(goal: Goal, funnel: Funnel, moment: pd.Timestamp) -> float:
    leads = funnel.leads
    if goal.segment:
        leads = leads[segment_mask(leads, goal.segment)]
    recent = leads[
        (leads["created_at"] <= moment) & (leads["created_at"] > moment - pd.Timedelta(days=91))
    ]
    return len(recent) / 13.0


def _rate_needed(goal: Goal, funnel: Funnel, moment: pd.Timestamp, result: Forecast) -> WhatItTakes:
    """The rate the rest of the period needs, given what already happened (median forecast of
    the period's counts)."""
    draws = result.draws
    p50 = {
        k: float(np.nanmedian(v[:, 0])) if np.isfinite(v).any() else np.nan
        for k, v in draws.items()
    }
    last_day = (moment + pd.Timedelta(microseconds=1)).date() - timedelta(days=1)
    started = goal.period_start <= last_day
    if goal.kpi == "conversion_rate":
        total = p50["lead_count"]
        so_far = _actual_of(goal, funnel, moment, "lead_count") if started else 0.0
    elif goal.kpi == "win_rate":
        total = p50["won_deals"] / p50["win_rate"] if p50["win_rate"] else np.nan
        so_far = _closes_so_far(goal, funnel, moment) if started else 0.0
    elif goal.kpi == "avg_deal_size":
        total = p50["won_deals"]
        so_far = _actual_of(goal, funnel, moment, "won_deals") if started else 0.0
    else:  # churn: the customers the period began with are the base all period
        return WhatItTakes(
            "rate_needed",
            goal.target,
            f"churn over the period must stay {'under' if goal.direction == 'at_most' else 'over'}"
            f" {goal.target:.1%} of the customers it began with",
        )
    actual_rate = _actual_of(goal, funnel, moment, goal.kpi) if started else 0.0
    remaining = total - so_far
    if not np.isfinite(remaining) or remaining <= 0:
        return WhatItTakes("not_available", None, "nothing left in the period to change it")
    needed = (goal.target * total - (actual_rate or 0.0) * so_far) / remaining
    if goal.kpi == "avg_deal_size":
        return WhatItTakes(
            "deal_size_needed",
            float(needed),
            f"the remaining ~{remaining:,.0f} won deals need an average of {needed:,.0f}",
        )
    impossible = needed > 1 or needed < 0
    return WhatItTakes(
        "rate_needed",
        float(needed),
        f"the rest of the period needs a {goal.kpi.replace('_', ' ')} of {needed:.1%}"
        + (" (out of reach)" if impossible else ""),
    )


def _actual_of(goal: Goal, funnel: Funnel, moment: pd.Timestamp, kpi: str) -> float:
    last_day = (moment + pd.Timedelta(microseconds=1)).date() - timedelta(days=1)
    other = Goal(
        name=goal.name,
        kpi=kpi,
        direction="at_least",
        target=0.0,
        period_start=goal.period_start,
        period_end=goal.period_end,
        segment=goal.segment,
    )
    value = _actual(other, funnel, moment, last_day)
    return float(value) if value is not None else 0.0


def _closes_so_far(goal: Goal, funnel: Funnel, moment: pd.Timestamp) -> float:
    won = _actual_of(goal, funnel, moment, "won_deals")
    rate = _actual_of(goal, funnel, moment, "win_rate")
    return won / rate if rate > 0 else 0.0
