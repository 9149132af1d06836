"""What a back-test compares a forecast with: the actuals and the three baselines (DESIGN §5).

A cutoff is a day, included in full: the funnel is rebuilt as known at the end of that day (or at
the extraction moment `observed_until`, when that falls within the cutoff day), by
`scoring.snapshot.funnel_as_of`. Every baseline reads that rebuilt funnel only, never what
happened after the cutoff; the actuals read the whole funnel. KPI values come from
`scoring.kpis.compute_kpis`, so a baseline, an actual and a KPI report always agree on a definition.

Baselines, per future period and KPI (None when one does not apply to the KPI or lacks data):

- `weighted_pipeline` (`won_revenue` and `won_deals` only): each deal open at the cutoff is
  expected to close at `created_at` + the median cycle of the deals won by the cutoff; the deals
  expected in the period, and not before the end of the cutoff day (an overdue deal is left out,
  as a CRM's "closing this period" view leaves it out), count with the win rate of the deals closed
  by the cutoff: amount x win rate summed for `won_revenue` (an open deal without an amount adds
  nothing), their number x win rate for `won_deals`. A won or lost deal without `closed_at` is in
  neither the win rate nor the cycle: it cannot be shown to have closed by the cutoff.
- `run_rate`: the KPI of the last whole period of the same frequency that ended by the cutoff.
- `seasonal_naive`: the KPI of the same period one quarter back (13 weeks, 3 months or 1 quarter),
  or one year back (52 weeks, 12 months or 4 quarters) when the data before the cutoff spans two
  years (`SEASONAL_HISTORY_DAYS`, as the lead-volume seasonal naive). A far horizon's lagged
  period may not have ended by the cutoff: it steps back by whole lags until one has (the 4th month
  after a June cutoff takes the value of June, one quarter before September).

A value is known at the cutoff when its period ended by the cutoff day; a `conversion_rate` also
needs its cohort mature at the cutoff (every lead had the full horizon), as an immature rate is an
undercount. So the run-rate and the seasonal naive of `conversion_rate` step back to mature cohorts.
With a segment, all three baselines read the segment's leads only (its own win rate and cycle);
the two-year test looks at the whole data set.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from scoring.funnel import Funnel
from scoring.kpis import KPI_IDS, STAGE_CONVERSION_PREFIX, KpiError, compute_kpis
from scoring.lead_volume_naive import SEASONAL_HISTORY_DAYS
from scoring.periods import FREQS, Freq, next_period_start, period_start
from scoring.segments import check_segment, segment_mask
from scoring.snapshot import funnel_as_of

__all__ = [
    "BASELINE_METHODS",
    "PIPELINE_KPIS",
    "CutoffBaselines",
    "actual_kpis",
    "baselines",
    "cutoff_moment",
    "funnel_at_cutoff",
    "future_periods",
    "period_freq",
]

BASELINE_METHODS: Final = ("weighted_pipeline", "run_rate", "seasonal_naive")
PIPELINE_KPIS: Final = ("won_revenue", "won_deals")
# Lags in periods of each frequency: one quarter, and one year (52 weeks keeps the weekday).
QUARTER_BACK: Final[dict[Freq, int]] = {"week": 13, "month": 3, "quarter": 1}
YEAR_BACK: Final[dict[Freq, int]] = {"week": 52, "month": 12, "quarter": 4}

KpiValues = dict[str, float | None]


def cutoff_moment(funnel: Funnel, cutoff: date) -> pd.Timestamp:
    """The instant the cutoff day stands for: its end, or `observed_until` if within that day."""
    day = _day(cutoff)
    end_of_day = pd.Timestamp(day + timedelta(days=1)) - pd.Timedelta(1, "ns")
    observed = funnel.observed_until
    if observed is not None and day <= _day(observed):
        return min(end_of_day, pd.Timestamp(observed))
    return end_of_day  # after the data's end: `funnel_as_of` says so


def funnel_at_cutoff(funnel: Funnel, cutoff: date) -> Funnel:
    """The funnel as known at the end of the cutoff day (DESIGN §3 point-in-time rule)."""
    return funnel_as_of(funnel, cutoff_moment(funnel, cutoff))


def future_periods(cutoff: date, freq: Freq, periods: int) -> list[tuple[date, date]]:
    """The first `periods` whole periods of `freq` after the cutoff day, as (first, last day).

    A cutoff on a period's last day (2017-06-30, month) starts with the next period (July); a
    cutoff inside a period (2017-06-15) also starts with the next whole one (July): the rest of
    June is partly known at the cutoff, so it is no clean forecast of a whole period.
    """
    if freq not in FREQS:
        raise ValueError(f"unknown frequency {freq!r}; use one of: {', '.join(FREQS)}")
    if periods < 0:
        raise ValueError(f"the number of periods must not be negative, got {periods}")
    after = _day(cutoff) + timedelta(days=1)
    start = period_start(after, freq)
    if start < after:
        start = next_period_start(start, freq)
    out = []
    for _ in range(periods):
        following = next_period_start(start, freq)
        out.append((start, following - timedelta(days=1)))
        start = following
    return out


def period_freq(first: date, last: date) -> Freq:
    """The frequency of which [first, last] is one whole period; ValueError if none."""
    for freq in FREQS:
        if period_start(first, freq) == first and _period_end(first, freq) == last:
            return freq
    raise ValueError(f"{first} to {last} is not one whole week, month or quarter")


def actual_kpis(
    funnel: Funnel,
    period_start: date,
    period_end: date,
    kpis: Sequence[str],
    segment: Mapping[str, str] | None = None,
) -> KpiValues:
    """What happened in one whole period, from the whole funnel, by `compute_kpis`' definitions.

    Every value is None when the data ends before the period's last day (a part of a period is no
    actual to score a whole-period forecast against), and `conversion_rate` is None while its
    cohort is immature (DESIGN §2: never silently undercounted).
    """
    freq = period_freq(_day(period_start), _day(period_end))
    frame = compute_kpis(funnel, freq, start=period_start, end=period_end, segment=segment)
    _check_kpis(kpis, tuple(map(str, frame.columns)))
    row = _rows(frame)[0]
    end = _data_end(funnel)
    if end is None or _day(end) < _day(period_end):
        return dict.fromkeys(kpis)
    return {kpi: _kpi_value(row, kpi) for kpi in kpis}


def baselines(
    funnel: Funnel,
    cutoff: date,
    period_start: date,
    period_end: date,
    kpis: Sequence[str],
    freq: Freq,
    segment: Mapping[str, str] | None = None,
) -> dict[str, KpiValues]:
    """The three baselines of each KPI for one period: {kpi: {method: value or None}}.

    For many periods of one cutoff, build `CutoffBaselines.at` once and ask it per period.
    """
    return CutoffBaselines.at(funnel, cutoff, freq, segment).for_period(
        period_start, period_end, kpis
    )


@dataclass(frozen=True)
class _Pipeline:
    """The deals open at the cutoff and the rates the weighted pipeline applies to them."""

    expected_close: pd.Series  # created_at + the median won cycle
    amount: pd.Series
    win_rate: float | None  # None when no deal had closed
    median_cycle: pd.Timedelta | None  # None when no deal had been won
    has_amounts: bool


@dataclass(frozen=True)
class CutoffBaselines:
    """Everything the baselines read at one cutoff, computed once for all its future periods.

    Attributes:
        cutoff: the cutoff day (included).
        moment: the instant the funnel was rebuilt at (`cutoff_moment`).
        freq: the frequency of the periods asked about.
        history: KPIs of the rebuilt funnel per period of `freq` up to the cutoff's, by start
            (in order; each row as `compute_kpis` gives it, NaN for null).
        columns: the KPI columns `compute_kpis` gave (the stage conversions the data has).
        season_lag: the seasonal naive's lag in periods (a quarter, or a year with two years).
        pipeline: the open deals at the cutoff and the rates applied to them.
    """

    cutoff: date
    moment: pd.Timestamp
    freq: Freq
    history: Mapping[date, Mapping[str, object]]
    columns: tuple[str, ...]
    season_lag: int
    pipeline: _Pipeline

    @classmethod
    def at(
        cls,
        funnel: Funnel,
        cutoff: date,
        freq: Freq,
        segment: Mapping[str, str] | None = None,
    ) -> CutoffBaselines:
        """Rebuild the funnel at `cutoff` and compute what every baseline needs from it."""
        if freq not in FREQS:
            raise KpiError(f"unknown frequency {freq!r}; use one of: {', '.join(FREQS)}")
        day = _day(cutoff)
        known = funnel_at_cutoff(funnel, day)
        history = compute_kpis(known, freq, end=day, segment=segment)
        first_created = _day(known.leads["created_at"].min())
        spans_two_years = (day + timedelta(days=1) - first_created).days >= SEASONAL_HISTORY_DAYS
        return cls(
            cutoff=day,
            moment=cutoff_moment(funnel, day),
            freq=freq,
            history={_start(row): row for row in _rows(history)},
            columns=tuple(map(str, history.columns)),
            season_lag=(YEAR_BACK if spans_two_years else QUARTER_BACK)[freq],
            pipeline=_open_pipeline(known, segment),
        )

    def for_period(
        self, period_start: date, period_end: date, kpis: Sequence[str]
    ) -> dict[str, KpiValues]:
        """{kpi: {method: value}} for one whole period of `freq`, methods `BASELINE_METHODS`."""
        first, last = _day(period_start), _day(period_end)
        if period_freq(first, last) != self.freq:
            raise ValueError(f"{first} to {last} is not one whole {self.freq}")
        _check_kpis(kpis, self.columns)
        return {
            kpi: {
                "weighted_pipeline": self.weighted_pipeline(first, last, kpi),
                "run_rate": self.run_rate(kpi),
                "seasonal_naive": self.seasonal_naive(first, kpi),
            }
            for kpi in kpis
        }

    def weighted_pipeline(self, first: date, last: date, kpi: str) -> float | None:
        """Open deals expected to close in [first, last] and not yet overdue, times the win rate."""
        pipeline = self.pipeline
        if kpi not in PIPELINE_KPIS or pipeline.win_rate is None or pipeline.median_cycle is None:
            return None
        if kpi == "won_revenue" and not pipeline.has_amounts:
            return None
        expected = pipeline.expected_close
        due = (
            (expected >= pd.Timestamp(first))
            & (expected < pd.Timestamp(last + timedelta(days=1)))
            & (expected > self.moment)
        )
        if kpi == "won_deals":
            return float(due.sum()) * pipeline.win_rate
        return float(pipeline.amount[due].sum()) * pipeline.win_rate

    def run_rate(self, kpi: str) -> float | None:
        """The KPI of the last period known at the cutoff (see the module doc)."""
        for start in tuple(self.history)[::-1]:
            if self._known(start, kpi):
                return _kpi_value(self.history[start], kpi)
        return None

    def seasonal_naive(self, first: date, kpi: str) -> float | None:
        """The KPI a whole number of season lags before `first`, the nearest one known."""
        start = _periods_back(first, self.freq, self.season_lag)
        earliest = min(self.history, default=start)
        while start >= earliest:
            if start in self.history and self._known(start, kpi):
                return _kpi_value(self.history[start], kpi)
            start = _periods_back(start, self.freq, self.season_lag)
        return None

    def _known(self, start: date, kpi: str) -> bool:
        """The period ended by the cutoff day (and, for conversion, its cohort had matured)."""
        if _period_end(start, self.freq) > self.cutoff:
            return False
        return kpi != "conversion_rate" or bool(self.history[start]["conversion_mature"])


def _open_pipeline(known: Funnel, segment: Mapping[str, str] | None) -> _Pipeline:
    leads = known.leads
    check_segment(leads, segment or {})
    if segment:
        leads = leads.loc[segment_mask(leads, segment)]
    created = pd.to_datetime(leads["created_at"])
    closed = (
        pd.to_datetime(leads["closed_at"])
        if "closed_at" in leads.columns
        else pd.Series(pd.NaT, index=leads.index, dtype="datetime64[ns]")
    )
    amount = (
        pd.to_numeric(leads["amount"], errors="coerce")
        if "amount" in leads.columns
        else pd.Series(np.nan, index=leads.index)
    )
    outcome = leads["outcome"]
    dated_close = closed.notna() & created.notna()
    won = outcome.eq("won") & dated_close
    closed_deals = int((outcome.isin(("won", "lost")) & dated_close).sum())
    cycle = (closed - created)[won].median() if won.any() else None
    is_open = outcome.eq("open") & created.notna()
    # As in the KPIs, a data set without any amount has unknown revenue, not zero.
    has_amounts = "amount" in known.leads.columns and bool(
        pd.to_numeric(known.leads["amount"], errors="coerce").notna().any()
    )
    return _Pipeline(
        expected_close=(created[is_open] + (cycle or pd.Timedelta(0))).reset_index(drop=True),
        amount=amount[is_open].reset_index(drop=True),
        win_rate=int(won.sum()) / closed_deals if closed_deals else None,
        median_cycle=cycle,
        has_amounts=has_amounts,
    )


def _check_kpis(kpis: Sequence[str], columns: Sequence[str]) -> None:
    """KPI ids of DESIGN §2; a stage conversion only for a stage the data has."""
    unknown = [
        kpi
        for kpi in kpis
        if not (kpi in KPI_IDS or (kpi.startswith(STAGE_CONVERSION_PREFIX) and kpi in columns))
    ]
    if unknown:
        stages = [column for column in columns if column.startswith(STAGE_CONVERSION_PREFIX)]
        raise KpiError(
            f"unknown KPI {', '.join(map(repr, unknown))}; "
            f"use one of: {', '.join([*KPI_IDS, *stages])}"
        )


def _kpi_value(row: Mapping[str, object], kpi: str) -> float | None:
    """The KPI as a float, None for null (and for an immature conversion rate)."""
    if kpi == "conversion_rate" and not bool(row["conversion_mature"]):
        return None
    value = row[kpi]
    if not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [
        {str(column): value for column, value in record.items()}
        for record in frame.to_dict(orient="records")
    ]


def _start(row: Mapping[str, object]) -> date:
    start = row["period_start"]
    if not isinstance(start, date):
        raise TypeError(f"compute_kpis gave a period start {start!r} that is no date")
    return _day(start)


def _data_end(funnel: Funnel) -> pd.Timestamp | None:
    """`observed_until`, else the last timestamp of any table (as `compute_kpis` takes it)."""
    if funnel.observed_until is not None:
        return pd.Timestamp(funnel.observed_until)
    tables = (
        (funnel.leads, ("created_at", "closed_at")),
        (funnel.stage_events, ("entered_at",)),
        (funnel.customers, ("started_at", "churned_at")),
    )
    latest = [
        pd.Timestamp(table[column].max())
        for table, columns in tables
        if table is not None
        for column in columns
        if column in table.columns and table[column].notna().any()
    ]
    return max(latest, default=None)


def _periods_back(start: date, freq: Freq, count: int) -> date:
    """The first day of the period `count` periods of `freq` before the one starting on `start`."""
    if freq == "week":
        return start - timedelta(weeks=count)
    months = count * (1 if freq == "month" else 3)
    index = start.year * 12 + start.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _period_end(start: date, freq: Freq) -> date:
    return next_period_start(start, freq) - timedelta(days=1)


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value
