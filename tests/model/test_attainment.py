"""Goal attainment on funnels where the answer is known."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from scoring.attainment import check_goal
from scoring.goals import Goal
from scoring.kpis import compute_kpis
from tests.model.conftest import Trained

MID_MAY = pd.Timestamp("2026-05-15")


def _goal(kpi: str, direction: str, target: float, start: date, end: date) -> Goal:
    return Goal(
        name=f"{kpi} {direction} {target}",
        kpi=kpi,
        direction=direction,  # type: ignore[arg-type]
        target=target,
        period_start=start,
        period_end=end,
    )


def test_a_target_already_met_is_certain(trained_forecast: Trained) -> None:
    funnel, models = trained_forecast.funnel, trained_forecast.models
    so_far = check_goal(
        _goal("won_deals", "at_least", 0, date(2026, 5, 1), date(2026, 5, 31)),
        funnel,
        models,
        as_of=MID_MAY,
        draws=200,
    ).actual
    assert so_far is not None and so_far > 0
    met = _goal("won_deals", "at_least", so_far, date(2026, 5, 1), date(2026, 5, 31))

    result = check_goal(met, funnel, models, as_of=MID_MAY, draws=200)

    assert result.state == "current"
    assert result.probability == 1.0
    assert result.status == "on_track"
    assert result.takes.kind == "nothing_more"


def test_an_impossible_target_is_about_zero_and_not_reachable_in_time(
    trained_forecast: Trained,
) -> None:
    funnel, models = trained_forecast.funnel, trained_forecast.models
    history = compute_kpis(funnel, "month")["won_revenue"].max()
    # A hundred record months of revenue in the two weeks left of May.
    impossible = _goal(
        "won_revenue", "at_least", 100 * history, date(2026, 5, 1), date(2026, 5, 31)
    )

    result = check_goal(impossible, funnel, models, as_of=MID_MAY, draws=200)

    assert result.probability <= 0.01
    assert result.status == "off_track"
    assert result.takes.kind == "not_reachable_in_time"


def test_an_at_most_target_already_exceeded_is_zero(trained_forecast: Trained) -> None:
    funnel, models = trained_forecast.funnel, trained_forecast.models
    leads = _goal("lead_count", "at_most", 10, date(2026, 5, 1), date(2026, 5, 31))

    result = check_goal(leads, funnel, models, as_of=MID_MAY, draws=200)

    assert result.actual is not None and result.actual > 10
    assert result.probability == 0.0


def test_a_reachable_volume_goal_says_how_many_more_leads(trained_forecast: Trained) -> None:
    funnel, models = trained_forecast.funnel, trained_forecast.models
    base = check_goal(
        _goal("lead_count", "at_least", 0, date(2026, 6, 1), date(2026, 6, 30)),
        funnel,
        models,
        as_of=MID_MAY,
        draws=300,
    )
    assert base.forecast is not None and base.forecast["p90"] is not None
    stretch = _goal("lead_count", "at_least", 1.3 * base.forecast["p90"], date(2026, 6, 1),
                    date(2026, 6, 30))  # fmt: skip

    result = check_goal(stretch, funnel, models, as_of=MID_MAY, draws=300)

    assert result.state == "future"
    assert result.probability < 0.3
    assert result.takes.kind == "extra_leads_per_week"
    assert result.takes.value is not None and result.takes.value > 0
    # Adding the answer (about 4.3 weeks of June) must reach the target in most draws.
    median = base.forecast["p50"]
    assert median is not None
    assert result.takes.value * 30 / 7 >= stretch.target - median


def test_a_past_period_reports_its_final_actual(trained_forecast: Trained) -> None:
    funnel, models = trained_forecast.funnel, trained_forecast.models
    march = compute_kpis(funnel, "month", date(2026, 3, 1), date(2026, 3, 31)).iloc[0]
    met = _goal("won_deals", "at_least", march["won_deals"], date(2026, 3, 1), date(2026, 3, 31))
    missed = _goal("won_deals", "at_least", march["won_deals"] + 1, date(2026, 3, 1),
                   date(2026, 3, 31))  # fmt: skip

    first = check_goal(met, funnel, models, as_of=MID_MAY)
    second = check_goal(missed, funnel, None, as_of=MID_MAY)

    assert first.actual == pytest.approx(march["won_deals"])
    assert (first.status, first.probability) == ("met", 1.0)
    assert (second.status, second.probability) == ("missed", 0.0)
