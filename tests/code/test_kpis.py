"""KPI engine (scoring.kpis) on small hand-made funnels; every expected value is worked out below.

The main fixture, `sales_funnel()`: horizon 30 days, observed until 2024-06-15 00:00.

| lead | created          | outcome | closed           | amount | owner | region | tier | account |
|------|------------------|---------|------------------|--------|-------|--------|------|---------|
| L1   | 2024-01-05       | won     | 2024-01-20 12:00 | 1000   | ann   | south  | 3.0  | A1      |
| L2   | 2024-01-10       | lost    | 2024-02-01 00:00 | 500    | bob   | north  | 1.0  | A2      |
| L3   | 2024-01-15       | won     | 2024-03-01 00:00 | 3000   | ann   | north  | 3.0  | A4      |
| L4   | 2024-01-25       | open    |                  | 2000   | bob   | south  | 1.0  | A2      |
| L9   | 2024-03-01 00:00 | won     | 2024-03-31 12:00 | 500    | ann   | south  | 1.0  | A5      |
| L5   | 2024-03-10       | won     | 2024-03-20       | 4000   | ann   | south  | 3.0  | A5      |
| L6   | 2024-03-12       | won     | 2024-05-10       | (none) | bob   | north  | 1.0  | A6      |
| L7   | 2024-05-20       | open    |                  | 700    | bob   | north  | 1.0  | A6      |
| L8   | 2024-06-01       | won     | 2024-06-10       | 100    | ann   | south  | 3.0  | A1      |

Cycle days (closed - created): L1 15.5, L3 46 (2024 is a leap year), L9 30.5, L5 10, L6 59,
L8 9. Converted within 30 days: L1, L5, L8. February has no new lead; April has no event at all.

Customers: C1 (A1, south) 2023-12-01 -> 2024-02-10; C2 (A2, south) 2024-01-10 -> active;
C3 (A3, north) 2024-02-05 -> 2024-02-20 (starts and churns in February);
C4 (A4, north) 2023-06-01 -> 2024-03-01 00:00 (churns on a month boundary).
"""

from __future__ import annotations

import json
import math
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from scoring.funnel import Funnel
from scoring.kpis import KPI_IDS, KpiError, compute_kpis, kpi_records, overall_kpis

Row = dict[str, object]

MONTH_STARTS = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]


def _dates(texts: object) -> pd.Series:
    """Naive datetimes from ISO texts of mixed precision (None -> NaT), as the loader gives."""
    return pd.Series(pd.to_datetime(pd.Series(texts), format="ISO8601")).astype("datetime64[ns]")


def _ts(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text)


def sales_funnel(*, customers: bool = True, observed: str | None = "2024-06-15") -> Funnel:
    rows = [
        ("L1", "2024-01-05", "won", "2024-01-20 12:00", 1000.0, "ann", "south", 3.0, "A1"),
        ("L2", "2024-01-10", "lost", "2024-02-01 00:00", 500.0, "bob", "north", 1.0, "A2"),
        ("L3", "2024-01-15", "won", "2024-03-01 00:00", 3000.0, "ann", "north", 3.0, "A4"),
        ("L4", "2024-01-25", "open", None, 2000.0, "bob", "south", 1.0, "A2"),
        ("L9", "2024-03-01 00:00", "won", "2024-03-31 12:00", 500.0, "ann", "south", 1.0, "A5"),
        ("L5", "2024-03-10", "won", "2024-03-20", 4000.0, "ann", "south", 3.0, "A5"),
        ("L6", "2024-03-12", "won", "2024-05-10", math.nan, "bob", "north", 1.0, "A6"),
        ("L7", "2024-05-20", "open", None, 700.0, "bob", "north", 1.0, "A6"),
        ("L8", "2024-06-01", "won", "2024-06-10", 100.0, "ann", "south", 3.0, "A1"),
    ]
    columns = ["lead_id", "created_at", "outcome", "closed_at", "amount", "owner", "region"]
    leads = pd.DataFrame(rows, columns=[*columns, "tier", "account_id"])
    leads["created_at"] = _dates(leads["created_at"])
    leads["closed_at"] = _dates(leads["closed_at"])
    table = None
    if customers:
        table = pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A3", "A4"],
                "started_at": _dates(["2023-12-01", "2024-01-10", "2024-02-05", "2023-06-01"]),
                "churned_at": _dates(["2024-02-10", None, "2024-02-20", "2024-03-01"]),
                "region": ["south", "south", "north", "north"],
            }
        )
    return Funnel(leads=leads, customers=table, horizon_days=30, observed_until=_ts(observed))


def by_period(frame: pd.DataFrame) -> dict[str, Row]:
    return {str(row["period_start"]): row for row in kpi_records(frame)}


def test_monthly_kpis_every_value() -> None:
    frame = compute_kpis(sales_funnel(), "month")
    rows = by_period(frame)
    # Default range: the month of the first created_at (Jan) to that of observed_until (Jun).
    assert list(rows) == MONTH_STARTS
    jan, feb, mar, apr, may, jun = (rows[start] for start in MONTH_STARTS)
    assert jan["period_end"] == "2024-01-31"
    assert feb["period_end"] == "2024-02-29"

    # January: L1-L4 created; only L1 won within 30 days (L3 took 46) -> 1/4. Mature: Feb 1 + 30
    # days = Mar 2 <= Jun 15. Closed in January: L1 won -> win rate 1. Deal size, revenue 1000,
    # cycle 15.5 days. Open at Feb 1 00:00: L2 (closes exactly then), L3, L4 = 500+3000+2000.
    assert jan["lead_count"] == 4
    assert jan["conversion_rate"] == pytest.approx(0.25)
    assert jan["conversion_mature"] is True
    assert jan["win_rate"] == pytest.approx(1.0)
    assert jan["avg_deal_size"] == pytest.approx(1000.0)
    assert jan["median_deal_size"] == pytest.approx(1000.0)
    assert jan["sales_cycle_days"] == pytest.approx(15.5)
    assert jan["mean_cycle_days"] == pytest.approx(15.5)
    assert jan["won_revenue"] == pytest.approx(1000.0)
    assert jan["won_deals"] == 1
    assert jan["pipeline_value"] == pytest.approx(5500.0)

    # February: no lead created -> count 0, conversion null. L2 lost at Feb 1 00:00 (it belongs
    # to February, not January) -> win rate 0/1. No won deal: sizes/cycle null, revenue 0.
    # Open at Mar 1 00:00: L3 (closes exactly then) and L4 = 5000.
    assert feb["lead_count"] == 0
    assert feb["conversion_rate"] is None
    assert feb["win_rate"] == pytest.approx(0.0)
    assert feb["avg_deal_size"] is None and feb["median_deal_size"] is None
    assert feb["sales_cycle_days"] is None and feb["mean_cycle_days"] is None
    assert feb["won_revenue"] == 0.0 and feb["won_deals"] == 0
    assert feb["pipeline_value"] == pytest.approx(5000.0)

    # March: L9, L5, L6 created; only L5 within 30 days (L9 took 30.5) -> 1/3. Won in March:
    # L3 (closed Mar 1 00:00), L9, L5 -> amounts 3000, 500, 4000: mean 2500, median 3000;
    # cycles 46, 30.5, 10: median 30.5, mean 86.5/3. Open at Apr 1: L4 2000 and L6 (no amount).
    assert mar["lead_count"] == 3
    assert mar["conversion_rate"] == pytest.approx(1 / 3)
    assert mar["win_rate"] == pytest.approx(1.0)
    assert mar["avg_deal_size"] == pytest.approx(2500.0)
    assert mar["median_deal_size"] == pytest.approx(3000.0)
    assert mar["sales_cycle_days"] == pytest.approx(30.5)
    assert mar["mean_cycle_days"] == pytest.approx(86.5 / 3)
    assert mar["won_revenue"] == pytest.approx(7500.0)
    assert mar["won_deals"] == 3
    assert mar["pipeline_value"] == pytest.approx(2000.0)

    # April: an empty period in the middle, still a row; L4 still open at May 1. Mature because
    # May 1 + 30 days = May 31 <= Jun 15.
    assert apr["lead_count"] == 0 and apr["conversion_rate"] is None
    assert apr["conversion_mature"] is True
    assert apr["win_rate"] is None and apr["won_deals"] == 0 and apr["won_revenue"] == 0.0
    assert apr["pipeline_value"] == pytest.approx(2000.0)

    # May: L7 created, not won yet -> 0/1 so far, immature (Jun 1 + 30 > Jun 15): flagged, not
    # hidden. L6 won without an amount: a won deal, but no revenue or deal size; cycle 59 days.
    # Open at Jun 1: L4 + L7 = 2700.
    assert may["lead_count"] == 1
    assert may["conversion_rate"] == pytest.approx(0.0)
    assert may["conversion_mature"] is False
    assert may["won_deals"] == 1 and may["won_revenue"] == 0.0
    assert may["avg_deal_size"] is None and may["median_deal_size"] is None
    assert may["sales_cycle_days"] == pytest.approx(59.0)
    assert may["pipeline_value"] == pytest.approx(2700.0)

    # June: L8 won after 9 days -> 1/1 so far, immature. Its end (Jul 1) is after
    # observed_until, so the pipeline is the state at Jun 15: L4 + L7 = 2700.
    assert jun["lead_count"] == 1
    assert jun["conversion_rate"] == pytest.approx(1.0)
    assert jun["conversion_mature"] is False
    assert jun["won_revenue"] == pytest.approx(100.0) and jun["sales_cycle_days"] == 9.0
    assert jun["pipeline_value"] == pytest.approx(2700.0)


def test_churn_excludes_customers_starting_and_churning_in_the_period() -> None:
    rows = by_period(compute_kpis(sales_funnel(), "month"))
    churn = [rows[start]["churn_rate"] for start in MONTH_STARTS]
    # Jan: active at Jan 1 C1, C4; nobody churns -> 0. Feb: active at Feb 1 C1, C2, C4; C1
    # churns; C3 starts and churns in February and is in neither count -> 1/3. Mar: active at
    # Mar 1 C2, C4 (C4 churns at Mar 1 00:00, so it was active then and churns in March) -> 1/2.
    # Apr-Jun: only C2 active, nobody churns -> 0.
    assert churn == pytest.approx([0.0, 1 / 3, 0.5, 0.0, 0.0, 0.0])


def test_churn_is_null_without_customers() -> None:
    rows = kpi_records(compute_kpis(sales_funnel(customers=False), "month"))
    assert all(row["churn_rate"] is None for row in rows)


def test_segment_filters_leads_and_customers_through_accounts() -> None:
    rows = by_period(compute_kpis(sales_funnel(), "month", segment={"owner": "ann"}))
    jan, feb, mar, apr = (rows[start] for start in MONTH_STARTS[:4])
    # Ann's leads: L1, L3, L9, L5, L8. Jan: L1, L3 created, L1 converted -> 1/2; pipeline at
    # Feb 1: only L3 3000 (L2 and L4 are Bob's).
    assert jan["lead_count"] == 2
    assert jan["conversion_rate"] == pytest.approx(0.5)
    assert jan["pipeline_value"] == pytest.approx(3000.0)
    # Feb: Bob's L2 lost is filtered out -> nobody closed -> win rate null.
    assert feb["win_rate"] is None
    assert mar["won_revenue"] == pytest.approx(7500.0)
    # Customers have no `owner`: they follow the accounts of Ann's leads, A1 (C1) and A4 (C4).
    # Jan: C1, C4 active, none churns -> 0; Feb: C1 churns -> 1/2; Mar: C4 churns -> 1/1;
    # Apr: nobody active -> null.
    assert [jan["churn_rate"], feb["churn_rate"], mar["churn_rate"]] == [0.0, 0.5, 1.0]
    assert apr["churn_rate"] is None


def test_segment_uses_the_customers_own_column_when_they_have_it() -> None:
    rows = by_period(compute_kpis(sales_funnel(), "month", segment={"region": "north"}))
    # Customers have `region`: north ones are C3 and C4 (through accounts it would be C4 via
    # L3 and nothing else). Jan: C4 active, stays -> 0; Feb: C4 active (C3 starts in Feb) -> 0;
    # Mar: C4 churns at Mar 1 00:00 -> 1/1; Apr: nobody active -> null.
    churn = [rows[start]["churn_rate"] for start in MONTH_STARTS[:4]]
    assert churn == [0.0, 0.0, 1.0, None]
    # Leads in the north: L2, L3, L6, L7 -> two created in January.
    assert rows["2024-01-01"]["lead_count"] == 2


def test_several_segment_keys_are_anded() -> None:
    frame = compute_kpis(sales_funnel(), "month", segment={"owner": "ann", "region": "north"})
    # Only L3 is Ann's and in the north.
    assert frame["lead_count"].tolist() == [1, 0, 0, 0, 0, 0]


def test_segment_with_no_leads_gives_zeros_and_nulls() -> None:
    frame = compute_kpis(sales_funnel(), "month", segment={"owner": "zed"})
    rows = kpi_records(frame)
    assert len(rows) == 6  # same periods as the whole funnel
    for row in rows:
        assert row["lead_count"] == 0 and row["won_deals"] == 0
        assert row["won_revenue"] == 0.0 and row["pipeline_value"] == 0.0
        assert row["conversion_rate"] is None and row["win_rate"] is None
        assert row["avg_deal_size"] is None and row["sales_cycle_days"] is None
        assert row["churn_rate"] is None  # no lead -> no account -> no customer


def test_numeric_segment_values_match_numbers() -> None:
    funnel = sales_funnel()
    # tier is a float column (3.0 / 1.0): "3" and "3.0" both mean 3. Tier 3 leads: L1, L3, L5,
    # L8 -> January L1, L3.
    for text in ("3", "3.0", " 3"):
        frame = compute_kpis(funnel, "month", segment={"tier": text})
        assert frame["lead_count"].tolist() == [2, 0, 1, 0, 0, 1], text
    assert compute_kpis(funnel, "month", segment={"tier": "three"})["lead_count"].sum() == 0
    # Numbers stored as text or mixed objects compare sensibly too.
    mixed = funnel.with_tables(leads=funnel.leads.assign(tier=funnel.leads["tier"].astype(object)))
    assert compute_kpis(mixed, "month", segment={"tier": "3"})["lead_count"].sum() == 4
    as_text = funnel.with_tables(leads=funnel.leads.assign(tier=["3", "1"] * 4 + ["3"]))
    assert compute_kpis(as_text, "month", segment={"tier": "3"})["lead_count"].sum() == 5


def test_boolean_and_text_segment_values() -> None:
    funnel = sales_funnel()
    # Booleans as the loader types them (object column with pd.NA for unknown): L1, L2 partners.
    partner = pd.Series([True, True, False, pd.NA, False, False, False, pd.NA, False], dtype=object)
    with_partner = funnel.with_tables(leads=funnel.leads.assign(partner=partner))
    for text in ("true", "True", "1", "yes"):
        frame = compute_kpis(with_partner, "month", segment={"partner": text})
        assert frame["lead_count"].sum() == 2, text
    no = compute_kpis(with_partner, "month", segment={"partner": "false"})
    assert no["lead_count"].sum() == 5  # the two unknown (pd.NA) rows match nothing
    # Text compares exactly: "Ann" is not "ann".
    assert compute_kpis(funnel, "month", segment={"owner": "Ann"})["lead_count"].sum() == 0


def test_closed_leads_without_close_date_are_not_pipeline() -> None:
    funnel = sales_funnel()
    # L10 was lost on an unknown day: closed by observed_until, so never counted as open; it
    # is in January's cohort but in no period's win rate. L11 is open with a missing amount.
    extra = pd.DataFrame(
        {
            "lead_id": ["L10", "L11"],
            "created_at": _dates(["2024-01-02", "2024-01-03"]),
            "outcome": ["lost", "open"],
            "closed_at": _dates([None, None]),
            "amount": [9000.0, math.nan],
            "owner": ["cy", "cy"],
        }
    )
    leads = pd.concat([funnel.leads, extra], ignore_index=True)
    rows = by_period(compute_kpis(funnel.with_tables(leads=leads), "month"))
    jan = rows["2024-01-01"]
    assert jan["lead_count"] == 6 and jan["conversion_rate"] == pytest.approx(1 / 6)
    assert jan["pipeline_value"] == pytest.approx(5500.0)  # as without L10 and L11
    assert rows["2024-02-01"]["win_rate"] == pytest.approx(0.0)  # L2 only


def test_unknown_segment_key_names_it_and_lists_the_known_keys() -> None:
    assert issubclass(KpiError, ValueError)  # callers that catch ValueError still work
    with pytest.raises(KpiError) as raised:
        compute_kpis(sales_funnel(), "month", segment={"colour": "red"})
    message = str(raised.value)
    assert "'colour'" in message
    assert "owner" in message and "region" in message and "tier" in message
    with pytest.raises(KpiError, match="colour"):
        overall_kpis(sales_funnel(), segment={"colour": "red"})


def test_quarterly_kpis() -> None:
    rows = by_period(compute_kpis(sales_funnel(), "quarter"))
    assert list(rows) == ["2024-01-01", "2024-04-01"]
    q1, q2 = rows["2024-01-01"], rows["2024-04-01"]
    assert q1["period_end"] == "2024-03-31" and q2["period_end"] == "2024-06-30"
    # Q1: 7 leads, L1 and L5 converted -> 2/7, mature (Apr 1 + 30 <= Jun 15). Closed: L1, L3,
    # L9, L5 won and L2 lost -> 4/5. Amounts 1000, 3000, 500, 4000: mean 2125, median 2000.
    assert q1["lead_count"] == 7
    assert q1["conversion_rate"] == pytest.approx(2 / 7)
    assert q1["conversion_mature"] is True
    assert q1["win_rate"] == pytest.approx(0.8)
    assert q1["avg_deal_size"] == pytest.approx(2125.0)
    assert q1["median_deal_size"] == pytest.approx(2000.0)
    assert q1["won_revenue"] == pytest.approx(8500.0) and q1["won_deals"] == 4
    assert q1["pipeline_value"] == pytest.approx(2000.0)
    # Churn Q1: active at Jan 1 C1, C4; both churn in Q1 (C3 starts and churns inside) -> 1.
    assert q1["churn_rate"] == pytest.approx(1.0)
    # Q2: L7, L8 created, L8 converted so far -> 1/2, immature. Won: L6 (no amount), L8.
    assert q2["lead_count"] == 2 and q2["conversion_rate"] == pytest.approx(0.5)
    assert q2["conversion_mature"] is False
    assert q2["won_deals"] == 2 and q2["won_revenue"] == pytest.approx(100.0)
    assert q2["pipeline_value"] == pytest.approx(2700.0)  # state at observed_until
    # Cycles of L6 (59) and L8 (9): median = mean = 34.
    assert q2["sales_cycle_days"] == pytest.approx(34.0)


def test_weekly_kpis_use_iso_weeks_starting_monday() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": ["W1", "W2", "W3", "W4"],
            # Mon 2024-12-30 00:00, Sun 2025-01-05 23:59, Mon 2025-01-06 00:00, Wed 2025-01-15.
            "created_at": _dates(["2024-12-30", "2025-01-05 23:59", "2025-01-06", "2025-01-15"]),
            "outcome": ["won", "open", "lost", "won"],
            # W4 is won at the very moment of extraction (observed_until, Jan 16 00:00).
            "closed_at": _dates(["2025-01-06 00:00", None, "2025-01-08", "2025-01-16"]),
            "amount": [10.0, 20.0, 30.0, 40.0],
        }
    )
    funnel = Funnel(leads=leads, observed_until=pd.Timestamp("2025-01-16"), horizon_days=7)
    rows = by_period(compute_kpis(funnel, "week"))
    # ISO week 1 of 2025 starts on Monday 2024-12-30; three weeks to the one of Jan 16.
    assert list(rows) == ["2024-12-30", "2025-01-06", "2025-01-13"]
    first, second, third = rows.values()
    assert first["period_end"] == "2025-01-05"
    # Week 1: W1, W2 created; W1 won at Jan 6 00:00 (exactly 7 days: within the horizon, but
    # the close belongs to week 2). Open at Jan 6 00:00: W1 (closing exactly then) + W2 = 30.
    assert first["lead_count"] == 2 and first["conversion_rate"] == pytest.approx(0.5)
    assert first["won_deals"] == 0 and first["pipeline_value"] == pytest.approx(30.0)
    # Mature: Jan 6 + 7 days = Jan 13 <= Jan 16; week 2: Jan 13 + 7 = Jan 20 > Jan 16.
    assert first["conversion_mature"] is True and second["conversion_mature"] is False
    # Week 2: W3 created and lost; W1 won (10), W3 lost -> win rate 1/2. Open at Jan 13: W2.
    assert second["lead_count"] == 1 and second["win_rate"] == pytest.approx(0.5)
    assert second["won_revenue"] == pytest.approx(10.0)
    assert second["sales_cycle_days"] == pytest.approx(7.0)
    assert second["pipeline_value"] == pytest.approx(20.0)
    # Week 3 (Jan 13-19): W4 created and won on Jan 16. The week ends after observed_until, so
    # the pipeline is the state at Jan 16 00:00, when W4 was still open: W2 + W4 = 60 (at the
    # week's own end, Jan 20, it would be W2 alone).
    assert third["lead_count"] == 1 and third["won_deals"] == 1
    assert third["pipeline_value"] == pytest.approx(60.0)


def test_start_and_end_select_the_periods_containing_them() -> None:
    funnel = sales_funnel()
    frame = compute_kpis(funnel, "month", start=date(2024, 2, 14), end=date(2024, 4, 2))
    assert [str(day) for day in frame["period_start"]] == ["2024-02-01", "2024-03-01", "2024-04-01"]
    assert frame["lead_count"].tolist() == [0, 3, 0]
    # Beyond observed_until: empty periods, the pipeline frozen at its state then (L4 + L7).
    later = compute_kpis(funnel, "month", start=date(2024, 7, 1), end=date(2024, 8, 31))
    assert later["lead_count"].tolist() == [0, 0]
    assert later["pipeline_value"].tolist() == [2700.0, 2700.0]
    # Only a start: up to the default end (June).
    assert len(compute_kpis(funnel, "month", start=date(2024, 5, 31))) == 2
    # A week starting on Wednesday 2024-01-03 is the ISO week of Monday 2024-01-01.
    weeks = compute_kpis(funnel, "week", start=date(2024, 1, 3), end=date(2024, 1, 8))
    assert [str(day) for day in weeks["period_start"]] == ["2024-01-01", "2024-01-08"]


def test_start_after_end_is_an_error() -> None:
    with pytest.raises(KpiError, match="2024-05-01"):
        compute_kpis(sales_funnel(), "month", start=date(2024, 5, 1), end=date(2024, 3, 1))


def test_unknown_frequency_is_an_error() -> None:
    with pytest.raises(KpiError, match="week, month, quarter"):
        compute_kpis(sales_funnel(), "year")  # type: ignore[arg-type]


def test_no_won_deals_at_all() -> None:
    funnel = sales_funnel()
    leads = funnel.leads[funnel.leads["outcome"] != "won"]
    rows = kpi_records(compute_kpis(funnel.with_tables(leads=leads), "month"))
    # Left: L2 lost (Feb), L4 open, L7 open. Range is unchanged (Jan..Jun from the leads left).
    assert [row["won_deals"] for row in rows] == [0] * 6
    assert [row["won_revenue"] for row in rows] == [0.0] * 6
    assert all(row["avg_deal_size"] is None and row["sales_cycle_days"] is None for row in rows)
    assert rows[0]["conversion_rate"] == 0.0 and rows[1]["win_rate"] == 0.0


def test_stage_conversion_counts_skipped_stages_as_passed() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": ["S1", "S2", "S3", "S4", "S5", "S6"],
            "created_at": _dates(["2024-01-02"] * 6),
            "outcome": ["won", "lost", "open", "lost", "won", "lost"],
            "closed_at": _dates(
                ["2024-01-20", "2024-01-21", None, "2024-01-22", "2024-01-23", "2024-01-24"]
            ),
        }
    )
    events = pd.DataFrame(
        [
            ("S1", "lead"), ("S1", "qualified"), ("S1", "meeting"),  # skips contacted
            ("S2", "lead"), ("S2", "qualified"),
            ("S3", "lead"),
            ("S4", "lead"), ("S4", "contacted"), ("S4", "proposal"),  # skips two stages
            ("S6", "lead"), ("S6", "lost"),  # `lost` is not a stage of the order
        ],
        columns=["lead_id", "stage"],
    )  # fmt: skip
    events["entered_at"] = pd.Timestamp("2024-01-10")
    funnel = Funnel(leads=leads, stage_events=events, observed_until=pd.Timestamp("2024-02-15"))
    frame = compute_kpis(funnel, "month")
    # `identified` never appears, so the first stage present is `lead`: no column for it or
    # for `identified`, one for every later stage of DEFAULT_STAGES.
    stage_columns = [c for c in frame.columns if c.startswith("stage_conversion.")]
    assert stage_columns == [
        "stage_conversion.qualified",
        "stage_conversion.contacted",
        "stage_conversion.meeting",
        "stage_conversion.proposal",
        "stage_conversion.won",
    ]
    jan, feb = kpi_records(frame)
    # Furthest stage: S1 won (all), S2 qualified, S3 lead, S4 proposal, S5 won (no events, but
    # a won lead passed every stage), S6 lead. Reached lead 6, qualified 4 (S1 S2 S4 S5),
    # contacted 3 (S1 S4 S5), meeting 3, proposal 3, won 2 (S1 S5).
    assert jan["stage_conversion.qualified"] == pytest.approx(4 / 6)
    assert jan["stage_conversion.contacted"] == pytest.approx(3 / 4)
    assert jan["stage_conversion.meeting"] == pytest.approx(1.0)
    assert jan["stage_conversion.proposal"] == pytest.approx(1.0)
    assert jan["stage_conversion.won"] == pytest.approx(2 / 3)
    # February: no lead created -> every denominator is 0 -> null.
    assert all(feb[column] is None for column in stage_columns)
    # No stage events table -> no stage columns at all.
    assert not any(c.startswith("stage_conversion.") for c in compute_kpis(sales_funnel()).columns)


def test_output_columns_in_design_order() -> None:
    expected = [
        "period_start",
        "period_end",
        "lead_count",
        "conversion_rate",
        "conversion_mature",
        "win_rate",
        "avg_deal_size",
        "median_deal_size",
        "sales_cycle_days",
        "mean_cycle_days",
        "won_revenue",
        "won_deals",
        "pipeline_value",
        "churn_rate",
    ]
    assert list(compute_kpis(sales_funnel(), "month").columns) == expected
    assert list(overall_kpis(sales_funnel()).columns) == expected
    assert all(kpi in expected for kpi in KPI_IDS)
    frame = compute_kpis(sales_funnel(), "month")
    assert isinstance(frame["period_start"].iloc[0], date)
    assert frame["period_end"].iloc[0] == date(2024, 1, 31)


def test_kpi_records_are_json_ready() -> None:
    records = kpi_records(compute_kpis(sales_funnel(), "month"))
    text = json.dumps(records, allow_nan=False)  # NaN would make this raise
    assert json.loads(text) == records
    feb = records[1]
    assert feb["period_start"] == "2024-02-01" and feb["conversion_rate"] is None
    assert type(feb["lead_count"]) is int and type(feb["conversion_mature"]) is bool
    assert type(feb["won_revenue"]) is float
    extra = pd.DataFrame({"at": [pd.Timestamp("2024-01-02 10:00")], "n": [np.int64(3)]})
    assert kpi_records(extra) == [{"at": "2024-01-02", "n": 3}]


def test_overall_kpis_of_a_dated_funnel() -> None:
    (row,) = kpi_records(overall_kpis(sales_funnel()))
    # One period from the first created day (Jan 5) to observed_until's day (Jun 15).
    assert row["period_start"] == "2024-01-05" and row["period_end"] == "2024-06-15"
    # 9 leads, converted within 30 days L1, L5, L8 -> 3/9; the last cohort is too young.
    assert row["lead_count"] == 9
    assert row["conversion_rate"] == pytest.approx(1 / 3)
    assert row["conversion_mature"] is False
    # Won: L1, L3, L9, L5, L6, L8; lost: L2 -> 6/7. Amounts 1000, 3000, 500, 4000, 100 (L6 has
    # none): sum 8600, mean 1720, median 1000. Cycles 15.5, 46, 30.5, 10, 59, 9: median 23,
    # mean 170/6.
    assert row["win_rate"] == pytest.approx(6 / 7)
    assert row["won_revenue"] == pytest.approx(8600.0) and row["won_deals"] == 6
    assert row["avg_deal_size"] == pytest.approx(1720.0)
    assert row["median_deal_size"] == pytest.approx(1000.0)
    assert row["sales_cycle_days"] == pytest.approx(23.0)
    assert row["mean_cycle_days"] == pytest.approx(170 / 6)
    assert row["pipeline_value"] == pytest.approx(2700.0)
    # Active at Jan 5: C1, C4, both churned since -> 1.
    assert row["churn_rate"] == pytest.approx(1.0)


def _undated_funnel(amounts: bool = True) -> Funnel:
    leads = pd.DataFrame(
        {
            "lead_id": ["U1", "U2", "U3", "U4"],
            "outcome": ["won", "won", "lost", "open"],
            "source": ["web", "web", "ads", "web"],
        }
    )
    if amounts:
        leads["amount"] = [100.0, 300.0, 50.0, math.nan]
    return Funnel(leads=leads, dated=False)


def test_undated_funnel_only_has_the_overall_row() -> None:
    with pytest.raises(KpiError, match="overall"):
        compute_kpis(_undated_funnel(), "month")
    (row,) = kpi_records(overall_kpis(_undated_funnel()))
    # 4 leads, 2 won -> final share 0.5; won 2 / closed 3; amounts of won 100, 300.
    assert row["period_start"] is None and row["period_end"] is None
    assert row["lead_count"] == 4 and row["conversion_rate"] == pytest.approx(0.5)
    assert row["conversion_mature"] is None
    assert row["win_rate"] == pytest.approx(2 / 3)
    assert row["won_deals"] == 2 and row["won_revenue"] == pytest.approx(400.0)
    assert row["avg_deal_size"] == pytest.approx(200.0)
    assert row["median_deal_size"] == pytest.approx(200.0)
    for kpi in ("sales_cycle_days", "mean_cycle_days", "pipeline_value", "churn_rate"):
        assert row[kpi] is None, kpi
    # A segment works without dates too: web leads U1, U2, U4 -> 2/3 converted.
    (web,) = kpi_records(overall_kpis(_undated_funnel(), segment={"source": "web"}))
    assert web["lead_count"] == 3 and web["conversion_rate"] == pytest.approx(2 / 3)
    # Without an amount column the amount KPIs are unknown, not zero.
    (bare,) = kpi_records(overall_kpis(_undated_funnel(amounts=False)))
    # The same when the column exists but is empty, as it does after a round trip via the store.
    empty = _undated_funnel(amounts=False)
    empty = empty.with_tables(leads=empty.leads.assign(amount=math.nan))
    (empty_row,) = kpi_records(overall_kpis(empty))
    assert empty_row["won_revenue"] is None and empty_row["avg_deal_size"] is None
    assert bare["won_revenue"] is None and bare["avg_deal_size"] is None
    assert bare["won_deals"] == 2


def test_range_ends_at_the_last_date_in_the_data_without_observed_until() -> None:
    funnel = sales_funnel(observed=None)
    frame = compute_kpis(funnel, "month")
    # Last timestamp in the data: L8 closed 2024-06-10 -> range Jan..Jun. Maturity is judged
    # against that moment: April (May 1 + 30 = May 31) is mature, May (Jun 1 + 30) is not.
    assert len(frame) == 6
    assert frame["conversion_mature"].tolist() == [True, True, True, True, False, False]
    # With no extraction date the last pipeline is the latest known state: L4 + L7.
    assert frame["pipeline_value"].iloc[-1] == pytest.approx(2700.0)


def test_many_leads_are_fast() -> None:
    # Guards against a Python loop over leads: 200k leads x 36 months well under a second.
    rng = np.random.default_rng(7)
    size = 200_000
    created = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 1090, size), "D")
    closed = created + pd.to_timedelta(rng.integers(1, 200, size), "D")
    outcome = rng.choice(np.array(["won", "lost", "open"]), size)
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(size).astype(str),
            "created_at": created,
            "outcome": outcome,
            "closed_at": pd.Series(closed).where(outcome != "open"),
            "amount": rng.gamma(2.0, 5000.0, size),
            "owner": rng.choice(np.array(["ann", "bob", "cy"]), size),
        }
    )
    funnel = Funnel(leads=leads, observed_until=pd.Timestamp("2024-01-01"))
    began = time.perf_counter()
    frame = compute_kpis(funnel, "month", segment={"owner": "ann"})
    assert time.perf_counter() - began < 2.0
    assert len(frame) == 37  # Jan 2021 .. Jan 2024
    assert frame["lead_count"].sum() == (leads["owner"] == "ann").sum()
