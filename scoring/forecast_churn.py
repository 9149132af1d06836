"""Customers churning in the forecast window, by the churn model as of `as_of`.

Each customer active at `as_of` churns in some bin or survives the window (`category_runs`).
A period's churn rate counts the customers it began with (`scoring.kpis`): customers won during
the window are not simulated, so later periods start from today's customers minus the churned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.churn import ChurnModel
from scoring.forecast_actuals import active_customers_at
from scoring.forecast_draws import FloatArray, Tally, category_runs
from scoring.forecast_timeline import Timeline, series_days
from scoring.funnel import Funnel


def add_churn(
    tally: Tally,
    known: Funnel,
    churn: ChurnModel | None,
    timeline: Timeline,
    rng: np.random.Generator,
    notes: list[str],
) -> FloatArray | None:
    """Draw each active customer's churn bin; the customers each reported period starts with
    (draws x periods), or None without customers."""
    customers = known.customers
    if customers is None or customers.empty:
        return None
    as_of_days = timeline.as_of_days
    active_now = active_customers_at(known, as_of_days)
    starts = [float((pd.Timestamp(s) - pd.Timestamp(0)).days) for s in timeline.starts]
    base = np.zeros((tally.draws, len(starts)))
    actual_base = [active_customers_at(known, s) for s in starts]
    churned_sim = np.zeros((tally.draws, tally.periods))
    if churn is None:
        notes.append("no churn model: customers are not churned after as_of")
    else:
        started = series_days(customers["started_at"])
        ended = (
            series_days(customers["churned_at"])
            if "churned_at" in customers
            else np.full(len(customers), np.nan)
        )
        active = (started < as_of_days) & ~(ended <= as_of_days)
        group = customers[active].reset_index(drop=True)
        if not group.empty:
            relative = timeline.edges - as_of_days
            curve = churn.churn_curve(group, relative.tolist(), timeline.as_of)
            curve = np.nan_to_num(curve, nan=0.0)
            probabilities = np.column_stack(
                [np.diff(curve, axis=1), np.clip(1.0 - curve[:, -1], 0.0, None)]
            )
            report_start = timeline.report_start_days()
            began = started[active]
            runs = category_runs(probabilities, tally.draws, rng)
            churns = runs.category < timeline.n_bins
            sub = np.where(
                churns, timeline.bin_sub[np.minimum(runs.category, timeline.n_bins - 1)], -1
            )
            # Churn counts against the customers a period began with; every churn leaves the
            # base of the periods after it.
            counted = churns & (began[runs.subject] < report_start[np.maximum(sub, 0)])
            all_churn, counted_churn = runs.spans.sums(
                sub, [None, counted.astype(np.float64)], tally.periods
            )
            churned_sim = all_churn
            tally.churned += counted_churn
    bounds = timeline.sub_bounds()
    for index, start in enumerate(starts):
        if start <= as_of_days:
            base[:, index] = actual_base[index]
        else:
            before = bounds[:-1] < start
            base[:, index] = active_now - churned_sim[:, before].sum(axis=1)
    return base
