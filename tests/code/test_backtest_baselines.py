"""Back-test actuals, baselines and scores on hand-made funnels; every number is worked out here.

`pipeline_funnel()`: observed until 2024-12-31, cutoff 2024-06-30 in most tests.

| lead | created    | outcome | closed     | amount | cycle | at the cutoff                     |
|------|------------|---------|------------|--------|-------|-----------------------------------|
| W1   | 2024-01-01 | won     | 2024-01-31 | 1000   | 30 d  | won                               |
| W2   | 2024-02-01 | won     | 2024-03-12 | 2000   | 40 d  | won                               |
| L1   | 2024-02-10 | lost    | 2024-04-10 | 500    |       | lost                              |
| W3   | 2024-03-01 | won     | 2024-04-20 | 3000   | 50 d  | won                               |
| W4   | 2024-04-16 | won     | 2024-06-15 | 500    | 60 d  | won                               |
| O3   | 2024-05-01 | open    |            | 8000   |       | open, expected 06-15 (overdue)    |
| O5   | 2024-05-17 | open    |            | 100    |       | open, expected 07-01 00:00 (July) |
| X1   | 2024-06-01 | won     | 2024-08-15 | 4000   | 75 d  | open, expected 07-16 (July)       |
| O1   | 2024-06-10 | won     | 2024-07-20 | 1000   | 40 d  | open, expected 07-25 (July)       |
| O4   | 2024-06-15 | open    |            | (none) |       | open, expected 07-30 (July)       |
| O2   | 2024-06-25 | open    |            | 2000   |       | open, expected 08-09 (August)     |

At the cutoff: won W1-W4, lost L1 -> win rate 4/5 = 0.8; median won cycle of 30/40/50/60 days
= 45 days (X1 and O1 close after the cutoff: counted, they would give 6/7 and 50 days).
Weighted pipeline, July: X1 4000 + O1 1000 + O5 100 (+ O4, no amount) = 5100 x 0.8 = 4080 and
4 deals x 0.8 = 3.2; August: O2 2000 x 0.8 = 1600 and 0.8; Q3: 7100 x 0.8 = 5680 and 4.0.
Leads per month: Jan 1, Feb 2, Mar 1, Apr 1, May 2, Jun 4. Won revenue by close month: Jan 1000,
Mar 2000, Apr 3000, May 0, Jun 500, Jul 1000 (O1), Aug 4000 (X1).
"""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from scoring.funnel import Funnel
from scoring.kpis import KPI_IDS, KpiError, compute_kpis
from scoring.synthetic import generate_funnel
from training.backtest_baselines import (
    BASELINE_METHODS,
    CutoffBaselines,
    actual_kpis,
    baselines,
    future_periods,
    period_freq,
)
from training.backtest_report import BacktestRun, backtest_json, backtest_table, summarise

CUTOFF = date(2024, 6, 30)
JULY = (date(2024, 7, 1), date(2024, 7, 31))
AUGUST = (date(2024, 8, 1), date(2024, 8, 31))
SEPTEMBER = (date(2024, 9, 1), date(2024, 9, 30))
OCTOBER = (date(2024, 10, 1), date(2024, 10, 31))
Q3 = (date(2024, 7, 1), date(2024, 9, 30))

Lead = tuple[str, str, str, str | None, float]

PIPELINE_LEADS: list[Lead] = [
    ("W1", "2024-01-01", "won", "2024-01-31", 1000.0),
    ("W2", "2024-02-01", "won", "2024-03-12", 2000.0),
    ("L1", "2024-02-10", "lost", "2024-04-10", 500.0),
    ("W3", "2024-03-01", "won", "2024-04-20", 3000.0),
    ("W4", "2024-04-16", "won", "2024-06-15", 500.0),
    ("O3", "2024-05-01", "open", None, 8000.0),
    ("O5", "2024-05-17", "open", None, 100.0),
    ("X1", "2024-06-01", "won", "2024-08-15", 4000.0),
    ("O1", "2024-06-10", "won", "2024-07-20", 1000.0),
    ("O4", "2024-06-15", "open", None, math.nan),
    ("O2", "2024-06-25", "open", None, 2000.0),
]


def make_funnel(rows: list[Lead], observed: str = "2024-12-31", horizon_days: int = 180) -> Funnel:
    leads = pd.DataFrame(rows, columns=["lead_id", "created_at", "outcome", "closed_at", "amount"])
    leads["created_at"] = pd.to_datetime(leads["created_at"])
    leads["closed_at"] = pd.to_datetime(leads["closed_at"])
    leads["region"] = ["north" if i % 2 else "south" for i in range(len(leads))]
    return Funnel(leads=leads, horizon_days=horizon_days, observed_until=pd.Timestamp(observed))


def pipeline_funnel() -> Funnel:
    return make_funnel(PIPELINE_LEADS)


def monthly_funnel() -> Funnel:
    """Month i from January 2022 (i = 0) has i + 1 leads: its first won 10 days later, the rest
    open. So a month's lead count names it (July 2023 -> 19) and its conversion is 1/(i + 1)."""
    rows: list[Lead] = []
    for i in range(30):  # 2022-01 .. 2024-06
        first = pd.Timestamp(2022 + i // 12, i % 12 + 1, 1)
        for j in range(i + 1):
            created = first + pd.Timedelta(hours=j)
            closed = str(created + pd.Timedelta(days=10)) if j == 0 else None
            rows.append((f"M{i}-{j}", str(created), "won" if j == 0 else "open", closed, 100.0))
    return make_funnel(rows)


def test_future_periods_start_with_the_next_whole_period() -> None:
    assert future_periods(date(2017, 6, 30), "month", 3) == [
        (date(2017, 7, 1), date(2017, 7, 31)),
        (date(2017, 8, 1), date(2017, 8, 31)),
        (date(2017, 9, 1), date(2017, 9, 30)),
    ]
    assert future_periods(date(2017, 6, 15), "month", 1) == [(date(2017, 7, 1), date(2017, 7, 31))]
    assert future_periods(date(2017, 6, 30), "quarter", 2) == [
        (date(2017, 7, 1), date(2017, 9, 30)),
        (date(2017, 10, 1), date(2017, 12, 31)),
    ]
    # 2024-06-30 is a Sunday: the next ISO week starts the day after; a Wednesday skips its week.
    assert future_periods(date(2024, 6, 30), "week", 1) == [(date(2024, 7, 1), date(2024, 7, 7))]
    assert future_periods(date(2024, 6, 26), "week", 1) == [(date(2024, 7, 1), date(2024, 7, 7))]
    assert future_periods(date(2017, 12, 31), "month", 1) == [(date(2018, 1, 1), date(2018, 1, 31))]
    assert future_periods(CUTOFF, "month", 0) == []
    with pytest.raises(ValueError, match="negative"):
        future_periods(CUTOFF, "month", -1)


def test_period_freq_names_whole_periods_only() -> None:
    assert period_freq(date(2024, 7, 1), date(2024, 7, 7)) == "week"
    assert period_freq(*JULY) == "month"
    assert period_freq(*Q3) == "quarter"
    with pytest.raises(ValueError, match="not one whole"):
        period_freq(date(2024, 7, 2), date(2024, 7, 31))


def test_weighted_pipeline_picks_open_deals_expected_in_the_period() -> None:
    funnel = pipeline_funnel()
    kpis = ["won_revenue", "won_deals"]
    july = baselines(funnel, CUTOFF, *JULY, kpis, "month")
    assert july["won_revenue"]["weighted_pipeline"] == pytest.approx(4080.0)
    assert july["won_deals"]["weighted_pipeline"] == pytest.approx(3.2)
    august = baselines(funnel, CUTOFF, *AUGUST, kpis, "month")
    assert august["won_revenue"]["weighted_pipeline"] == pytest.approx(1600.0)
    assert august["won_deals"]["weighted_pipeline"] == pytest.approx(0.8)
    september = baselines(funnel, CUTOFF, *SEPTEMBER, kpis, "month")
    assert september["won_revenue"]["weighted_pipeline"] == 0.0  # nothing expected: zero, known
    assert september["won_deals"]["weighted_pipeline"] == 0.0
    # South (rows 0, 2, ...): won W1, W4 and lost L1 -> 2/3, median (30 + 60) / 2 = 45 days;
    # July: O5 100 + O1 1000.
    south = baselines(funnel, CUTOFF, *JULY, kpis, "month", segment={"region": "south"})
    assert south["won_revenue"]["weighted_pipeline"] == pytest.approx(1100 * 2 / 3)
    quarter = baselines(funnel, CUTOFF, *Q3, kpis, "quarter")
    assert quarter["won_revenue"]["weighted_pipeline"] == pytest.approx(5680.0)
    assert quarter["won_deals"]["weighted_pipeline"] == pytest.approx(4.0)


def test_weighted_pipeline_is_none_for_other_kpis_and_without_amounts_or_wins() -> None:
    funnel = pipeline_funnel()
    july = baselines(funnel, CUTOFF, *JULY, list(KPI_IDS), "month")
    assert set(july) == set(KPI_IDS)
    for kpi in KPI_IDS:
        assert set(july[kpi]) == set(BASELINE_METHODS)
        if kpi not in ("won_revenue", "won_deals"):
            assert july[kpi]["weighted_pipeline"] is None

    no_amounts = make_funnel([(*row[:4], math.nan) for row in PIPELINE_LEADS])
    july = baselines(no_amounts, CUTOFF, *JULY, ["won_revenue", "won_deals"], "month")
    assert july["won_revenue"]["weighted_pipeline"] is None  # unknown, not zero
    assert july["won_deals"]["weighted_pipeline"] == pytest.approx(3.2)

    # At 2024-01-20 nothing had closed: no win rate, no cycle.
    early = baselines(
        funnel, date(2024, 1, 20), date(2024, 2, 1), date(2024, 2, 29), ["won_deals"], "month"
    )
    assert early["won_deals"]["weighted_pipeline"] is None
    # Only a lost deal by the cutoff: a win rate (0) but no won cycle to place the open deals.
    lost_only = make_funnel(
        [
            ("B", "2024-01-01", "lost", "2024-01-05", 100.0),
            ("C", "2024-03-05", "open", None, 1000.0),
        ]
    )
    march = baselines(lost_only, date(2024, 3, 31), *JULY, ["won_deals"], "month")
    assert march["won_deals"]["weighted_pipeline"] is None


def test_weighted_pipeline_leaves_out_overdue_deals() -> None:
    """Won A (10 days) and lost B: win rate 0.5, cycle 10 days. Cutoff 2024-03-18 inside March:
    C is expected on 03-15 (overdue, left out), D on 03-22 (counted)."""
    funnel = make_funnel(
        [
            ("A", "2024-01-01", "won", "2024-01-11", 100.0),
            ("B", "2024-01-01", "lost", "2024-01-05", 100.0),
            ("C", "2024-03-05", "open", None, 1000.0),
            ("D", "2024-03-12", "open", None, 300.0),
        ],
        observed="2024-06-30",
    )
    march = baselines(
        funnel, date(2024, 3, 18), date(2024, 3, 1), date(2024, 3, 31), ["won_revenue"], "month"
    )
    assert march["won_revenue"]["weighted_pipeline"] == pytest.approx(150.0)


def test_baselines_see_nothing_after_the_cutoff() -> None:
    kpis = list(KPI_IDS)
    before = {
        period: baselines(pipeline_funnel(), CUTOFF, *period, kpis, "month")
        for period in (JULY, AUGUST, OCTOBER)
    }
    # A lead created after the cutoff with a huge amount and a quick win, and deals that close
    # after the cutoff with other outcomes: none of it was known at the cutoff.
    changed = [row for row in PIPELINE_LEADS if row[0] not in ("X1", "O1")]
    changed += [
        ("X1", "2024-06-01", "lost", "2024-07-02", 4000.0),
        ("O1", "2024-06-10", "won", "2024-12-01", 1000.0),
        ("Z1", "2024-07-01", "won", "2024-07-02", 1_000_000.0),
        ("Z2", "2024-07-01", "open", None, 1_000_000.0),
    ]
    funnel = make_funnel(changed)
    for period, expected in before.items():
        assert baselines(funnel, CUTOFF, *period, kpis, "month") == expected
    # ... while the actuals do see them.
    assert actual_kpis(funnel, *JULY, ["won_revenue"])["won_revenue"] == pytest.approx(1_000_000.0)


def test_run_rate_is_the_last_whole_period_before_the_cutoff() -> None:
    funnel = pipeline_funnel()
    kpis = ["lead_count", "won_revenue", "won_deals", "win_rate", "pipeline_value"]
    july = baselines(funnel, CUTOFF, *JULY, kpis, "month")
    june = actual_kpis(funnel, date(2024, 6, 1), date(2024, 6, 30), kpis)
    assert {kpi: july[kpi]["run_rate"] for kpi in kpis} == june
    assert june == {
        "lead_count": 4.0,
        "won_revenue": 500.0,
        "won_deals": 1.0,
        "win_rate": 1.0,  # W4 won; X1 and O1 closed later
        "pipeline_value": 15100.0,  # O3 8000 + O5 100 + X1 4000 + O1 1000 + O2 2000
    }
    # Every future period gets the same run-rate; a cutoff inside June falls back to May.
    assert baselines(funnel, CUTOFF, *OCTOBER, kpis, "month")["lead_count"]["run_rate"] == 4.0
    mid_june = baselines(funnel, date(2024, 6, 20), *JULY, ["lead_count", "won_revenue"], "month")
    assert mid_june["lead_count"]["run_rate"] == 2.0
    assert mid_june["won_revenue"]["run_rate"] == 0.0


def test_seasonal_naive_one_quarter_back_steps_back_for_far_horizons() -> None:
    """Less than two years of data: July <- April, August <- May, September <- June;
    October's quarter back (July) is after the cutoff, so it takes April."""
    funnel = pipeline_funnel()
    naive = {
        period: baselines(funnel, CUTOFF, *period, ["lead_count", "won_revenue"], "month")
        for period in (JULY, AUGUST, SEPTEMBER, OCTOBER)
    }
    assert naive[JULY]["lead_count"]["seasonal_naive"] == 1.0
    assert naive[JULY]["won_revenue"]["seasonal_naive"] == 3000.0
    assert naive[AUGUST]["lead_count"]["seasonal_naive"] == 2.0
    assert naive[AUGUST]["won_revenue"]["seasonal_naive"] == 0.0
    assert naive[SEPTEMBER]["lead_count"]["seasonal_naive"] == 4.0
    assert naive[SEPTEMBER]["won_revenue"]["seasonal_naive"] == 500.0
    assert naive[OCTOBER]["lead_count"]["seasonal_naive"] == 1.0


def test_seasonal_naive_one_year_back_with_two_years_of_data() -> None:
    funnel = monthly_funnel()  # month i has i + 1 leads, from January 2022
    at = CutoffBaselines.at(funnel, CUTOFF, "month")
    assert at.season_lag == 12
    assert at.seasonal_naive(date(2024, 7, 1), "lead_count") == 19.0  # July 2023
    assert at.seasonal_naive(date(2024, 10, 1), "lead_count") == 22.0  # October 2023
    # 13 months ahead: July 2024 is after the cutoff, so July 2023.
    assert at.seasonal_naive(date(2025, 7, 1), "lead_count") == 19.0
    # 1.5 years before the cutoff: one quarter back (July 2023 <- April 2023, i = 15).
    short = CutoffBaselines.at(funnel, date(2023, 6, 30), "month")
    assert short.season_lag == 3
    assert short.seasonal_naive(date(2023, 7, 1), "lead_count") == 16.0
    # Exactly two years (2022-01-01 to 2023-12-31, 730 days): a year back (Jan 2023, i = 12).
    two_years = CutoffBaselines.at(funnel, date(2023, 12, 31), "month")
    assert two_years.seasonal_naive(date(2024, 1, 1), "lead_count") == 13.0
    # Quarters: Q3 2023 <- Q2 2023 (16 + 17 + 18 leads); Q4's Q3 is unknown, so Q2 again.
    quarters = baselines(
        funnel, date(2023, 6, 30), date(2023, 10, 1), date(2023, 12, 31), ["lead_count"], "quarter"
    )
    assert quarters["lead_count"]["seasonal_naive"] == 51.0
    assert quarters["lead_count"]["run_rate"] == 51.0


def test_conversion_baselines_use_mature_cohorts_only() -> None:
    """Horizon 180 days: at 2024-06-30 the last mature cohort is December 2023 (i = 23)."""
    at = CutoffBaselines.at(monthly_funnel(), CUTOFF, "month")
    assert at.run_rate("conversion_rate") == pytest.approx(1 / 24)
    assert at.seasonal_naive(date(2024, 7, 1), "conversion_rate") == pytest.approx(1 / 19)
    # January 2025 <- January 2024 (immature at the cutoff) <- January 2023 (i = 12).
    assert at.seasonal_naive(date(2025, 1, 1), "conversion_rate") == pytest.approx(1 / 13)
    # The pipeline funnel's first cohort (January) is not mature by June 30.
    assert (
        CutoffBaselines.at(pipeline_funnel(), CUTOFF, "month").run_rate("conversion_rate") is None
    )


def test_actual_kpis_equal_compute_kpis_for_the_period() -> None:
    funnel = pipeline_funnel()
    kpis = list(KPI_IDS)
    for first, last in (JULY, AUGUST, Q3, (date(2024, 7, 1), date(2024, 7, 7))):
        freq = period_freq(first, last)
        row = compute_kpis(funnel, freq, start=first, end=last).iloc[0]
        actual = actual_kpis(funnel, first, last, kpis)
        for kpi in kpis:
            expected = row[kpi]
            if kpi == "conversion_rate" or pd.isna(expected):
                assert actual[kpi] is None  # conversion: the cohort is immature at 2024-12-31
            else:
                assert actual[kpi] == pytest.approx(float(expected))
    august = actual_kpis(funnel, *AUGUST, ["won_revenue", "won_deals", "lead_count"])
    assert august == {"won_revenue": 4000.0, "won_deals": 1.0, "lead_count": 0.0}


def test_actual_kpis_segment_unfinished_periods_and_bad_kpis() -> None:
    funnel = pipeline_funnel()
    # Rows alternate south, north: O1 (row 8) is south, so July's revenue is all south's.
    south = actual_kpis(funnel, *JULY, ["won_revenue"], segment={"region": "south"})
    assert south == {"won_revenue": 1000.0}
    north = actual_kpis(funnel, *JULY, ["won_revenue"], segment={"region": "north"})
    assert north == {"won_revenue": 0.0}
    # The data ends on 2024-12-31: January 2025 has no actual yet.
    assert actual_kpis(funnel, date(2025, 1, 1), date(2025, 1, 31), ["lead_count"]) == {
        "lead_count": None
    }
    # June's cohort (X1, O1 won in 75 and 40 days; O4, O2 open) had its 180 days by 2024-12-28.
    june = actual_kpis(funnel, date(2024, 6, 1), date(2024, 6, 30), ["conversion_rate"])
    assert june == {"conversion_rate": 0.5}
    with pytest.raises(KpiError, match="unknown KPI 'revenue'"):
        actual_kpis(funnel, *JULY, ["revenue"])
    with pytest.raises(KpiError, match="unknown KPI"):
        baselines(funnel, CUTOFF, *JULY, ["stage_conversion.meeting"], "month")


def test_baselines_on_a_synthetic_funnel_are_plain_floats() -> None:
    funnel = generate_funnel(1500, seed=3, end=date(2026, 6, 30), years=2.5).as_funnel()
    cutoff = date(2025, 12, 31)
    at = CutoffBaselines.at(funnel, cutoff, "month")
    for first, last in future_periods(cutoff, "month", 3):
        values = at.for_period(first, last, list(KPI_IDS))
        for methods in values.values():
            assert all(value is None or type(value) is float for value in methods.values())
        assert values["won_deals"]["weighted_pipeline"] is not None
        assert values["lead_count"]["run_rate"] is not None


def run(
    actual: float | None,
    p10: float | None,
    p50: float | None,
    p90: float | None,
    pipeline: float | None,
    rate: float | None,
    naive: float | None,
    kpi: str = "won_revenue",
) -> BacktestRun:
    return BacktestRun(
        cutoff=CUTOFF,
        period_start=JULY[0],
        period_end=JULY[1],
        kpi=kpi,
        actual=actual,
        forecast={"mean": p50, "p10": p10, "p50": p50, "p90": p90},
        baselines={"weighted_pipeline": pipeline, "run_rate": rate, "seasonal_naive": naive},
    )


def made_up_runs() -> list[BacktestRun]:
    return [
        run(100.0, 80.0, 110.0, 130.0, 90.0, 150.0, None),  # errors +0.1 | -0.1, +0.5
        run(200.0, 150.0, 180.0, 190.0, 200.0, 100.0, 240.0),  # -0.1 | 0, -0.5, +0.2
        run(0.0, 0.0, 10.0, 20.0, 5.0, 0.0, 0.0),  # zero actual: coverage only
        run(None, 10.0, 50.0, 90.0, 1.0, 1.0, 1.0),  # no actual: nothing
        run(None, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, kpi="lead_count"),
    ]


def test_summarise_mape_bias_coverage() -> None:
    summary = summarise(made_up_runs())
    assert list(summary) == ["won_revenue", "lead_count"]
    revenue = summary["won_revenue"]
    assert list(revenue) == ["funnelcast", *BASELINE_METHODS]
    ours = revenue["funnelcast"]
    assert ours["mape"] == pytest.approx(0.1)
    assert ours["bias"] == pytest.approx(0.0, abs=1e-12)
    assert ours["coverage"] == pytest.approx(2 / 3)  # runs 1 and 3 inside, run 2 above P90
    assert (ours["n"], ours["n_coverage"]) == (2, 3)
    assert revenue["weighted_pipeline"] == {
        "mape": pytest.approx(0.05),
        "bias": pytest.approx(-0.05),
        "coverage": None,
        "n": 2,
        "n_coverage": 0,
    }
    assert revenue["run_rate"]["mape"] == pytest.approx(0.5)
    assert revenue["run_rate"]["bias"] == pytest.approx(0.0, abs=1e-12)
    assert revenue["seasonal_naive"]["mape"] == pytest.approx(0.2)  # run 2 only
    assert revenue["seasonal_naive"]["bias"] == pytest.approx(0.2)  # over-forecast: positive
    assert revenue["seasonal_naive"]["n"] == 1
    for method, score in summary["lead_count"].items():
        assert score["mape"] is None and score["bias"] is None and score["coverage"] is None, method
        assert score["n"] == 0


def test_backtest_json_layout_and_round_trip() -> None:
    runs = [
        *made_up_runs(),
        BacktestRun(
            cutoff=CUTOFF,
            period_start=AUGUST[0],
            period_end=AUGUST[1],
            kpi="win_rate",
            actual=math.nan,
            forecast={
                "mean": np.float64(np.nan),
                "p10": np.float64(0.2),
                "p50": 0.3,
                "p90": math.inf,
            },
            baselines={"run_rate": np.float64(0.25)},
        ),
    ]
    document = backtest_json(runs)
    text = json.dumps(document, allow_nan=False)  # raises on any NaN or infinity
    loaded = json.loads(text)
    assert loaded == document
    first = loaded["runs"][0]
    assert first == {
        "cutoff": "2024-06-30",
        "period_start": "2024-07-01",
        "period_end": "2024-07-31",
        "kpi": "won_revenue",
        "actual": 100.0,
        "forecast": {"mean": 110.0, "p10": 80.0, "p50": 110.0, "p90": 130.0},
        "baselines": {"weighted_pipeline": 90.0, "run_rate": 150.0, "seasonal_naive": None},
    }
    last = loaded["runs"][-1]
    assert last["actual"] is None
    assert last["forecast"] == {"mean": None, "p10": 0.2, "p50": 0.3, "p90": None}
    assert last["baselines"] == {
        "weighted_pipeline": None,
        "run_rate": 0.25,
        "seasonal_naive": None,
    }
    assert set(loaded["summary"]) == {"won_revenue", "lead_count", "win_rate"}


def test_run_rejects_a_forecast_without_quantiles_or_an_unknown_baseline() -> None:
    with pytest.raises(ValueError, match="lacks p10, p90"):
        BacktestRun(CUTOFF, *JULY, "won_revenue", 1.0, {"mean": 1.0, "p50": 1.0}, {})
    with pytest.raises(ValueError, match="unknown baseline 'naive'"):
        BacktestRun(
            CUTOFF,
            *JULY,
            "won_revenue",
            1.0,
            {"mean": 1, "p10": 1, "p50": 1, "p90": 1},
            {"naive": 1},
        )


def test_table_names_the_baseline_that_beats_funnelcast() -> None:
    table = backtest_table(made_up_runs())
    lines = table.splitlines()
    loser = "funnelcast loses to weighted_pipeline on won_revenue: MAPE 0.10 vs 0.05"
    assert loser in [line.strip() for line in lines]
    assert not any(
        "loses to run_rate" in line or "loses to seasonal_naive" in line for line in lines
    )
    best = [line for line in lines if line.lstrip().startswith("*")]
    assert len(best) == 1 and "weighted_pipeline" in best[0]
    run_lines = [line for line in lines if line.startswith("2024-06-30")]
    assert len(run_lines) == 5
    assert "2024-07-01..2024-07-31" in run_lines[0]
    assert run_lines[0].split()[2:] == ["won_revenue", "100", "80", "110", "130", "90", "150", "-"]
    assert "funnelcast has no MAPE on lead_count" in table

    winning = [run(100.0, 90.0, 100.0, 110.0, 150.0, 50.0, None)]
    assert "loses" not in backtest_table(winning)
    assert "funnelcast beats or ties every baseline with a MAPE on won_revenue" in backtest_table(
        winning
    )
