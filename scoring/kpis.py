"""The KPI engine (DESIGN §2): every funnel KPI per week, month or quarter, for any segment.

Periods (`scoring.periods`): `week` is the ISO week starting Monday, `month` and `quarter` are
calendar ones. A period covers [period_start 00:00, next period_start 00:00); `period_end` is its
last day, inclusive. Timestamps are naive. The default range runs from the period containing the
first `created_at` to the period containing `observed_until`, or, when that is None, the last
timestamp of any table ("the last date in the data"); `start` / `end` select the periods
containing them instead. The range is taken from the whole funnel, before the segment filter, so
every segment reports the same periods; every period in range is a row, empty ones included.

KPIs of one period P (a "won deal of P" is a lead with outcome `won` and `closed_at` in P):

- `lead_count`: leads whose `created_at` is in P (0 for an empty period).
- `conversion_rate`: of the leads created in P, the share with outcome `won` and
  `closed_at - created_at <= horizon_days`; a won lead without `closed_at` does not count (it
  cannot be shown to be within the horizon). Null when `lead_count` is 0.
- `conversion_mature`: True only if `(period_end + 1 day) + horizon_days <= observed_until` (the
  last timestamp in the data when there is no `observed_until`): every lead of the cohort had
  the full horizon. Otherwise False and `conversion_rate` is the rate so far, flagged, not hidden.
- `win_rate`: won / (won + lost) among leads whose `closed_at` is in P; null if none closed.
- `avg_deal_size` / `median_deal_size`: mean / median `amount` of the won deals of P, missing
  amounts ignored; null when no won deal of P has an amount.
- `sales_cycle_days` / `mean_cycle_days`: median / mean of `closed_at - created_at` in fractional
  days (seconds / 86400) of the won deals of P; null when none.
- `won_revenue` / `won_deals`: sum of `amount` (0.0 when none) / count (0) of won deals of P.
- `pipeline_value`: sum of `amount` of the deals open at P's end instant E (the next period's
  00:00, or `observed_until` when that is earlier: the state at extraction). Open at E means
  `created_at < E` and not closed by E: `closed_at >= E`, or no `closed_at` and outcome `open`.
  Deals that close later count where they were open (point-in-time); a won/lost lead without
  `closed_at` is left out, as it is closed at extraction and its close date is unknown. Open
  deals without an amount add nothing. 0.0 when none. With no `observed_until`, E is not clamped.
- `churn_rate`: of the customers active at P's first instant S (`started_at < S` and `churned_at`
  empty or `>= S`), the share whose `churned_at` is in P. A customer who starts and churns within
  P is in neither count, so the rate stays a proportion of the customers P started with. Null
  without a customers table or when nobody was active at S.
- `stage_conversion.<stage>` (only when `stage_events` is given): of the leads created in P, the
  number that reached `<stage>` over the number that reached the stage before it in
  `funnel.stages`. A lead reached a stage if it has an event at that stage or at any later stage
  of the order (skipped stages count as passed); reaching `won` means outcome `won`, and a won
  lead has passed every stage. Events at stages outside the order (`lost`, ...) are ignored and
  all of a lead's events count, whenever they happened. One column per stage after the first
  stage of the order that appears in the data (in an event, or `won` as an outcome); null when
  the denominator is 0.

Amount KPIs (`avg_deal_size`, `median_deal_size`, `won_revenue`, `pipeline_value`) are null when
the data set has no amounts (no `amount` column, or no lead with one): unknown is not zero.
Leads without `created_at` are in no cohort; closed leads without `closed_at` are in no close
period.

Segment filter: equality on lead columns, keys ANDed. Values arrive as text, so a column value
matches when its text equals the value; numbers compare as numbers (3.0 matches "3" and "3.0"),
booleans as true/false, 1/0 or yes/no (`scoring.segments`). An unknown key is a `KpiError`
listing the lead columns; a segment with no leads yields zeros and nulls. Customers are filtered
on their own column when they have the key, else through `account_id` to the accounts of the
matching leads (no `account_id` in either table: no customer, so a null churn rate).

Undated funnels (`dated` False) have no periods: `compute_kpis` refuses, `overall_kpis` gives
one row with `lead_count`, `conversion_rate` (the final share won), `win_rate`, `won_deals`,
`won_revenue`, `avg_deal_size`, `median_deal_size` and the stage conversions; the time-based KPIs
and the period dates are null. For dated funnels `overall_kpis` is one period from the first
`created_at` day to the last day of the default range, with the definitions above.

Frames hold nulls as NaN (None in `conversion_mature` and the dates when undated);
`kpi_records` turns them into JSON-ready records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

import numpy as np
import pandas as pd

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.periods import (
    FREQS,
    MICROS_PER_DAY,
    NAT_MICROS,
    BoolArray,
    FloatArray,
    Freq,
    IntArray,
    Periods,
    bin_index,
    count_per_period,
    median_mean_per_period,
    micros_date,
    open_at,
    periods_between,
    ratio,
    span,
    timestamp_micros,
    to_micros,
)
from scoring.segments import SegmentError, check_segment, segment_customers, segment_mask
from scoring.stage_reach import conversion_stages, furthest_stage, reached

__all__ = [
    "KPI_IDS",
    "STAGE_CONVERSION_PREFIX",
    "Freq",
    "KpiError",
    "compute_kpis",
    "kpi_columns",
    "kpi_records",
    "overall_kpis",
]

KPI_IDS: tuple[str, ...] = (
    "lead_count",
    "conversion_rate",
    "win_rate",
    "avg_deal_size",
    "sales_cycle_days",
    "won_revenue",
    "won_deals",
    "pipeline_value",
    "churn_rate",
)
STAGE_CONVERSION_PREFIX = "stage_conversion."
# Companion columns that DESIGN §7 places right after their KPI.
_COMPANIONS = {
    "conversion_rate": "conversion_mature",
    "avg_deal_size": "median_deal_size",
    "sales_cycle_days": "mean_cycle_days",
}


class KpiError(FunnelcastInputError):
    """A KPI request the data cannot answer as asked; the message says what to change."""


def kpi_columns(stages: Sequence[str] = ()) -> list[str]:
    """Output columns in DESIGN §7 order, with one stage conversion column per stage given."""
    columns = ["period_start", "period_end"]
    for kpi in KPI_IDS:
        columns.append(kpi)
        if kpi in _COMPANIONS:
            columns.append(_COMPANIONS[kpi])
    return columns + [STAGE_CONVERSION_PREFIX + stage for stage in stages]


@dataclass(frozen=True)
class _Leads:
    """The lead columns the KPIs read, as arrays (times in µs, NaT as `NAT_MICROS`)."""

    created: IntArray
    closed: IntArray
    won: BoolArray
    lost: BoolArray
    amount: FloatArray
    has_amount: bool
    reach: IntArray | None  # rank in `funnel.stages` of the furthest stage reached, -1 if none

    @classmethod
    def of(cls, funnel: Funnel, segment: Mapping[str, str] | None) -> _Leads:
        """The segment's leads (arrays are built for all leads, then masked: no frame copy)."""
        leads = funnel.leads
        count = len(leads)

        def times(column: str) -> IntArray:
            if column not in leads.columns:
                return np.full(count, NAT_MICROS, dtype=np.int64)
            return to_micros(leads[column])

        outcome = leads["outcome"]
        won = outcome.eq("won").to_numpy(dtype=bool, na_value=False)
        amount = (
            pd.to_numeric(leads["amount"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            if "amount" in leads.columns
            else np.full(count, np.nan)
        )
        # The store always has the column; a data set without amounts has it all empty.
        has_amount = bool((~np.isnan(amount)).any())
        every = cls(
            created=times("created_at"),
            closed=times("closed_at"),
            won=won,
            lost=outcome.eq("lost").to_numpy(dtype=bool, na_value=False),
            amount=amount,
            has_amount=has_amount,
            reach=(
                None
                if funnel.stage_events is None
                else furthest_stage(funnel.stage_events, funnel.stages, leads["lead_id"], won)
            ),
        )
        if not segment:
            return every
        chosen = segment_mask(leads, segment)
        return replace(
            every,
            created=every.created[chosen],
            closed=every.closed[chosen],
            won=every.won[chosen],
            lost=every.lost[chosen],
            amount=every.amount[chosen],
            reach=None if every.reach is None else every.reach[chosen],
        )


def compute_kpis(
    funnel: Funnel,
    freq: Freq = "month",
    start: date | None = None,
    end: date | None = None,
    segment: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every KPI per period of `freq` from the period of `start` to that of `end` (inclusive)."""
    if freq not in FREQS:
        raise KpiError(f"unknown frequency {freq!r}; use one of: {', '.join(FREQS)}")
    if not funnel.dated:
        raise KpiError(
            f"data set {funnel.name!r} has no dates: per-period KPIs need dates; "
            "overall_kpis (the CLI's overall row) gives the KPIs that work without them"
        )
    first_day, last_day = _default_range(funnel, start, end)
    if first_day > last_day:
        raise KpiError(f"the range starts on {first_day} after it ends on {last_day}")
    return _period_kpis(funnel, periods_between(first_day, last_day, freq), segment)


def overall_kpis(funnel: Funnel, segment: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row over all the data; for undated data only the KPIs that need no dates are set."""
    if funnel.dated:
        first_day, last_day = _default_range(funnel, None, None)
        return _period_kpis(funnel, span(first_day, last_day), segment)
    _check_segment(funnel, segment)
    lead = _Leads.of(funnel, segment)
    everyone = np.zeros(len(lead.won), dtype=np.int64)
    closed = np.where(lead.won | lead.lost, 0, -1)  # no dates: every closed lead is in the row
    stages = conversion_stages(funnel)
    row = _cohort_kpis(funnel, lead, everyone, closed, lead.won, 1, stages)
    row["period_start"] = row["period_end"] = [None]
    for kpi in ("sales_cycle_days", "mean_cycle_days", "pipeline_value", "churn_rate"):
        row[kpi] = np.full(1, np.nan)
    row["conversion_mature"] = [None]  # no horizon to mature in: the rate is the final share
    return pd.DataFrame(row, columns=kpi_columns(stages))


def kpi_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The rows as JSON-ready dicts: ISO dates, None for nulls, plain Python numbers."""
    return [
        {str(column): _json_value(value) for column, value in record.items()}
        for record in frame.to_dict(orient="records")
    ]


def _json_value(value: object) -> object:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, datetime):  # includes pd.Timestamp; checked before its base class date
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_segment(funnel: Funnel, segment: Mapping[str, str] | None) -> None:
    """An unknown segment key is the user's to fix: a `KpiError` naming it."""
    try:
        check_segment(funnel.leads, segment or {})
    except SegmentError as error:
        raise KpiError(str(error)) from error


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _default_range(funnel: Funnel, start: date | None, end: date | None) -> tuple[date, date]:
    """First and last day of the range: the given bounds, else the data's (DESIGN §2)."""
    if "created_at" not in funnel.leads.columns:
        raise KpiError("the leads have no created_at column: per-period KPIs need it")
    if start is None:
        created = to_micros(funnel.leads["created_at"])
        created = created[created != NAT_MICROS]
        if created.size == 0:
            raise KpiError("no lead has a created_at date; give a start date for the range")
        start = micros_date(int(created.min()))
    if end is None:
        last = _as_of(funnel)
        if last is None:
            raise KpiError("the data has no dates to end the range on; give an end date")
        end = micros_date(last)
    return _day(start), _day(end)


def _as_of(funnel: Funnel) -> int | None:
    """`observed_until`, else the last timestamp any table records (µs)."""
    if funnel.observed_until is not None:
        return timestamp_micros(funnel.observed_until)
    tables = (
        (funnel.leads, ("created_at", "closed_at")),
        (funnel.stage_events, ("entered_at",)),
        (funnel.customers, ("started_at", "churned_at")),
    )
    latest = [
        int(times.max())
        for table, columns in tables
        if table is not None
        for column in columns
        if column in table.columns
        for times in [to_micros(table[column])]
        if times.size and times.max() != NAT_MICROS
    ]
    return max(latest, default=None)


def _cohort_kpis(
    funnel: Funnel,
    lead: _Leads,
    created_bin: IntArray,
    closed_bin: IntArray,
    converted: BoolArray,
    periods: int,
    stages: Sequence[str],
) -> dict[str, object]:
    """The KPIs that only need each lead's creation and close period (also undated ones)."""
    everyone = np.ones(lead.won.shape, dtype=bool)
    lead_count = count_per_period(created_bin, everyone, periods)
    won_deals = count_per_period(closed_bin, lead.won, periods)
    lost_deals = count_per_period(closed_bin, lead.lost, periods)
    median_size, avg_size = median_mean_per_period(closed_bin, lead.amount, lead.won, periods)
    sold = lead.won & (closed_bin >= 0) & ~np.isnan(lead.amount)
    revenue = np.bincount(closed_bin[sold], weights=lead.amount[sold], minlength=periods)
    no_amounts = np.full(periods, np.nan)
    kpis: dict[str, object] = {
        "lead_count": lead_count,
        "conversion_rate": ratio(count_per_period(created_bin, converted, periods), lead_count),
        "win_rate": ratio(won_deals, won_deals + lost_deals),
        "avg_deal_size": avg_size if lead.has_amount else no_amounts,
        "median_deal_size": median_size if lead.has_amount else no_amounts,
        "won_revenue": revenue.astype(np.float64) if lead.has_amount else no_amounts,
        "won_deals": won_deals,
    }
    if lead.reach is not None:
        for stage in stages:
            previous = funnel.stages[funnel.stages.index(stage) - 1]
            reached_stage = reached(lead.reach, lead.won, funnel.stages, stage)
            before = reached(lead.reach, lead.won, funnel.stages, previous)
            kpis[STAGE_CONVERSION_PREFIX + stage] = ratio(
                count_per_period(created_bin, reached_stage, periods),
                count_per_period(created_bin, before, periods),
            )
    return kpis


def _period_kpis(
    funnel: Funnel, periods: Periods, segment: Mapping[str, str] | None
) -> pd.DataFrame:
    _check_segment(funnel, segment)
    lead = _Leads.of(funnel, segment)
    customers = segment_customers(funnel.customers, funnel.leads, segment or {})
    count = len(periods)
    created_bin = bin_index(lead.created, periods.bounds)
    closed_bin = bin_index(lead.closed, periods.bounds)
    horizon = funnel.horizon_days * MICROS_PER_DAY
    timed = (lead.created != NAT_MICROS) & (lead.closed != NAT_MICROS)
    cycle = np.where(timed, (lead.closed - lead.created) / MICROS_PER_DAY, np.nan)
    converted = lead.won & timed & (cycle <= funnel.horizon_days)
    stages = conversion_stages(funnel)
    kpis = _cohort_kpis(funnel, lead, created_bin, closed_bin, converted, count, stages)
    median_cycle, mean_cycle = median_mean_per_period(closed_bin, cycle, lead.won, count)
    observed = None if funnel.observed_until is None else timestamp_micros(funnel.observed_until)
    as_of = _as_of(funnel)
    pipeline_at = (
        periods.end_micros if observed is None else np.minimum(periods.end_micros, observed)
    )
    kpis |= {
        "period_start": list(periods.starts),
        "period_end": list(periods.ends),
        "conversion_mature": (
            periods.end_micros + horizon <= as_of if as_of is not None else np.zeros(count, bool)
        ),
        "sales_cycle_days": median_cycle,
        "mean_cycle_days": mean_cycle,
        "pipeline_value": _pipeline(lead, pipeline_at)
        if lead.has_amount
        else np.full(count, np.nan),
        "churn_rate": np.full(count, np.nan) if customers is None else _churn(customers, periods),
    }
    return pd.DataFrame(kpis, columns=kpi_columns(stages))


def _pipeline(lead: _Leads, instants: IntArray) -> FloatArray:
    """Amount of the deals open at each instant."""
    # A won/lost lead without closed_at is closed by now on an unknown day: it is left out
    # rather than counted as open for ever.
    usable = ~np.isnan(lead.amount) & ((lead.closed != NAT_MICROS) | ~(lead.won | lead.lost))
    value, _ = open_at(lead.created[usable], lead.closed[usable], instants, lead.amount[usable])
    return value


def _churn(customers: pd.DataFrame, periods: Periods) -> FloatArray:
    started = to_micros(customers["started_at"])
    churned = (
        to_micros(customers["churned_at"])
        if "churned_at" in customers.columns
        else np.full(len(customers), NAT_MICROS, dtype=np.int64)
    )
    _, active = open_at(started, churned, periods.start_micros, np.ones(len(started)))
    churn_bin = bin_index(churned, periods.bounds)
    # Counted only if active at the start of its churn period: one who started within that
    # period is in neither count, which keeps the rate a proportion.
    was_active = started < periods.start_micros[churn_bin]
    churned_active = (churn_bin >= 0) & (started != NAT_MICROS) & was_active
    return ratio(np.bincount(churn_bin[churned_active], minlength=len(periods)), active)
