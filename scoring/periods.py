"""Reporting periods: ISO weeks (Monday first), calendar months and calendar quarters.

A period covers [its first day 00:00, the next period's first day 00:00); its `end` is its last
day, inclusive. Timestamps are binned into periods as int64 microseconds since 1970-01-01 so that
one `searchsorted` places millions of naive datetimes whatever their pandas resolution (pandas 3
mixes `datetime64[us]` and `[ns]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Freq = Literal["week", "month", "quarter"]
FREQS: tuple[Freq, ...] = ("week", "month", "quarter")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# NaT viewed as int64; it sorts below every real instant, so binning sends it to "no period".
NAT_MICROS = int(np.iinfo(np.int64).min)
MICROS_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def period_start(day: date, freq: Freq) -> date:
    """First day of the period of `freq` that contains `day`."""
    if freq == "week":
        return day - timedelta(days=day.weekday())
    if freq == "month":
        return day.replace(day=1)
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def next_period_start(start: date, freq: Freq) -> date:
    """First day of the period after the one starting on `start`."""
    if freq == "week":
        return start + timedelta(days=7)
    months = 1 if freq == "month" else 3
    month_index = start.year * 12 + start.month - 1 + months
    return date(month_index // 12, month_index % 12 + 1, 1)


@dataclass(frozen=True)
class Periods:
    """Consecutive periods; `bounds` holds every start plus the end instant of the last one."""

    starts: tuple[date, ...]
    ends: tuple[date, ...]
    bounds: IntArray

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def start_micros(self) -> IntArray:
        """Each period's first instant."""
        return self.bounds[:-1]

    @property
    def end_micros(self) -> IntArray:
        """Each period's exclusive end instant (the next period's first instant)."""
        return self.bounds[1:]


def periods_between(first: date, last: date, freq: Freq) -> Periods:
    """The periods of `freq` from the one containing `first` to the one containing `last`."""
    starts = [period_start(first, freq)]
    stop = period_start(last, freq)
    while starts[-1] < stop:
        starts.append(next_period_start(starts[-1], freq))
    after_last = next_period_start(starts[-1], freq)
    ends = [*starts[1:], after_last]
    return Periods(
        starts=tuple(starts),
        ends=tuple(day - timedelta(days=1) for day in ends),
        bounds=np.array([day_micros(day) for day in [*starts, after_last]], dtype=np.int64),
    )


def span(first: date, last: date) -> Periods:
    """One period from `first` to `last` inclusive (the overall row)."""
    after_last = last + timedelta(days=1)
    bounds = np.array([day_micros(first), day_micros(after_last)], dtype=np.int64)
    return Periods((first,), (last,), bounds)


def day_micros(day: date) -> int:
    """Microseconds from the epoch to `day` 00:00."""
    return (day - _EPOCH).days * MICROS_PER_DAY


def micros_date(micros: int) -> date:
    """The calendar day containing the instant `micros`."""
    return _EPOCH + timedelta(days=micros // MICROS_PER_DAY)


def timestamp_micros(moment: pd.Timestamp | date) -> int:
    """Microseconds from the epoch of a naive timestamp (a bare date counts as its 00:00)."""
    return int(pd.Timestamp(moment).to_datetime64().astype("datetime64[us]").view(np.int64))


def to_micros(values: pd.Series) -> IntArray:
    """Naive datetimes (any resolution, or parseable values) as int64 µs; NaT -> `NAT_MICROS`."""
    stamps = values if pd.api.types.is_datetime64_dtype(values.dtype) else pd.to_datetime(values)
    return np.asarray(stamps.to_numpy(dtype="datetime64[us]").view(np.int64))


def bin_index(micros: IntArray, bounds: IntArray) -> IntArray:
    """Index of the period each instant falls in, -1 for NaT or instants outside all periods."""
    index = np.searchsorted(bounds, micros, side="right").astype(np.int64) - 1
    index[index >= len(bounds) - 1] = -1
    return index


def open_at(
    opened: IntArray, closed: IntArray, instants: IntArray, weights: FloatArray
) -> tuple[FloatArray, IntArray]:
    """Weight and number of items open at each instant t: `opened < t <= closed`.

    `closed` NaT means still open; items opened at NaT are skipped; `instants` must be sorted.
    Item i is open at instants[k] for first[i] <= k < last[i] (the first instant after it opens
    up to the first instant after it closes): adding it at `first` and taking it back at `last`
    makes a running sum of the open items, O(n log instants) instead of a loop over instants.
    """
    count = len(instants)
    known = opened != NAT_MICROS
    first = np.searchsorted(instants, opened[known], side="right")
    last = np.where(
        closed[known] == NAT_MICROS, count, np.searchsorted(instants, closed[known], side="right")
    )
    keep = first < last
    first, last, weight = first[keep], last[keep], weights[known][keep]
    items = np.cumsum(
        np.bincount(first, minlength=count + 1) - np.bincount(last, minlength=count + 1)
    )[:count].astype(np.int64)
    totals = np.cumsum(
        np.bincount(first, weights=weight, minlength=count + 1)
        - np.bincount(last, weights=weight, minlength=count + 1)
    )[:count]
    totals[items == 0] = 0.0  # no float residue where nothing is open
    return totals, items


def ratio(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> FloatArray:
    """numerator / denominator, NaN where the denominator is 0."""
    top = np.asarray(numerator, dtype=np.float64)
    bottom = np.asarray(denominator, dtype=np.float64)
    out = np.full(bottom.shape, np.nan)
    np.divide(top, bottom, out=out, where=bottom > 0)
    return out


def count_per_period(bins: IntArray, mask: BoolArray, periods: int) -> IntArray:
    """Number of masked rows in each period (`bins` from `bin_index`)."""
    chosen = bins[mask & (bins >= 0)]
    return np.bincount(chosen, minlength=periods).astype(np.int64)


def median_mean_per_period(
    bins: IntArray, values: FloatArray, mask: BoolArray, periods: int
) -> tuple[FloatArray, FloatArray]:
    """Median and mean of `values` per period over the masked rows (NaN ignored)."""
    chosen = mask & (bins >= 0) & ~np.isnan(values)
    if not chosen.any():
        return np.full(periods, np.nan), np.full(periods, np.nan)
    grouped = pd.Series(values[chosen]).groupby(bins[chosen])
    median = grouped.median().reindex(range(periods)).to_numpy(np.float64, na_value=np.nan)
    total = np.bincount(bins[chosen], weights=values[chosen], minlength=periods)
    mean = ratio(total, np.bincount(bins[chosen], minlength=periods))
    return np.asarray(median, dtype=np.float64), mean
