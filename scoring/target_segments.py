"""Who to target: segments of leads ranked by what a new lead of theirs is worth.

For each combination of a few attribute columns (say industry x company size x source), from the
leads whose outcome is known within the horizon (created at least `horizon_days` before the end
of the data): how many leads, how many won within the horizon, the conversion rate, the mean
amount of their won deals, and the expected value of one more lead = conversion x mean amount.
Intervals (P10-P90) come from a small parametric bootstrap: the rate from its Beta posterior
(Jeffreys prior), the mean amount from its sampling distribution. Small segments are left out:
their figures would be noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel

MAX_LEVELS = 12
DEFAULT_COLUMNS = 3
_DRAWS = 2000
SEGMENT_COLUMNS = [
    "segment",
    "leads",
    "won",
    "conversion_rate",
    "conversion_p10",
    "conversion_p90",
    "avg_deal_size",
    "expected_value_per_lead",
    "expected_value_p10",
    "expected_value_p90",
]


def default_segment_columns(funnel: Funnel, count: int = DEFAULT_COLUMNS) -> list[str]:
    """Text attribute columns with 2 to `MAX_LEVELS` levels, fewest levels first."""
    leads = funnel.leads
    candidates = []
    for column in funnel.features or funnel.attribute_columns:
        if column not in leads or pd.api.types.is_numeric_dtype(leads[column]):
            continue
        levels = leads[column].nunique(dropna=True)
        if 2 <= levels <= MAX_LEVELS:
            candidates.append((levels, column))
    return [column for _, column in sorted(candidates)[:count]]


def decided_leads(funnel: Funnel) -> pd.DataFrame:
    """Leads whose conversion is decided: created at least the horizon before the data's end
    (undated data: every lead). Column `converted`: won within the horizon."""
    leads = funnel.leads
    if not funnel.dated:
        return leads.assign(converted=(leads["outcome"] == "won").to_numpy())
    end = funnel.observed_until or leads["created_at"].max()
    horizon = pd.Timedelta(days=funnel.horizon_days)
    mature = leads[leads["created_at"] <= end - horizon]
    won_in_time = (mature["outcome"] == "won") & (
        mature["closed_at"] - mature["created_at"] <= horizon
    )
    return mature.assign(converted=won_in_time.to_numpy())


def rank_segments(
    funnel: Funnel,
    columns: Sequence[str] | None = None,
    *,
    min_leads: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Segments (combinations of `columns`) ranked by expected value per lead, best first.

    Raises:
        FunnelcastInputError: for a column the leads do not have.
    """
    columns = list(columns) if columns else default_segment_columns(funnel)
    unknown = [c for c in columns if c not in funnel.leads.columns]
    if unknown:
        raise FunnelcastInputError(
            f"unknown segment column(s) {', '.join(unknown)}; lead columns: "
            f"{', '.join(map(str, funnel.leads.columns))}"
        )
    if not columns:
        raise FunnelcastInputError("no attribute column to segment by")
    leads = decided_leads(funnel)
    has_amount = "amount" in leads and bool(leads["amount"].notna().any())
    keys = leads[columns].astype("string").fillna("(missing)")
    grouped = leads.assign(**{f"_key_{c}": keys[c] for c in columns}).groupby(
        [f"_key_{c}" for c in columns], observed=True, sort=False
    )
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in grouped:
        if len(group) < min_leads:
            continue
        labels = key if isinstance(key, tuple) else (key,)
        won = int(group["converted"].sum())
        amounts = (
            group.loc[group["converted"], "amount"].dropna().to_numpy(dtype=float)
            if has_amount
            else np.array([])
        )
        rate_draws = rng.beta(won + 0.5, len(group) - won + 0.5, _DRAWS)
        mean_amount = float(amounts.mean()) if amounts.size else np.nan
        spread = float(amounts.std(ddof=1) / np.sqrt(amounts.size)) if amounts.size > 1 else 0.0
        amount_draws = np.maximum(mean_amount + spread * rng.standard_normal(_DRAWS), 0.0)
        value_draws = rate_draws * amount_draws
        rows.append(
            {
                "segment": dict(zip(columns, map(str, labels), strict=True)),
                "leads": len(group),
                "won": won,
                "conversion_rate": won / len(group),
                "conversion_p10": float(np.quantile(rate_draws, 0.1)),
                "conversion_p90": float(np.quantile(rate_draws, 0.9)),
                "avg_deal_size": mean_amount,
                "expected_value_per_lead": won / len(group) * mean_amount,
                "expected_value_p10": float(np.quantile(value_draws, 0.1)),
                "expected_value_p90": float(np.quantile(value_draws, 0.9)),
            }
        )
    frame = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    order = "expected_value_per_lead" if has_amount else "conversion_rate"
    return frame.sort_values(order, ascending=False, na_position="last").reset_index(drop=True)
