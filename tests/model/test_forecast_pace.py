"""The closing pace's error: measured on the funnel's own past months, drawn once per draw."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.cycle import CycleModel, Deals, FloatArray, IntArray
from scoring.forecast_draws import Tally
from scoring.forecast_pace import pace_factors, pace_spread
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


def rng() -> np.random.Generator:
    return np.random.default_rng(0)
