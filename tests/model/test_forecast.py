"""The Monte Carlo forecast engine: actuals, additivity, reproducibility, no look-ahead."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from scoring.forecast import ForecastModels, forecast
from scoring.forecast_draws import CYCLE_SLOTS, Tally, category_runs, median_of_counts
from scoring.kpis import compute_kpis
from scoring.snapshot import funnel_as_of
from tests.model.conftest import AS_OF, Trained


def test_with_every_deal_closed_and_no_new_leads_the_forecast_is_the_actual(
    trained_forecast: Trained,
) -> None:
    mid_month = pd.Timestamp("2026-03-15 23:59:59.999999")
    known = funnel_as_of(trained_forecast.funnel, mid_month)
    closed = known.leads[known.leads["outcome"] != "open"].reset_index(drop=True)
    finished = known.with_tables(leads=closed, observed_until=mid_month)
    models = ForecastModels(trained_forecast.models.conversion, trained_forecast.models.cycle)

    result = forecast(finished, models, freq="month", periods=1, as_of=mid_month, draws=50)

    actual = compute_kpis(finished, "month", date(2026, 3, 1), date(2026, 3, 31)).iloc[0]
    for kpi in ("lead_count", "conversion_rate", "win_rate", "avg_deal_size", "won_revenue",
                "won_deals", "pipeline_value", "churn_rate"):  # fmt: skip
        draws = result.draws[kpi][:, 0]
        np.testing.assert_allclose(draws, actual[kpi], rtol=1e-9, err_msg=kpi)
    # Cycle days are tallied in whole days; the median is within half a day.
    cycle = result.draws["sales_cycle_days"][:, 0]
    assert np.all(np.abs(cycle - actual["sales_cycle_days"]) <= 0.5 + 1e-9)


def test_a_quarter_is_the_sum_of_its_months(trained_forecast: Trained) -> None:
    models, funnel = trained_forecast.models, trained_forecast.funnel
    months = forecast(funnel, models, freq="month", periods=3, as_of=AS_OF, draws=300, seed=4)
    quarter = forecast(funnel, models, freq="quarter", periods=1, as_of=AS_OF, draws=300, seed=4)

    assert quarter.timeline.starts == (date(2026, 4, 1),)
    for kpi in ("lead_count", "won_deals", "won_revenue"):
        np.testing.assert_allclose(
            quarter.draws[kpi][:, 0], months.draws[kpi].sum(axis=1), rtol=1e-12, err_msg=kpi
        )
    # The quarter's pipeline is the one at its last month's end.
    np.testing.assert_allclose(
        quarter.draws["pipeline_value"][:, 0], months.draws["pipeline_value"][:, 2]
    )


def test_the_same_seed_gives_the_same_forecast(trained_forecast: Trained) -> None:
    models, funnel = trained_forecast.models, trained_forecast.funnel
    first = forecast(funnel, models, as_of=AS_OF, draws=200, seed=1)
    again = forecast(funnel, models, as_of=AS_OF, draws=200, seed=1)
    other = forecast(funnel, models, as_of=AS_OF, draws=200, seed=2)

    pd.testing.assert_frame_equal(first.summary(), again.summary())
    assert not np.array_equal(first.draws["won_revenue"], other.draws["won_revenue"])


def test_nothing_after_as_of_changes_the_forecast(trained_forecast: Trained) -> None:
    """Plant a different future (outcomes, amounts, attributes, new leads, churn): the
    forecast as of AS_OF must not move."""
    models, funnel = trained_forecast.models, trained_forecast.funnel
    leads = funnel.leads.copy()
    later = leads["created_at"] > AS_OF
    closes_later = leads["closed_at"] > AS_OF
    leads.loc[closes_later, "outcome"] = "won"
    leads.loc[closes_later, "amount"] = 1e9
    leads.loc[later, "industry"] = "planted"
    planted = pd.DataFrame(
        {
            "lead_id": ["planted-1", "planted-2"],
            "created_at": [AS_OF + pd.Timedelta(days=3)] * 2,
            "outcome": ["won", "won"],
            "closed_at": [AS_OF + pd.Timedelta(days=5)] * 2,
            "amount": [1e9, 1e9],
        }
    )
    customers = funnel.customers
    assert customers is not None
    active = customers["churned_at"].isna() | (customers["churned_at"] > AS_OF)
    churned_later = customers.copy()
    churned_later.loc[active, "churned_at"] = AS_OF + pd.Timedelta(days=1)
    changed = funnel.with_tables(
        leads=pd.concat([leads, planted], ignore_index=True), customers=churned_later
    )

    honest = forecast(funnel, models, as_of=AS_OF, draws=200, seed=3).summary()
    tampered = forecast(changed, models, as_of=AS_OF, draws=200, seed=3).summary()
    # Pipeline value sums the stored amounts of open deals, as the KPI does for history: the
    # store keeps one amount per deal, not its history, so a changed amount of a deal still
    # open at AS_OF moves it. Everything else must not move.
    kept = honest["kpi"] != "pipeline_value"
    pd.testing.assert_frame_equal(honest[kept], tampered[kept])


def test_forecast_intervals_are_ordered_and_plausible(trained_forecast: Trained) -> None:
    models, funnel = trained_forecast.models, trained_forecast.funnel
    summary = forecast(funnel, models, as_of=AS_OF, draws=400, seed=0).summary()

    finite = summary.dropna()
    assert (finite["p10"] <= finite["p50"]).all() and (finite["p50"] <= finite["p90"]).all()
    rates = summary[summary["kpi"].isin(["conversion_rate", "win_rate", "churn_rate"])]
    bounds = rates[["p10", "p90"]].to_numpy()
    assert ((bounds >= 0) & (bounds <= 1)).all()
    # Lead counts of each month lie within 40 % of the history's monthly mean.
    history = compute_kpis(funnel_as_of(funnel, AS_OF), "month")["lead_count"].tail(12).mean()
    counts = summary[summary["kpi"] == "lead_count"]["p50"]
    assert counts.between(0.6 * history, 1.4 * history).all()


def test_category_runs_give_every_draw_the_right_chances() -> None:
    rng = np.random.default_rng(0)
    chances = rng.dirichlet(np.ones(5), 300)
    draws = 400
    runs = category_runs(np.repeat(chances, 20, axis=0), draws, rng)
    span, draw = runs.spans.cells()
    category = np.full((len(chances) * 20, draws), -1)
    category[runs.subject[span], draw] = runs.category[span]
    assert (category >= 0).all()  # every subject lands somewhere in every draw, once
    # Over the draws, each subject's categories come in their proportions (within one draw).
    shares = np.stack([(category == k).mean(axis=1) for k in range(5)], axis=1)
    assert np.abs(shares - np.repeat(chances, 20, axis=0)).max() <= 1 / draws + 1e-12
    # In any one draw, the 20 copies of a subject land independently with its chances.
    first_draw = np.stack([(category[:, 7] == k) for k in range(5)], axis=1)
    observed = first_draw.reshape(300, 20, 5).mean(axis=1).mean(axis=0)
    np.testing.assert_allclose(observed, chances.mean(axis=0), atol=0.02)


def test_span_sums_are_the_sums_over_every_draw_they_hold() -> None:
    rng = np.random.default_rng(1)
    runs = category_runs(rng.dirichlet(np.ones(4), 50), 97, rng)
    weight = rng.random(len(runs.category))
    summed, counted = runs.spans.sums(runs.category, [weight, None], 4)
    span, draw = runs.spans.cells()
    expected = np.zeros((97, 4))
    np.add.at(expected, (draw, runs.category[span]), weight[span])
    np.testing.assert_allclose(summed, expected, atol=1e-9)
    assert counted.sum() == 50 * 97


@pytest.mark.parametrize("spread", [400.0, 6.0])  # medians far apart; medians close together
def test_cycle_medians_agree_with_counting_every_day(spread: float) -> None:
    rng = np.random.default_rng(2)
    tally = Tally(draws=60, periods=2)
    runs = category_runs(rng.dirichlet(np.ones(3), 400), 60, rng)
    days = 90 + rng.uniform(0, spread, len(runs.category))
    tally.add_cycle_spans(runs.spans, runs.category % 2, days)
    tally.add_cycle_days(rng.integers(0, 60, 30), rng.integers(0, 2, 30), rng.uniform(80, 99, 30))
    span, draw = runs.spans.cells()
    cells = [draw * CYCLE_SLOTS + np.floor(days[span]).astype(np.int64)]
    cells += [
        part // CYCLE_SLOTS // 2 * CYCLE_SLOTS + part % CYCLE_SLOTS for part in tally._cycle_parts
    ]
    counts = np.bincount(np.concatenate(cells), minlength=60 * CYCLE_SLOTS)
    expected = median_of_counts(counts.reshape(60, 1, CYCLE_SLOTS))
    np.testing.assert_array_equal(tally.cycle_medians([[0, 1]]), expected)
