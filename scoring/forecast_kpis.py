"""From the engine's per-draw sums to the KPIs of DESIGN §2, per reported period.

Sums (leads, wins, amounts, losses, churn, the tally of cycle days) add up over the simulated
periods a reported period holds; ratios and medians are taken after adding, per draw, by the
definitions of `scoring.kpis`. Pipeline is the one at the period's end.
"""

from __future__ import annotations

import numpy as np

from scoring.forecast_draws import FloatArray, Tally
from scoring.forecast_timeline import Timeline
from scoring.kpis import KPI_IDS

# Every KPI of DESIGN §2 but the stage conversions (the engine does not model stage moves).
FORECAST_KPIS: tuple[str, ...] = KPI_IDS


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    return np.divide(
        numerator, denominator, out=np.full_like(numerator, np.nan), where=denominator > 0
    )


def kpi_draws(
    tally: Tally, timeline: Timeline, churn_base: FloatArray | None, *, has_amounts: bool
) -> dict[str, FloatArray]:
    """Every forecast KPI as draws x reported periods (NaN where undefined for a draw)."""
    groups = [list(subs) for subs in timeline.sub_of_period]

    def summed(values: FloatArray) -> FloatArray:
        return np.column_stack([values[:, g].sum(axis=1) for g in groups])

    leads = summed(tally.leads)
    won = summed(tally.won)
    lost = summed(tally.lost)
    revenue = summed(tally.won_amount)
    missing = np.full_like(won, np.nan)
    draws: dict[str, FloatArray] = {
        "lead_count": leads,
        "conversion_rate": _ratio(summed(tally.converted), leads),
        "win_rate": _ratio(won, won + lost),
        "avg_deal_size": _ratio(revenue, won) if has_amounts else missing,
        "sales_cycle_days": tally.cycle_medians(groups),
        "won_revenue": revenue if has_amounts else missing.copy(),
        "won_deals": won,
        "pipeline_value": (
            np.column_stack([tally.pipeline[:, g[-1]] for g in groups])
            if has_amounts
            else missing.copy()
        ),
        "churn_rate": (
            _ratio(summed(tally.churned), churn_base) if churn_base is not None else missing.copy()
        ),
    }
    return draws
