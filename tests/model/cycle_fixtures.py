"""Deal-cycle fixtures: one model trained per session on a synthetic funnel, and the exact truth.

`truth.parquet` holds P(won within d days) as seen at creation only. The model also answers for
deals that are already open at some age, and for moved creation dates (the calendar effect);
`true_incidence` computes those answers exactly from the generator's own hazard formulas, so the
tests can compare the model with the truth there too.

`quarterly_funnel` is a second, small funnel whose wins come in quarterly waves (like many B2B
sales teams, and the maven data set): a few thousand deals over less than two years, with the
exact chance that a deal open at any cutoff is won in the days after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from scoring.calendar_features import day_calendar
from scoring.funnel import LEAD_COLUMNS, Funnel
from scoring.synthetic import SOURCES, SyntheticFunnel, _won_timing, generate_funnel
from scoring.synthetic_calendar import build_calendar, close_cdf
from training.deal_cycle import CycleParams, CycleResult, train_deal_cycle

CYCLE_LEADS = 50_000
CYCLE_SEED = 11
# Rows kept for fitting: about half of the deal-weeks without an event, to keep the session
# fast; one thread, because OpenMP threads spin badly on a shared, busy CI box.
CYCLE_PARAMS = CycleParams(max_person_periods=150_000, threads=1)

# The generator's stop-stage hurdles and lost-deal timing, inlined in `generate_funnel` and
# `_lost_stop_stage` (a lost deal that got further is slower to be declared lost).
_LOST_HURDLES = np.array([1.2, 0.7, 0.2, -0.3])
_GENERATOR_YEARS = 3.0


@dataclass(frozen=True)
class CycleRun:
    """The session's synthetic funnel, the trained result, and the evaluation slice with truth."""

    synthetic: SyntheticFunnel
    funnel: Funnel
    result: CycleResult
    deals: pd.DataFrame
    truth: pd.DataFrame


def synthetic_funnel(synthetic: SyntheticFunnel) -> Funnel:
    """The canonical funnel of a generated one, as ingest would see it."""
    features = tuple(c for c in synthetic.leads.columns if c not in LEAD_COLUMNS)
    return Funnel(leads=synthetic.leads, observed_until=synthetic.end, features=features)


@pytest.fixture(scope="session", name="cycle_run")
def cycle_run_fixture() -> CycleRun:
    """The session's deal-cycle run (import this function where the fixture is needed)."""
    synthetic = generate_funnel(CYCLE_LEADS, seed=CYCLE_SEED)
    funnel = synthetic_funnel(synthetic)
    result = train_deal_cycle(funnel, seed=0, params=CYCLE_PARAMS)
    test = result.split.test
    return CycleRun(
        synthetic=synthetic,
        funnel=funnel,
        result=result,
        deals=synthetic.leads.iloc[test].reset_index(drop=True),
        truth=synthetic.truth.iloc[test].reset_index(drop=True),
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def true_incidence(
    synthetic: SyntheticFunnel,
    deals: pd.DataFrame,
    truth: pd.DataFrame,
    age_days: int,
    within_days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact P(won), P(lost) in the `within_days` days after the midnight that starts day
    `age_days` of each deal's life, for a deal still open at that midnight; and the chance,
    seen at creation, that the deal is still open then.

    `deals` may carry moved `created_at` values (inside the generated calendar); attributes and
    `truth` rows (same order) give the hazards. A close on day offset `k` (day 0 = creation day)
    falls in the window when `age_days <= k < age_days + within_days`.
    """
    last_day = (synthetic.end - pd.Timedelta(hours=18)).normalize()
    creation_days = round(_GENERATOR_YEARS * 365.25)
    first_day = last_day - pd.Timedelta(days=creation_days - 1)
    calendar = build_calendar(first_day, creation_days)
    day = ((deals["created_at"].dt.normalize() - first_day) // pd.Timedelta(days=1)).to_numpy()
    day = day.astype(np.int64)
    source = deals["source"].map(SOURCES.index).to_numpy(dtype=np.int64)
    delay, base = _won_timing(
        {
            "employees": deals["employees"].to_numpy(dtype=np.int64),
            "source": source,
            "demo_requested": deals["demo_requested"].to_numpy(dtype=np.int64),
        }
    )
    p_won = truth["p_won"].to_numpy()
    first, last = age_days - 1, age_days + within_days - 1

    def window(cum: np.ndarray, delay: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, ...]:
        before = close_cdf(cum, day, delay, base, first)
        return 1.0 - before, close_cdf(cum, day, delay, base, last) - before

    won_open, won_next = (p_won * part for part in window(calendar.won_cum, delay, base))
    passes = _sigmoid(_LOST_HURDLES + 0.6 * (truth["logit"].to_numpy()[:, None] + 1.5))
    reach = np.concatenate([np.ones((len(deals), 1)), np.cumprod(passes, axis=1)], axis=1)
    stop_share = reach * np.concatenate([1.0 - passes, np.ones((len(deals), 1))], axis=1)
    lost_open = np.zeros(len(deals))
    lost_next = np.zeros(len(deals))
    for stop in range(5):
        share = (1.0 - p_won) * stop_share[:, stop]
        lost_delay = np.full(len(deals), 1 + 4 * stop, dtype=np.int64)
        lost_base = np.full(len(deals), 0.05 * np.exp(-0.3 * stop))
        still, closing = window(calendar.lost_cum, lost_delay, lost_base)
        lost_open += share * still
        lost_next += share * closing
    open_now = won_open + lost_open
    return won_next / open_now, lost_next / open_now, open_now


# Daily win rate of an open deal in the first, second and third month of a quarter (a grade-1
# deal), its daily loss rate, and the days a new deal needs before it can close.
QUARTERLY_WIN_RATES = np.array([0.002, 0.006, 0.03])
QUARTERLY_LOSS_RATE = 0.006
QUARTERLY_MIN_AGE = 14
_GRADES = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class QuarterlyFunnel:
    """Leads (`grade` the one attribute, scaling the win rate) and what generated them: daily
    rates by day index from `first_day` (days since 1970-01-01), and each lead's creation day
    index and grade."""

    leads: pd.DataFrame
    first_day: int
    won_rate: np.ndarray
    lost_rate: np.ndarray
    created: np.ndarray
    grade: np.ndarray

    def p_won_within(self, positions: np.ndarray, cutoff: pd.Timestamp, days: int) -> np.ndarray:
        """Exact P(won on one of the `days` days after the cutoff's day | open at the cutoff)
        for the leads at `positions` (the cutoff is the end of a day: closes fall at 15:00)."""
        after = (cutoff.normalize() - pd.Timestamp(0)).days + 1 - self.first_day
        window = np.arange(after, after + days)
        grade = self.grade[positions][:, None]
        # Not yet at risk before the minimum age.
        at_risk = window[None, :] >= self.created[positions][:, None] + QUARTERLY_MIN_AGE
        won = np.where(at_risk, grade * self.won_rate[window][None, :], 0.0)
        lost = np.where(at_risk, self.lost_rate[window][None, :], 0.0)
        total = won + lost
        survive = np.exp(-np.cumsum(total, axis=1) + total)
        share = np.divide(won, total, out=np.zeros_like(won), where=total > 0)
        return np.asarray((survive * -np.expm1(-total) * share).sum(axis=1))


def quarterly_funnel(n_leads: int, first: str, days: int, seed: int = 0) -> QuarterlyFunnel:
    """`n_leads` created uniformly over `days` days from `first`, closing by `QUARTERLY_*`
    rates until 800 days after the last creation (cut the funnel at a cutoff to use it)."""
    rng = np.random.default_rng(seed)
    first_day = (pd.Timestamp(first) - pd.Timestamp(0)).days
    span = days + 800
    month_of_quarter = day_calendar(np.arange(first_day, first_day + span))["month_of_quarter"]
    won_rate = QUARTERLY_WIN_RATES[month_of_quarter - 1]
    lost_rate = np.full(span, QUARTERLY_LOSS_RATE)
    created = np.sort(rng.integers(0, days, n_leads))
    grade = rng.choice(np.array(_GRADES), n_leads)
    closed = np.full(n_leads, -1)
    won = np.zeros(n_leads, dtype=bool)
    need = rng.standard_exponential(n_leads)
    for g in _GRADES:
        # A deal closes on the first day its cumulative hazard (from its minimum age) passes
        # its exponential draw; it is won with that day's share of the hazard.
        mine = np.flatnonzero(grade == g)
        hazard = g * won_rate + lost_rate
        cumulative = np.concatenate([[0.0], np.cumsum(hazard)])
        start = created[mine] + QUARTERLY_MIN_AGE
        day = np.searchsorted(cumulative, cumulative[start] + need[mine], side="left") - 1
        inside = day < span
        closed[mine[inside]] = day[inside]
        share = g * won_rate[day[inside]] / hazard[day[inside]]
        won[mine[inside]] = rng.random(int(inside.sum())) < share
    base = pd.Timestamp(first)
    created_at = (
        base + pd.to_timedelta(created, "D") + pd.to_timedelta(rng.integers(9, 18, n_leads), "h")
    )
    closed_at = base + pd.to_timedelta(np.maximum(closed, 0), "D") + pd.Timedelta(hours=15)
    leads = pd.DataFrame(
        {
            "lead_id": [f"q{i}" for i in range(n_leads)],
            "created_at": created_at,
            "outcome": np.where(closed < 0, "open", np.where(won, "won", "lost")),
            "closed_at": pd.Series(closed_at).where(closed >= 0),
            "grade": pd.Series(grade).map({g: f"grade {g}" for g in _GRADES}),
        }
    )
    return QuarterlyFunnel(leads, first_day, won_rate, lost_rate, created, grade)
