"""The funnel as it stood at a cutoff (DESIGN §3, point-in-time rule).

Leads created after the cutoff are unseen; a lead closed after it was open at it; stage events
after it are unseen; customers who started after it are unseen and churn after it has not
happened. Lead attributes are taken as known from creation.
"""

from __future__ import annotations

import pandas as pd

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel


def funnel_as_of(funnel: Funnel, cutoff: pd.Timestamp) -> Funnel:
    """Rebuild `funnel` as it was known at `cutoff` (inclusive)."""
    if not funnel.dated:
        raise FunnelcastInputError("a cutoff needs dated data; this data set has no dates")
    if funnel.observed_until is not None and cutoff > funnel.observed_until:
        raise FunnelcastInputError(
            f"cutoff {cutoff} is after the end of the data ({funnel.observed_until})"
        )
    leads = funnel.leads[funnel.leads["created_at"] <= cutoff].copy()
    if leads.empty:
        raise FunnelcastInputError(f"no leads were created by the cutoff {cutoff}")
    reopened = leads["closed_at"] > cutoff
    leads.loc[reopened, "outcome"] = "open"
    leads.loc[reopened, "closed_at"] = pd.NaT

    events = funnel.stage_events
    if events is not None:
        events = events[(events["entered_at"] <= cutoff) & events["lead_id"].isin(leads["lead_id"])]
        events = events.reset_index(drop=True)
    if "stage" in leads:
        leads["stage"] = _stage_at_cutoff(leads, events, reopened)

    customers = funnel.customers
    if customers is not None:
        customers = customers[customers["started_at"] <= cutoff].copy()
        customers.loc[customers["churned_at"] > cutoff, "churned_at"] = pd.NaT
        customers = customers.reset_index(drop=True)
    return funnel.with_tables(
        leads=leads.reset_index(drop=True),
        stage_events=events,
        customers=customers,
        observed_until=cutoff,
    )


def _stage_at_cutoff(
    leads: pd.DataFrame, events: pd.DataFrame | None, reopened: pd.Series
) -> pd.Series:
    """A reopened lead's stage is its last stage event before the cutoff, else unknown."""
    stage = leads["stage"].copy()
    if not reopened.any():
        return stage
    stage[reopened] = None
    if events is not None and not events.empty:
        last = events.sort_values("entered_at").groupby("lead_id")["stage"].last()
        ids = leads.loc[reopened, "lead_id"]
        stage[reopened] = ids.map(last).astype(object).where(ids.isin(last.index), None)
    return stage
