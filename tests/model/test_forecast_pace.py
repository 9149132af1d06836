"""The closing pace's error: measured on the funnel's own past months, drawn once per draw."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.cycle import CycleModel, Deals, FloatArray, IntArray
from scoring.forecast_draws import Tally
from scoring.forecast_pace import pace_factors, pace_spread, stale_shares
from scoring.funnel import Funnel


class _SteadyCycle(CycleModel):
    """Every open deal is won within a month with the same chance, never lost."""

    horizon_days = 180

    def __init__(self, monthly: float) -> None:
        self.monthly = monthly

    def _incidence(
        self, deals: Deals, created: IntArray, moments: IntArray, days: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        won = np.minimum(days / 30.0, 1.0)[None, :] * self.monthly
        return np.repeat(won, len(deals), axis=0), np.zeros((len(deals), len(days)))


def _funnel(wins_per_month: list[int], open_deals: int = 400) -> Funnel:
    """`open_deals` deals created before the first month, then the given wins in each month."""
    rows: list[tuple[str, pd.Timestamp, str, object]] = []
    created = pd.Timestamp("2024-12-01")
    number = 0
    for month, wins in enumerate(wins_per_month):
        closed = pd.Timestamp("2025-01-15") + pd.DateOffset(months=month)
        for _ in range(wins):
            rows.append((f"d{number}", created, "won", closed))
            number += 1
    rows += [(f"d{number + i}", created, "open", pd.NaT) for i in range(open_deals)]
    leads = pd.DataFrame(rows, columns=["lead_id", "created_at", "outcome", "closed_at"])
    return Funnel(leads=leads, observed_until=pd.Timestamp("2025-06-30"))


def test_a_pace_the_model_keeps_adds_no_spread() -> None:
    funnel = _funnel([100, 75, 56, 42, 32, 24], open_deals=72)  # a quarter of the open, monthly
    spread = pace_spread(funnel, _SteadyCycle(0.25), pd.Timestamp("2025-06-30"), rng())
    assert spread < 0.05


def test_a_pace_that_swings_more_than_luck_gives_its_spread() -> None:
    funnel = _funnel([150, 40, 120, 30, 90, 20], open_deals=300)
    spread = pace_spread(funnel, _SteadyCycle(0.25), pd.Timestamp("2025-06-30"), rng())
    assert 0.3 < spread < 1.0


def test_pace_factors_average_one_and_spread_as_asked() -> None:
    assert np.all(pace_factors(0.0, 100, rng()) == 1.0)
    factors = pace_factors(0.2, 20_000, rng())
    assert abs(factors.mean() - 1.0) < 0.01
    assert abs(np.log(factors).std() - 0.2) < 0.01


def test_scaled_closes_take_off_the_pipeline_they_closed_and_keep_what_opened() -> None:
    part = Tally(2, 2)
    part.opened += 100.0
    part.pipeline += 100.0 - np.array([[10.0, 30.0]])
    part.won += np.array([[1.0, 2.0]])
    part.won_amount += np.array([[10.0, 20.0]])
    tally = Tally(2, 2)
    tally.add_closes(part, np.array([1.0, 2.0]))
    assert tally.won.tolist() == [[1.0, 2.0], [2.0, 4.0]]
    assert tally.won_amount.tolist() == [[10.0, 20.0], [20.0, 40.0]]
    assert tally.pipeline.tolist() == [[90.0, 70.0], [80.0, 40.0]]


def _cohorts(closed_in_window: int, expected_share: float = 0.25 * 28 / 30) -> pd.DataFrame:
    """Two cohorts of 200 deals open four weeks before 30 June: in those weeks January's closed
    `closed_in_window` deals, February's as many as the model expects. Ten deals created in
    June and one closed in May are there too."""
    window = pd.Timestamp("2025-06-10")
    february = round(200 * expected_share)
    rows = [("jan", "2025-01-05", window if i < closed_in_window else pd.NaT) for i in range(200)]
    rows += [("feb", "2025-02-05", window if i < february else pd.NaT) for i in range(200)]
    rows += [("jun", "2025-06-20", pd.NaT) for _ in range(10)]
    rows += [("may", "2025-01-05", pd.Timestamp("2025-05-10"))]
    leads = pd.DataFrame(rows, columns=["cohort", "created_at", "closed_at"])
    leads["created_at"] = pd.to_datetime(leads["created_at"])
    leads["outcome"] = np.where(leads["closed_at"].isna(), "open", "won")
    return leads


def test_a_cohort_that_stopped_closing_is_mostly_stale_and_one_on_pace_is_not() -> None:
    leads = _cohorts(closed_in_window=0)
    stale = stale_shares(leads, _SteadyCycle(0.25), pd.Timestamp("2025-06-30"))
    by_cohort = pd.Series(stale).groupby(leads["cohort"]).mean()
    open_january = (leads["cohort"] == "jan") & leads["closed_at"].isna()
    assert stale[open_january.to_numpy()].min() > 0.7
    assert by_cohort["feb"] < 0.05
    assert by_cohort["jun"] == 0.0 and by_cohort["may"] == 0.0  # too young; closed


def test_a_few_closes_short_of_the_expected_say_little() -> None:
    leads = _cohorts(closed_in_window=42)  # 47 expected
    stale = stale_shares(leads, _SteadyCycle(0.25), pd.Timestamp("2025-06-30"))
    assert stale[(leads["cohort"] == "jan").to_numpy()].max() < 0.15


def rng() -> np.random.Generator:
    return np.random.default_rng(0)
