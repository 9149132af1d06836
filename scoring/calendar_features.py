"""The sales calendar of a day and of a span of days, as model features (vectorised, numpy only).

Deals close in waves: at month and quarter ends, rarely at weekends, slowly over the year-end
holidays and the summer. A model that predicts *when* a deal closes needs to see the calendar of
each future period it predicts for; these functions turn dates into that calendar.

Days are whole calendar days counted from 1970-01-01 (`int64`), the unit `datetime64[D]` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# Sales teams push in the last two weeks of a quarter and the last week of a month.
QUARTER_END_WINDOW_DAYS = 14
MONTH_END_WINDOW_DAYS = 7

SPAN_FEATURES = (
    "days_to_month_end",
    "days_to_quarter_end",
    "month_of_quarter",
    "month",
    "week_of_year",
    "weekday_share",
    "month_end_share",
    "quarter_end_share",
    "quarter_end_inside",
    "holiday_share",
    "summer_share",
)
"""Columns of `span_calendar`: the first five describe the span's first day, the rest its days."""


def to_days(values: pd.Series | pd.DatetimeIndex | np.ndarray | Sequence[object]) -> IntArray:
    """Calendar days since 1970-01-01 of datetimes (the time of day is dropped)."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    stamps = pd.to_datetime(series)
    if stamps.isna().any():
        raise ValueError("dates must not be missing")
    as_days = stamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    return np.asarray(as_days.astype(np.int64), dtype=np.int64)


def _month_and_quarter(days: IntArray) -> dict[str, IntArray]:
    dates = days.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    month = (months.astype(np.int64) % 12 + 1).astype(np.int64)
    month_of_quarter = (month - 1) % 3 + 1
    month_end = (months + 1).astype("datetime64[D]").astype(np.int64) - 1
    quarter_end = (months + (4 - month_of_quarter)).astype("datetime64[D]").astype(np.int64) - 1
    day_of_year = days - dates.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    return {
        "month": month,
        "month_of_quarter": month_of_quarter,
        "day_of_month": days - months.astype("datetime64[D]").astype(np.int64) + 1,
        "days_to_month_end": month_end - days,
        "days_to_quarter_end": quarter_end - days,
        "week_of_year": day_of_year // 7 + 1,
    }


def day_calendar(days: IntArray) -> dict[str, IntArray]:
    """Calendar of single days: month, position in month and quarter, weekday and season flags.

    Keys: `month` (1-12), `month_of_quarter` (1-3), `day_of_month`, `days_to_month_end`,
    `days_to_quarter_end` (0 on the last day), `week_of_year` (1-53, weeks counted from
    1 January), `weekday` (Monday 0), and 0/1 flags `is_weekday`, `in_month_end` (last
    `MONTH_END_WINDOW_DAYS` days), `in_quarter_end` (last `QUARTER_END_WINDOW_DAYS` days),
    `is_quarter_end` (its last day), `is_holiday_season` (22 December to 2 January),
    `is_summer` (July and August).
    """
    days = np.asarray(days, dtype=np.int64)
    calendar = _month_and_quarter(days)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    month, day = calendar["month"], calendar["day_of_month"]
    flags = {
        "is_weekday": weekday < 5,
        "in_month_end": calendar["days_to_month_end"] < MONTH_END_WINDOW_DAYS,
        "in_quarter_end": calendar["days_to_quarter_end"] < QUARTER_END_WINDOW_DAYS,
        "is_quarter_end": calendar["days_to_quarter_end"] == 0,
        "is_holiday_season": ((month == 12) & (day >= 22)) | ((month == 1) & (day <= 2)),
        "is_summer": (month == 7) | (month == 8),
    }
    return {
        **calendar,
        "weekday": weekday,
        **{name: flag.astype(np.int64) for name, flag in flags.items()},
    }


_SHARED_FLAGS = {
    "weekday_share": "is_weekday",
    "month_end_share": "in_month_end",
    "quarter_end_share": "in_quarter_end",
    "quarter_end_inside": "is_quarter_end",
    "holiday_share": "is_holiday_season",
    "summer_share": "is_summer",
}


def span_calendar(start_days: IntArray, length_days: int) -> dict[str, Float32Array]:
    """Calendar of the spans `[start, start + length_days)`, one per start day (`SPAN_FEATURES`).

    Shares are the fraction of the span's days with a flag (`quarter_end_inside` is 1 when the
    span holds a quarter's last day). They come from cumulative sums over one day grid covering
    all spans, so the cost is linear in the number of spans whatever their length.
    """
    if length_days < 1:
        raise ValueError("a span holds at least one day")
    start_days = np.asarray(start_days, dtype=np.int64)
    if len(start_days) == 0:
        return {name: np.zeros(0, dtype=np.float32) for name in SPAN_FEATURES}
    first = int(start_days.min())
    grid = np.arange(first, int(start_days.max()) + length_days, dtype=np.int64)
    daily = day_calendar(grid)
    begin = start_days - first
    features: dict[str, Float32Array] = {}
    at_start = _month_and_quarter(start_days)
    for name in ("days_to_month_end", "days_to_quarter_end", "month_of_quarter", "month"):
        features[name] = at_start[name].astype(np.float32)
    features["week_of_year"] = at_start["week_of_year"].astype(np.float32)
    for name, flag in _SHARED_FLAGS.items():
        cumulative = np.concatenate([[0], np.cumsum(daily[flag])])
        count = cumulative[begin + length_days] - cumulative[begin]
        features[name] = (count / length_days).astype(np.float32)
    features["quarter_end_inside"] = np.minimum(features["quarter_end_inside"] * length_days, 1)
    return {name: features[name] for name in SPAN_FEATURES}


@dataclass(frozen=True)
class WeekProfile:
    """How closes spread over the days of a week: relative weight of Monday ... Sunday."""

    weekday_weights: tuple[float, ...] = (1.0,) * 7

    def elapsed_share(self, first_weekday: IntArray, offset: FloatArray) -> FloatArray:
        """Share of a 7-day span's closes that fall in its first `offset` days (0 to 7).

        `first_weekday` (Monday 0) is the weekday of each span's first day, one per row of
        `offset` (shape (n, m)); a fractional day counts pro rata.
        """
        weights = np.asarray(self.weekday_weights, dtype=np.float64)
        weights = weights / weights.sum()
        days = (np.asarray(first_weekday)[:, None] + np.arange(7)[None, :]) % 7
        daily = weights[days]  # (n, 7): the weight of each day of the span, in order
        cumulative = np.concatenate([np.zeros((len(daily), 1)), np.cumsum(daily, axis=1)], axis=1)
        whole = np.clip(np.floor(offset), 0, 6).astype(np.int64)
        rows = np.arange(len(daily))[:, None]
        partial = np.clip(offset - whole, 0.0, 1.0) * daily[rows, whole]
        return np.asarray(cumulative[rows, whole] + partial, dtype=np.float64)
