"""How far the deal-cycle model's closing pace can be off: a per-draw factor on drawn closes,
and the share of stale open deals (`stale_shares`), which never close.

Each open deal's close is drawn from the deal-cycle chances as if they were exact, so the draws
only hold the luck of which deals close: with thousands of open deals the interval of a
month's wins comes out a few percent wide. The chances themselves miss by more than that from
one month to the next (a batch of leads nobody works, a push that comes a week late, a model
fitted on a few quarters), and the interval must say so.

`pace_spread` measures that miss on the funnel itself: for each of the last `PACE_MONTHS`
whole months before `as_of` (only months after the first close the data records), the deals
open at the month's start, the wins the model expected of them in the month, and the wins
that came. The spread of actual / expected beyond what the luck of the draw explains is the
model's own month-to-month error; its variance (as a lognormal's log-scale) is what
`pace_factors` puts into the draws: one factor per draw, mean 1, that multiplies the closes of
every period of that draw, a persistent error of pace as a model's error is. The factors move
wins and losses together, so win rates and deal sizes keep their draws.

The months are in-sample for the model (it was fitted on those closes), so the spread is a
floor of its error out of sample, never an inflation of it. It is measured on the model's own
chances, before `stale_shares` takes the stale deals out: the months a stale batch made the
model miss keep their weight in the interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.cycle import CycleModel
from scoring.forecast_draws import FloatArray
from scoring.funnel import Funnel

PACE_MONTHS = 6
# Stale deals (`stale_shares`): the closes of the last `STALE_WINDOW_DAYS` are the evidence.
STALE_WINDOW_DAYS = 28
_STALE_PRIOR_CLOSES = 10.0
# Open deals per past month whose chances are computed (a random sample beyond it).
_PACE_DEALS = 5000
# Months whose expected wins are below this tell more of luck than of the model.
_MIN_EXPECTED = 10.0


def pace_spread(
    known: Funnel, cycle: CycleModel, as_of: pd.Timestamp, rng: np.random.Generator
) -> float:
    """The log-scale spread of the closing pace's error (0 when the history cannot show it)."""
    leads = known.leads
    if "closed_at" not in leads or leads.empty:
        return 0.0
    closed = leads["closed_at"]
    if closed.isna().all():
        return 0.0
    first_close = closed.min()
    end = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    last_start = (end - pd.DateOffset(months=1)).to_period("M").to_timestamp()
    if last_start + pd.DateOffset(months=1) > end:
        last_start -= pd.DateOffset(months=1)
    ratios, noise = [], []
    for back in range(PACE_MONTHS - 1, -1, -1):
        start = last_start - pd.DateOffset(months=back)
        stop = start + pd.DateOffset(months=1)
        if start < first_close:
            continue
        figures = _month_figures(leads, cycle, start, stop, rng)
        if figures is None:
            continue
        actual, expected, variance = figures
        ratios.append(actual / expected - 1.0)
        noise.append(variance / expected**2)
    if len(ratios) < 2:
        return 0.0
    excess = float(np.mean(np.square(ratios)) - np.mean(noise))
    return float(np.sqrt(np.log1p(excess))) if excess > 0 else 0.0


def _month_figures(
    leads: pd.DataFrame,
    cycle: CycleModel,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    rng: np.random.Generator,
) -> tuple[float, float, float] | None:
    """Actual and expected wins in [start, stop) of the deals open at `start`, and the
    variance of the actual count if the model were exact; None when too few are expected."""
    closed_at = leads["closed_at"]
    open_then = (leads["created_at"] < start) & (closed_at.isna() | (closed_at >= start))
    deals = leads[open_then.to_numpy()]
    if deals.empty:
        return None
    if len(deals) > _PACE_DEALS:
        deals = deals.iloc[np.sort(rng.choice(len(deals), _PACE_DEALS, replace=False))]
    deals = deals.reset_index(drop=True)
    days = (stop - start) / pd.Timedelta(days=1)
    won, _ = cycle.cumulative_incidence(deals, [days], start)
    p = np.clip(won[:, 0], 0.0, 1.0)
    expected = float(p.sum())
    if expected < _MIN_EXPECTED:
        return None
    actual = float(((deals["outcome"] == "won") & (deals["closed_at"] < stop)).sum())
    return actual, expected, float((p * (1.0 - p)).sum())


def pace_factors(spread: float, draws: int, rng: np.random.Generator) -> FloatArray:
    """One lognormal factor per draw with mean 1 and log-scale `spread` (all 1 when 0)."""
    if spread <= 0:
        return np.ones(draws)
    return np.asarray(np.exp(spread * rng.standard_normal(draws) - spread**2 / 2), dtype=np.float64)


def stale_shares(leads: pd.DataFrame, cycle: CycleModel, moment: pd.Timestamp) -> FloatArray:
    """P(a deal open at `moment` is stale: it will never close), for each of `leads` (0 for
    the leads not open then, and for those created in the last `STALE_WINDOW_DAYS`).

    A cure mixture per cohort of deals created in the same calendar week (a batch of leads
    comes in together: an import, a campaign, a rep's week): the cycle model's chances are
    those of deals like the ones it was fitted on, whose history of closes holds few batches
    that nobody works any more. A cohort whose deals open at the window's start closed in the
    window fewer times than the model expected holds a share `s` of such stale deals, which
    never close; the closes estimate it (expected × (1 − s) = actual, shrunk toward 0 as if
    `_STALE_PRIOR_CLOSES` more closes had come as expected, so a few closes short say little).
    A deal that stayed open through the window, where it would have closed with chance `q`,
    is then stale with chance s / (s + (1 − s)(1 − q)). A cohort that closed more than expected
    has no stale share (a cure fraction is never negative). Only what is known at `moment` is
    used: a lead closed after it is open at it.

    The hazard model alone cannot see this: the silent weeks of a stale batch are training
    rows, and it reads them as a quiet time of the calendar or of the age, then expects the
    batch to close on the usual pace once that time has passed.
    """
    stale = np.zeros(len(leads))
    if "closed_at" not in leads or leads.empty:
        return stale
    moment = pd.Timestamp(moment)
    start = moment - pd.Timedelta(days=STALE_WINDOW_DAYS)
    created, closed = leads["created_at"], leads["closed_at"]
    at_risk = ((created < start) & (closed.isna() | (closed >= start))).to_numpy()
    if not at_risk.any():
        return stale
    peers = leads[at_risk].reset_index(drop=True)
    won, lost = cycle.cumulative_incidence(peers, [STALE_WINDOW_DAYS], start)
    expected_close = np.clip(won[:, 0] + lost[:, 0], 0.0, 1.0)
    closed_in_window = (peers["closed_at"] < moment).to_numpy()
    cohort = peers["created_at"].dt.to_period("W")
    codes, cohorts = pd.factorize(cohort)
    expected = np.bincount(codes, expected_close, len(cohorts))
    actual = np.bincount(codes, closed_in_window.astype(float), len(cohorts))
    share = np.clip(
        1.0 - (actual + _STALE_PRIOR_CLOSES) / (expected + _STALE_PRIOR_CLOSES), 0.0, 1.0
    )[codes]
    survived = share + (1.0 - share) * (1.0 - expected_close)
    posterior = np.divide(share, survived, out=np.zeros_like(share), where=survived > 0)
    stale[np.flatnonzero(at_risk)[~closed_in_window]] = posterior[~closed_in_window]
    return stale
