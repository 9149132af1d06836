"""What already happened inside the forecast's periods, up to `as_of`, as `Tally` sums.

A forecast period that began before `as_of` is partly history: its leads, wins, losses and
churn so far are the same in every draw, by the definitions of `scoring.kpis`.
"""

from __future__ import annotations

import numpy as np

from scoring.forecast_draws import FloatArray, IntArray, Tally
from scoring.forecast_timeline import Timeline, series_days
from scoring.funnel import Funnel


def sub_period_of(days: FloatArray, timeline: Timeline) -> IntArray:
    """The simulated period holding each moment (epoch days); -1 outside the forecast span."""
    bounds = timeline.sub_bounds()
    index = np.searchsorted(bounds, days, side="right") - 1
    inside = np.isfinite(days) & (index >= 0) & (index < len(bounds) - 1)
    return np.where(inside, index, -1).astype(np.int64)


def add_actuals(tally: Tally, known: Funnel, timeline: Timeline) -> None:
    """Add to every draw the leads, closes and churn of the forecast periods up to `as_of`.

    `known` is the funnel as of `timeline.as_of` (nothing after it), already filtered to the
    segment.
    """
    leads = known.leads
    created = series_days(leads["created_at"])
    closed = (
        series_days(leads["closed_at"]) if "closed_at" in leads else np.full(len(leads), np.nan)
    )
    outcome = leads["outcome"].to_numpy()
    amount = (
        leads["amount"].to_numpy(dtype=float) if "amount" in leads else np.full(len(leads), np.nan)
    )
    horizon = float(known.horizon_days)

    cohort = sub_period_of(created, timeline)
    inside = cohort >= 0
    tally.leads += np.bincount(cohort[inside], minlength=tally.periods)[None, :]
    converted = inside & (outcome == "won") & (closed - created <= horizon)
    tally.converted += np.bincount(cohort[converted], minlength=tally.periods)[None, :]

    close_period = sub_period_of(closed, timeline)
    won = (outcome == "won") & (close_period >= 0)
    lost = (outcome == "lost") & (close_period >= 0)
    tally.won += np.bincount(close_period[won], minlength=tally.periods)[None, :]
    tally.lost += np.bincount(close_period[lost], minlength=tally.periods)[None, :]
    won_amount = np.bincount(
        close_period[won], weights=np.nan_to_num(amount[won]), minlength=tally.periods
    )
    tally.won_amount += won_amount[None, :]
    tally.add_actual_cycle_days(close_period[won], closed[won] - created[won])

    customers = known.customers
    if customers is not None and "churned_at" in customers:
        churn_period = sub_period_of(series_days(customers["churned_at"]), timeline)
        report_start = timeline.report_start_days()
        started = series_days(customers["started_at"])
        # Churn counts against the customers a period began with (scoring.kpis).
        churned = churn_period >= 0
        churned[churned] = started[churned] < report_start[churn_period[churned]]
        tally.churned += np.bincount(churn_period[churned], minlength=tally.periods)[None, :]


def active_customers_at(known: Funnel, day: float) -> int:
    """Customers active at the instant `day` (epoch days): started before, not churned by it."""
    customers = known.customers
    if customers is None:
        return 0
    started = series_days(customers["started_at"])
    churned = (
        series_days(customers["churned_at"])
        if "churned_at" in customers
        else np.full(len(customers), np.nan)
    )
    return int(np.sum((started < day) & ~(churned < day)))
