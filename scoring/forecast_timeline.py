"""The time axis of a forecast: the reported periods and the bins the engine draws closes into.

A forecast made as of a moment covers `periods` whole reporting periods, the first being the
one that holds the instant right after `as_of` (as of a month's last second, the next month;
as of mid-month, the current month, whose part before `as_of` is actual). Inside, the engine
places events in bins: seven-day steps from `as_of` cut at every period boundary, so a bin
never straddles two periods and the calendar of the week (quarter-end pushes) stays visible.

Quarters are simulated as months and summed: the bins and the random draws of a three-month
forecast and a one-quarter forecast are the same, so a quarter's draws are the sum of its
months' draws (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.periods import Freq, next_period_start, period_start

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_NS = 86_400 * 10**9
_EPOCH = date(1970, 1, 1)
_STEP_DAYS = 7.0


def epoch_days(day: date) -> int:
    return (day - _EPOCH).days


def moment_days(moment: pd.Timestamp) -> float:
    """A naive timestamp as fractional days since 1970-01-01."""
    return float(pd.Timestamp(moment).as_unit("ns").value) / DAY_NS


def series_days(values: pd.Series) -> FloatArray:
    """Naive datetimes as fractional epoch days; NaT as NaN."""
    stamps = pd.to_datetime(values)
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    out = ns / DAY_NS
    out[stamps.isna().to_numpy()] = np.nan
    return np.asarray(out, dtype=np.float64)


def end_of_day(moment: pd.Timestamp) -> pd.Timestamp:
    """The last microsecond of `moment`'s day: a forecast as of a day knows all of it."""
    return pd.Timestamp(moment).normalize() + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)


def simulation_freq(freq: Freq) -> Freq:
    """The period the engine draws in: weeks for weekly reports, months for months and quarters."""
    return "week" if freq == "week" else "month"


@dataclass(frozen=True)
class Timeline:
    """Reported periods, the simulated sub-periods inside them, and the draw bins.

    Attributes:
        as_of: the moment the funnel is known up to.
        freq: the reported frequency; `starts`/`ends` its periods (ends inclusive).
        sub_starts/sub_ends: the simulated periods (`simulation_freq`), covering the same span.
        sub_of_period: for each reported period, the indices of its simulated periods.
        edges: bin edges in days since the epoch, from `as_of` to the last period's end.
        bin_sub: the simulated period of each bin.
    """

    as_of: pd.Timestamp
    freq: Freq
    starts: tuple[date, ...]
    ends: tuple[date, ...]
    sub_starts: tuple[date, ...]
    sub_ends: tuple[date, ...]
    sub_of_period: tuple[tuple[int, ...], ...]
    edges: FloatArray
    bin_sub: IntArray

    @property
    def as_of_days(self) -> float:
        return moment_days(self.as_of)

    @property
    def n_bins(self) -> int:
        return len(self.edges) - 1

    @property
    def end_days(self) -> float:
        """The end of the forecast window (the last period's next midnight), in epoch days."""
        return float(self.edges[-1])

    def sub_bounds(self) -> FloatArray:
        """Start of each simulated period and the window's end, in epoch days."""
        starts = [float(epoch_days(d)) for d in self.sub_starts]
        return np.array([*starts, float(epoch_days(self.sub_ends[-1]) + 1)])

    def report_start_days(self) -> FloatArray:
        """For each simulated period, the first day (epoch days) of its reported period."""
        starts = np.zeros(len(self.sub_starts))
        for start, subs in zip(self.starts, self.sub_of_period, strict=True):
            starts[list(subs)] = float(epoch_days(start))
        return starts

    def sub_calendar(self) -> tuple[date, ...]:
        """The calendar period (`simulation_freq`) each simulated period lies in, by its start."""
        freq = simulation_freq(self.freq)
        return tuple(period_start(s, freq) for s in self.sub_starts)

    def first_day_after_as_of(self) -> date:
        return (self.as_of + pd.Timedelta(microseconds=1)).date()


def build_timeline(as_of: pd.Timestamp, freq: Freq, periods: int) -> Timeline:
    """The timeline of a `periods`-period forecast of `freq` made as of `as_of`."""
    if periods < 1:
        raise ValueError(f"periods must be at least 1, not {periods}")
    as_of = pd.Timestamp(as_of)
    first = period_start((as_of + pd.Timedelta(microseconds=1)).date(), freq)
    starts = [first]
    for _ in range(periods - 1):
        starts.append(next_period_start(starts[-1], freq))
    after_last = next_period_start(starts[-1], freq)
    ends = [*(s - timedelta(days=1) for s in starts[1:]), after_last - timedelta(days=1)]

    sub = simulation_freq(freq)
    sub_starts = [period_start(first, sub)]
    while next_period_start(sub_starts[-1], sub) < after_last:
        sub_starts.append(next_period_start(sub_starts[-1], sub))
    return _timeline(as_of, freq, starts, ends, sub_starts, after_last)


def build_range_timeline(as_of: pd.Timestamp, start: date, end: date) -> Timeline:
    """The timeline of one period of any whole days (a goal's), `start` to `end` inclusive.

    Simulated periods are the period's pieces in each calendar month (volume is drawn per
    month, then shared out by the days' expected leads), after a lead-in from `as_of` to
    `start` when the period has not begun: closes and churn of the lead-in count in no period.
    """
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    as_of = pd.Timestamp(as_of)
    first_day = (as_of + pd.Timedelta(microseconds=1)).date()
    after_last = end + timedelta(days=1)
    if after_last <= first_day:
        raise ValueError(f"the period {start}..{end} is over as of {as_of}")
    points = {min(start, first_day), start}
    month = period_start(min(start, first_day), "month")
    while month < after_last:
        points.add(month)
        month = next_period_start(month, "month")
    sub_starts = sorted(p for p in points if min(start, first_day) <= p < after_last)
    return _timeline(as_of, "month", [start], [end], sub_starts, after_last)


def _timeline(
    as_of: pd.Timestamp,
    freq: Freq,
    starts: list[date],
    ends: list[date],
    sub_starts: list[date],
    after_last: date,
) -> Timeline:
    sub_ends = [*(s - timedelta(days=1) for s in sub_starts[1:]), after_last - timedelta(days=1)]
    sub_of_period = tuple(
        tuple(i for i, s in enumerate(sub_starts) if start <= s <= end)
        for start, end in zip(starts, ends, strict=True)
    )
    begin = moment_days(as_of)
    end = float(epoch_days(after_last))
    steps = begin + _STEP_DAYS * np.arange(1, int(np.ceil((end - begin) / _STEP_DAYS)) + 1)
    boundaries = np.array([float(epoch_days(s)) for s in sub_starts[1:]])
    inner = np.concatenate([steps, boundaries])
    inner = inner[(inner > begin) & (inner < end)]
    edges = np.unique(np.concatenate([[begin], inner, [end]]))
    bin_sub = np.searchsorted(boundaries, edges[:-1], side="right").astype(np.int64)
    return Timeline(
        as_of=as_of,
        freq=freq,
        starts=tuple(starts),
        ends=tuple(ends),
        sub_starts=tuple(sub_starts),
        sub_ends=tuple(sub_ends),
        sub_of_period=sub_of_period,
        edges=edges,
        bin_sub=bin_sub,
    )
